package journal_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any goroutine outlives the tests: every journal is closed
// by its test, so a flusher or a reader left running is a leak.
// With REVGUARD_JOURNAL_CRASH_CHILD_DIR set, the binary is the crash test's writer child.
func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		crashChild(dir)
		return
	}
	goleak.VerifyTestMain(m)
}
