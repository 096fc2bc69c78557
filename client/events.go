package client

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"strconv"
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

// eventsRetry is the wait before a reconnection until the server says otherwise.
const eventsRetry = 2 * time.Second

// Events follows the change log (admin): every change from params on, in order, as
// the server streams them (GET /v1/events). A stream that ends, or a connection that
// drops, is reconnected after the server's retry time, from the last event received
// (Last-Event-ID), so that nothing is missed or repeated; such an interruption is
// yielded as an error, after which the iteration goes on unless the caller stops it.
// An answer that is not the stream (a problem: a bad parameter, the token, a server
// without a change log) is yielded as an *Error and ends the iteration, and so does
// ctx. The Client's Doer should not time out a whole exchange (http.Client.Timeout)
// shorter than the caller wants a stream to last: each timeout is a reconnection.
func (c *Client) Events(ctx context.Context, p EventsParams) iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		last, retry := p.After, eventsRetry
		for ctx.Err() == nil {
			resp, err := c.openEvents(ctx, p.Types, last)
			if err == nil && resp.StatusCode != http.StatusOK {
				m := Meta{StatusCode: resp.StatusCode, Header: resp.Header}
				b, rerr := readAnswer(resp)
				resp.Body.Close()
				if rerr == nil {
					yield(Event{}, c.memo.errorOf(m, b))
					return
				}
				err = rerr
			}
			if err == nil {
				var stop bool
				last, retry, stop, err = readEvents(resp, last, retry, yield)
				resp.Body.Close()
				if stop {
					return
				}
			}
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				err = fmt.Errorf("revguard client: GET /v1/events: the stream ended after %s; reconnecting", cmp.Or(last, "the start"))
			}
			if !yield(Event{}, err) || !sleep(ctx, retry) {
				return
			}
		}
	}
}

// openEvents sends one GET /v1/events, after the change id last ("": from the next
// change).
func (c *Client) openEvents(ctx context.Context, types []revguard.ChangeType, last string) (*http.Response, error) {
	path := "/v1/events"
	if len(types) > 0 {
		ts := make([]string, len(types))
		for i, t := range types {
			ts[i] = string(t)
		}
		path += "?types=" + url.QueryEscape(strings.Join(ts, ","))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return nil, fmt.Errorf("revguard client: GET /v1/events: %w", err)
	}
	req.Header.Set("Accept", "text/event-stream")
	if last != "" {
		req.Header.Set("Last-Event-ID", last)
	}
	if c.auth != nil {
		req.Header["Authorization"] = c.auth
	}
	if c.agent != nil {
		req.Header["User-Agent"] = c.agent
	}
	resp, err := c.doer.Do(req)
	if err != nil {
		return nil, fmt.Errorf("revguard client: GET /v1/events: %w", err)
	}
	return resp, nil
}

// readEvents yields the events of one stream until it ends, and returns the id of
// the last one, the retry time the server asked for, and whether the caller stopped.
func readEvents(resp *http.Response, last string, retry time.Duration, yield func(Event, error) bool) (string, time.Duration, bool, error) {
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), maxAnswerBytes)
	var id, typ string
	var data strings.Builder
	for sc.Scan() {
		line := sc.Text()
		if line == "" { // the end of an event
			if data.Len() > 0 {
				ev, err := decodeEvent(id, typ, data.String())
				if id != "" {
					last = id // a malformed event too: read again, it would be again
				}
				if !yield(ev, err) {
					return last, retry, true, nil
				}
			}
			id, typ = "", ""
			data.Reset()
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			id = value
		case "event":
			typ = value
		case "data":
			if data.Len() > 0 {
				data.WriteByte('\n')
			}
			data.WriteString(value)
		case "retry":
			if ms, err := strconv.Atoi(value); err == nil && ms >= 0 {
				retry = time.Duration(ms) * time.Millisecond
			}
		}
	}
	if err := sc.Err(); err != nil {
		return last, retry, false, fmt.Errorf("revguard client: GET /v1/events: %w", err)
	}
	return last, retry, false, nil
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
