package client

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/revenueguard/revguard"
)

// EventsParams chooses the changes Events follows.
type EventsParams struct {
	// After is a change id (evt_42) to start after; "evt_0" starts with the oldest
	// change kept; "" starts with the next change.
	After string
	Types []revguard.ChangeType // empty: every type
}

// Event is one event of the change stream: a change, or a gap.
type Event struct {
	ID     string              // the change's id, evt_<seq>; "" for a gap
	Type   string              // the change's type, or "gap"
	Change revguard.ChangeBody // the change's document (not for a gap)
	// Gap, for a gap: the changes after Gap.After and before Gap.Next were pruned (older
	// than the server's retention) while the stream was away.
	Gap *Gap
}

// Gap is a stretch of changes the server no longer keeps.
type Gap struct {
	After string `json:"after"`
	Next  string `json:"next"`
}

// Reconnection timings of Events.
const (
	eventsRetry    = 2 * time.Second // until the server says otherwise
	eventsRetryMin = 250 * time.Millisecond
	eventsRetryMax = time.Minute
	// eventsRetryAfterMax bounds the wait a 429's or 5xx's Retry-After asks for.
	eventsRetryAfterMax = 5 * time.Minute
	// eventsHealthy is how long a connection lasts to count as a success even with
	// nothing to deliver (a quiet stream that a proxy cuts now and then).
	eventsHealthy = 15 * time.Second
)

// eventsIdle ends a connection that has sent nothing for this long (the server sends
// a comment every 15 s of silence): it is dead, and Events reconnects. A variable for
// the tests.
var eventsIdle = 45 * time.Second

// errEventsIdle is the cause of a connection ended for its silence, or for the
// lack of an answer; the error returned names the time (interrupted).
var errEventsIdle = errors.New("nothing received")

// Events follows the change log (admin): every change from p on, in order, as the
// server streams them (GET /v1/events). A stream that ends, a connection that drops
// or falls silent, and an answer 429 or 5xx (a proxy, a node restarting) are
// reconnected after the server's retry time (longer after each failure in a row),
// from the stream's last position (Last-Event-ID), so that no change is missed or
// read twice; each such interruption is yielded as an error, and the iteration goes
// on unless the caller stops it. Another answer (a bad parameter, the token, a server
// without a change log: an *Error; a 200 that is not an event stream: a
// *MalformedError) ends it, and so does ctx. A connection that answers nothing, or
// sends nothing, for 45 s (the server sends a comment every 15 s) is reconnected;
// time spent in the caller's loop does not count. When the Client's Doer is an
// *http.Client, its timeout, which would cut every stream, is not applied to it; a
// Doer of another kind should not time out a stream.
func (c *Client) Events(ctx context.Context, p EventsParams) iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		st := eventsState{last: p.After, retry: eventsRetry}
		for fails := 0; ctx.Err() == nil; {
			progressed, wait, err, end := c.followEvents(ctx, p.Types, &st, yield)
			if end || ctx.Err() != nil {
				return
			}
			if progressed {
				fails = 0
			} else {
				fails++
			}
			// The retry time, doubled for each failure in a row; at least that after
			// a Retry-After of 0 too, at most eventsRetryAfterMax after a long one.
			backoff := min(st.retry<<min(max(fails-1, 0), 8), eventsRetryMax)
			wait = max(min(wait, eventsRetryAfterMax), backoff)
			if err == nil {
				err = fmt.Errorf("revguard client: GET /v1/events: the stream ended after %s; reconnecting", cmp.Or(st.last, "the start"))
			}
			if !yield(Event{}, err) || !sleep(ctx, wait) {
				return
			}
		}
	}
}

// eventsState is what Events carries from one connection to the next.
type eventsState struct {
	last  string        // the stream's position: the last id it sent
	retry time.Duration // the server's retry time
}

// followEvents makes one connection and yields its events. It reports whether it
// yielded anything, moved the position or lasted eventsHealthy, the wait a
// Retry-After asks for (0: none), the interruption (nil: the stream ended), and end
// when the iteration is over (the caller stopped, or an answer that a reconnection
// would not change).
func (c *Client) followEvents(ctx context.Context, types []revguard.ChangeType, st *eventsState, yield func(Event, error) bool) (progressed bool, wait time.Duration, err error, end bool) {
	cctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// A connection that answers nothing, or falls silent, is ended: its request or
	// read fails with errEventsIdle. The caller's time is not counted (yielding,
	// below, stops the clock).
	idle := time.AfterFunc(eventsIdle, func() { cancel(errEventsIdle) })
	defer idle.Stop()
	interrupted := func(err error) error {
		if cause := context.Cause(cctx); errors.Is(cause, errEventsIdle) {
			err = fmt.Errorf("%w for %v", cause, eventsIdle)
		}
		return fmt.Errorf("revguard client: GET /v1/events: %w", err)
	}
	yieldTimed := func(ev Event, err error) bool {
		idle.Stop()
		defer idle.Reset(eventsIdle)
		return yield(ev, err)
	}
	start := time.Now()
	defer func() { progressed = progressed || time.Since(start) >= eventsHealthy }()
	resp, err := c.openEvents(cctx, types, st.last)
	if err != nil {
		return false, 0, interrupted(err), false
	}
	defer resp.Body.Close()
	m := Meta{StatusCode: resp.StatusCode, Header: resp.Header}
	if resp.StatusCode != http.StatusOK {
		b, rerr := readAnswer(resp)
		if rerr != nil {
			return false, 0, interrupted(fmt.Errorf("read the answer: %w", rerr)), false
		}
		perr := c.memo.errorOf(m, b)
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
			return false, max(retryAfter(resp.Header), 0), fmt.Errorf("revguard client: GET /v1/events: %w", perr), false
		}
		yield(Event{}, perr)
		return false, 0, nil, true
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "text/event-stream" {
		yield(Event{}, &MalformedError{Meta: m, Err: fmt.Errorf("GET /v1/events: Content-Type %q, not text/event-stream", resp.Header.Get("Content-Type"))})
		return false, 0, nil, true
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), maxAnswerBytes)
	sc.Split(scanEventLines)
	var (
		id, typ        string
		hasID          bool
		data           strings.Builder
		hasData, first = false, true
	)
	for sc.Scan() {
		idle.Reset(eventsIdle)
		line := sc.Bytes()
		if first { // a byte order mark may start the stream
			line, first = bytes.TrimPrefix(line, []byte("\uFEFF")), false
		}
		if len(line) == 0 { // the end of a block: an event when it has data
			if hasID && id != st.last {
				st.last, progressed = id, true
			}
			if hasData {
				progressed = true
				if !yieldTimed(decodeEvent(id, typ, data.String())) {
					return progressed, 0, nil, true
				}
			}
			id, typ, hasID, hasData = "", "", false, false
			data.Reset()
			continue
		}
		field, value, _ := strings.Cut(string(line), ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			if !strings.ContainsRune(value, 0) { // ignored, as the SSE standard says
				id, hasID = value, true
			}
		case "event":
			typ = value
		case "data":
			if data.Len()+len(value) >= maxAnswerBytes {
				yieldTimed(Event{}, fmt.Errorf("revguard client: GET /v1/events: an event over %d bytes", maxAnswerBytes))
				return progressed, 0, nil, true
			}
			if hasData {
				data.WriteByte('\n')
			}
			data.WriteString(value)
			hasData = true
		case "retry":
			if ms, ok := digits(value); ok {
				st.retry = min(max(time.Duration(ms)*time.Millisecond, eventsRetryMin), eventsRetryMax)
			}
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			yieldTimed(Event{}, fmt.Errorf("revguard client: GET /v1/events: an event over %d bytes", maxAnswerBytes))
			return progressed, 0, nil, true
		}
		return progressed, 0, interrupted(err), false
	}
	return progressed, 0, nil, false
}

// digits reads a retry field: ASCII digits only, saturating (a value past what a
// Duration holds is as good as "very long").
func digits(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = min(n*10+int64(s[i]-'0'), 1<<40)
	}
	return n, true
}

// scanEventLines splits an event stream into lines ended by CRLF, LF or CR.
func scanEventLines(data []byte, atEOF bool) (int, []byte, error) {
	i := bytes.IndexAny(data, "\r\n")
	switch {
	case i < 0:
		if atEOF && len(data) > 0 {
			return len(data), data, nil
		}
		return 0, nil, nil
	case data[i] == '\n':
		return i + 1, data[:i], nil
	case i+1 < len(data):
		if data[i+1] == '\n' {
			return i + 2, data[:i], nil
		}
		return i + 1, data[:i], nil
	case atEOF:
		return i + 1, data[:i], nil
	}
	return 0, nil, nil // a CR at the end of what was read: an LF may follow
}

// openEvents sends one GET /v1/events, after the change id last ("": from the next
// change). The Client's *http.Client is used without its timeout, which would cut the
// stream (eventsIdle ends a dead one).
func (c *Client) openEvents(ctx context.Context, types []revguard.ChangeType, last string) (*http.Response, error) {
	path := "/v1/events"
	if len(types) > 0 {
		ts := make([]string, len(types))
		for i, t := range types {
			ts[i] = string(t)
		}
		path += "?types=" + url.QueryEscape(strings.Join(ts, ","))
	}
	req, err := c.newRequest(ctx, http.MethodGet, path, nil, 2)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if last != "" {
		req.Header.Set("Last-Event-ID", last)
	}
	d := c.doer
	if hc, ok := d.(*http.Client); ok && hc.Timeout > 0 {
		untimed := *hc
		untimed.Timeout = 0
		d = &untimed
	}
	resp, err := d.Do(req)
	if err != nil {
		return nil, fmt.Errorf("revguard client: GET /v1/events: %w", err)
	}
	return resp, nil
}

// decodeEvent decodes one event's data; on an error, the Event is the zero one.
func decodeEvent(id, typ, data string) (Event, error) {
	if typ == "gap" {
		var g Gap
		if err := json.Unmarshal([]byte(data), &g); err != nil {
			return Event{}, fmt.Errorf("revguard client: GET /v1/events: a gap event: %w", err)
		}
		return Event{Type: typ, Gap: &g}, nil
	}
	ev := Event{ID: id, Type: typ}
	if err := json.Unmarshal([]byte(data), &ev.Change); err != nil {
		return Event{}, fmt.Errorf("revguard client: GET /v1/events: event %s: %w", id, err)
	}
	return ev, nil
}
