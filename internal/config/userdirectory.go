package config

// UserDirectory configures user directory search.
type UserDirectory struct{}

func (u *UserDirectory) validate() error { return nil }

func defaultUserDirectory() UserDirectory { return UserDirectory{} }
