package pushrules

import (
	"fmt"
	"runtime"
	"testing"
)

// TestCompiledRulesetsShareGlobs: the evaluator caches thousands of users'
// compiled rulesets, so the patterns all of them share (the default rules)
// must be held once, and regular expressions compiled only when a match
// needs one. Before sharing, a default ruleset cost about 46 KB.
func TestCompiledRulesetsShareGlobs(t *testing.T) {
	const n = 2000
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	keep := make([]*Compiled, 0, n)
	for i := 0; i < n; i++ {
		rs := build(fmt.Sprintf("@user%d:example.org", i), nil, nil)
		keep = append(keep, Compile(&rs))
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / n
	runtime.KeepAlive(keep)
	if per > 16<<10 {
		t.Fatalf("a compiled default ruleset holds %.1f KB, want under 16 KB", per/1024)
	}
}
