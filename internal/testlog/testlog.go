// Package testlog has what the tests share to read a server's logs.
package testlog

import (
	"bytes"
	"sync"
)

// Buffer collects log output written from several goroutines (a pool's, a server's
// handlers), for a test to read with String.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
