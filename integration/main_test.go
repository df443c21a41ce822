//go:build integration

package integration

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

// summary is what TestMain prints after every test has finished, so that
// the outage table is the last thing in the output, after go test's
// PASS/FAIL lines of the scenarios.
type summary struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *summary) add(text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.WriteString(text)
}

func (s *summary) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// report is filled by TestFailover and printed by TestMain.
var report summary

func TestMain(m *testing.M) {
	code := m.Run()
	fmt.Print(report.String())
	adminClient.CloseIdleConnections()
	if err := goleak.Find(); err != nil {
		fmt.Fprintf(os.Stderr, "goroutines left behind by the suite: %v\n", err)
		code = 1
	}
	os.Exit(code)
}
