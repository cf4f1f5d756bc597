//go:build race

package spool

// raceEnabled: the process-level crash loop runs without the race detector
// (`make test` runs it in a second pass); instrumented, a cycle takes 20×
// longer and proves nothing more.
const raceEnabled = true
