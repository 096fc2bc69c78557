package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/revenueguard/revguard"
)

// Error is an error answer of the API: an RFC 9457 problem document. Switch on Code
// (the revguard.Code* constants); Detail is for people.
type Error struct {
	StatusCode int
	Code       revguard.Code // "" when the answer was not a problem document (a proxy's page, say)
	Type       string
	Title      string
	Detail     string
	RequestID  string        // the problem's request_id (500 internal), else the X-Request-Id
	RetryAfter time.Duration // from Retry-After (429, 503); 0 when absent
	Header     http.Header
}

func (e *Error) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("revguard: status %d: %s", e.StatusCode, e.Detail)
	}
	return fmt.Sprintf("revguard: %d %s: %s", e.StatusCode, e.Code, e.Detail)
}

// ErrorCode returns the problem code of err when it is (or wraps) an *Error, else "".
func ErrorCode(err error) revguard.Code {
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Code
	}
	return ""
}

// problem is the body of an error answer.
type problem struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail"`
	Code      string `json:"code"`
	RequestID string `json:"request_id"`
}

// problemMemo remembers the small problem documents it decoded: a crowd's refusals are
// the same few documents over and over (409 sold_out above all), and a load generator
// on the server's machine should not spend its CPU decoding them again.
type problemMemo struct {
	mu   sync.Mutex                         // serialises the writers of seen
	seen atomic.Pointer[map[string]problem] // replaced, never changed, once stored
}

// Bounds of the memo: documents up to maxMemoBody bytes, maxMemo of them.
const (
	maxMemoBody = 1024
	maxMemo     = 64
)

// errorOf builds the *Error of an error answer.
func (pm *problemMemo) errorOf(m Meta, b []byte) *Error {
	e := &Error{StatusCode: m.StatusCode, Header: m.Header, RequestID: m.RequestID()}
	if ra := retryAfter(m.Header); ra >= 0 {
		e.RetryAfter = ra
	}
	p, ok := pm.decode(b)
	if !ok || !strings.HasPrefix(m.Header.Get("Content-Type"), "application/problem+json") {
		e.Detail = http.StatusText(m.StatusCode)
		return e
	}
	e.Code, e.Type, e.Title, e.Detail = revguard.Code(p.Code), p.Type, p.Title, p.Detail
	if p.RequestID != "" {
		e.RequestID = p.RequestID
	}
	if e.Detail == "" {
		e.Detail = http.StatusText(m.StatusCode)
	}
	return e
}

// decode decodes a problem document, from the memo when b was seen.
func (pm *problemMemo) decode(b []byte) (problem, bool) {
	if len(b) > maxMemoBody {
		return decodeProblem(b)
	}
	if seen := pm.seen.Load(); seen != nil {
		if p, ok := (*seen)[string(b)]; ok {
			return p, true
		}
	}
	p, ok := decodeProblem(b)
	if !ok {
		return p, false
	}
	pm.mu.Lock()
	defer pm.mu.Unlock()
	var next map[string]problem
	if old := pm.seen.Load(); old == nil {
		next = make(map[string]problem, 1)
	} else if len(*old) < maxMemo {
		next = maps.Clone(*old)
	} else {
		return p, true
	}
	next[string(b)] = p
	pm.seen.Store(&next)
	return p, true
}

func decodeProblem(b []byte) (problem, bool) {
	var p problem
	if err := json.Unmarshal(b, &p); err != nil || p.Code == "" {
		return problem{}, false
	}
	return p, true
}
