package smtpd

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves goroutines behind: every
// connection, accept loop and session must end with Shutdown.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
