//go:build race

package mailbox

// raceEnabled: the crash test runs fewer cycles under the race detector.
const raceEnabled = true
