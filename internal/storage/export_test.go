package storage

// SetWindowScanMax changes the widest window read by scanning, for tests
// of both forms of the window reads; the returned function restores it.
func SetWindowScanMax(n int64) (restore func()) {
	old := windowScanMax
	windowScanMax = n
	return func() { windowScanMax = old }
}

// StateGroupIDsSQL is stateGroupIDsSQL, for the PostgreSQL plan test.
func StateGroupIDsSQL(d Dialect) string { return stateGroupIDsSQL(d) }
