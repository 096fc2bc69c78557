package httpapi

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/revenueguard/revguard"
)

// Timings of the server-sent event streams.
const (
	streamHeartbeat    = 15 * time.Second // a comment line when nothing else was sent
	streamWriteTimeout = 30 * time.Second // a client that takes longer to read is dropped
	streamRetryMillis  = 2000             // EventSource's reconnection delay
	eventsReadBatch    = 512
)

// eventsQuery is the query of GET /v1/events.
type eventsQuery struct {
	types  map[revguard.ChangeType]bool // nil for every type
	after  uint64
	hasAft bool
}

// parseEventsQuery reads the query of the event stream strictly, and the Last-Event-ID
// header, which a reconnecting EventSource sends and which wins over ?after.
func parseEventsQuery(rawQuery, lastID string) (eventsQuery, error) {
	var q eventsQuery
	err := eachQueryParam(rawQuery, func(name, v string) error {
		switch name {
		case "types":
			if v == "" {
				break // every type, as for a webhook's empty types
			}
			q.types = make(map[revguard.ChangeType]bool)
			for _, t := range strings.Split(v, ",") {
				if !revguard.ChangeType(t).Valid() {
					return revguard.Errorf(revguard.CodeInvalidRequest, "types: %s is not a change type", quoteForDetail([]byte(t)))
				}
				q.types[revguard.ChangeType(t)] = true
			}
		case "after":
			n, ok := parseChangeID(v)
			if !ok {
				return revguard.Errorf(revguard.CodeInvalidRequest, "after must be a change id such as evt_42, or its number")
			}
			q.after, q.hasAft = n, true
		default:
			return revguard.Errorf(revguard.CodeInvalidRequest, "unknown query parameter %s", quoteForDetail([]byte(name)))
		}
		return nil
	})
	if err != nil {
		return q, err
	}
	if lastID != "" {
		n, ok := parseChangeID(lastID)
		if !ok {
			return q, revguard.Errorf(revguard.CodeInvalidRequest, "Last-Event-ID must be a change id such as evt_42")
		}
		q.after, q.hasAft = n, true
	}
	return q, nil
}

// parseChangeID reads "evt_42" or "42".
func parseChangeID(s string) (uint64, bool) {
	s = strings.TrimPrefix(s, "evt_")
	if s == "" || len(s) > 20 || s[0] == '+' || s[0] == '-' {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

// streamContext is the context of one stream: it ends with the request, or when the
// server shuts down (CloseStreams), so that a graceful shutdown does not wait for
// clients that never hang up.
func (s *Server) streamContext(r *http.Request) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(r.Context())
	stop := context.AfterFunc(s.streams, cancel)
	return ctx, func() { stop(); cancel() }
}

// startStream writes the headers of a server-sent event stream, with cacheControl,
// and returns the controller of its writes (each gets its own deadline: flush). It
// returns nil for a HEAD, whose answer is the headers alone: the handler returns.
func startStream(w http.ResponseWriter, r *http.Request, cacheControl string) *http.ResponseController {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", cacheControl)
	h.Set("X-Accel-Buffering", "no") // tells nginx not to buffer it
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return nil
	}
	return http.NewResponseController(w)
}

// flush sends what was written, reporting false when the client is gone or too slow.
func flush(w http.ResponseWriter, rc *http.ResponseController) bool {
	_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	return rc.Flush() == nil
}

// appendIDLine appends the event stream's line "id: evt_<seq>" (revguard.ChangeID).
func appendIDLine(b []byte, seq uint64) []byte {
	b = append(b, "id: evt_"...)
	b = strconv.AppendUint(b, seq, 10)
	return append(b, '\n')
}

// handleEvents streams the change log (admin): each change as one server-sent event
// whose id is the change's id and whose data is its JSON document. It starts after
// Last-Event-ID (or ?after), else at the newest change, and never ends by itself.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	if !s.requireAdmin(w, r) {
		return
	}
	if s.Changes == nil {
		s.writeProblem(w, r, revguard.CodeNotFound, "the event stream is not available in this mode")
		return
	}
	q, err := parseEventsQuery(r.URL.RawQuery, r.Header.Get("Last-Event-ID"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// The log's newest change, not the one last polled: a distributed node learns of
	// changes other nodes append by polling, and a client resuming after a change one
	// of them (or this node, a moment ago) streamed is not ahead of the log. When the
	// log cannot be read, the stream starts from the last poll and ends at once (below),
	// and the client reconnects until it can: a position is not refused unread.
	last, err := s.Changes.ReadLastChange(r.Context())
	if err != nil {
		last = s.Changes.LastChange()
	}
	if !q.hasAft {
		q.after = last
	} else if q.after > last && err == nil {
		s.writeProblem(w, r, revguard.CodeInvalidRequest, "the change id is ahead of the change log (newest: "+revguard.ChangeID(last)+")")
		return
	}
	ctx, cancel := s.streamContext(r)
	defer cancel()
	rc := startStream(w, r, "no-cache")
	if rc == nil {
		return
	}
	buf := make([]byte, 0, 4096)
	buf = append(buf, "retry: "...)
	buf = strconv.AppendInt(buf, streamRetryMillis, 10)
	// The stream's position, before any event (an id without data moves a client's
	// last event id and dispatches nothing): a client that started without one, or
	// whose types match nothing yet, resumes from here and misses nothing.
	buf = append(appendIDLine(append(buf, '\n'), q.after), '\n')
	w.Write(buf)
	if !flush(w, rc) {
		return
	}
	after := q.after
	for ctx.Err() == nil {
		changes, err := s.Changes.ReadChanges(ctx, after, eventsReadBatch)
		if err != nil {
			if ctx.Err() == nil {
				s.Logger.Error("httpapi: event stream: read changes", "after", after, "err", err)
			}
			return // the client reconnects with Last-Event-ID
		}
		if len(changes) == 0 {
			wctx, wcancel := context.WithTimeout(ctx, streamHeartbeat)
			err := s.Changes.WaitChanges(wctx, after)
			wcancel()
			if err != nil && ctx.Err() == nil {
				w.Write([]byte(": keep-alive\n\n"))
				if !flush(w, rc) {
					return
				}
			}
			continue
		}
		buf = buf[:0]
		if changes[0].Seq > after+1 && after > 0 {
			// The changes in between were pruned (older than the retention).
			buf = append(buf, "event: gap\ndata: {\"after\":\""...)
			buf = append(buf, revguard.ChangeID(after)...)
			buf = append(buf, "\",\"next\":\""...)
			buf = append(buf, revguard.ChangeID(changes[0].Seq)...)
			buf = append(buf, "\"}\n\n"...)
		}
		skipped := false // the batch's last change is one the types leave out
		for _, c := range changes {
			after = c.Seq
			if skipped = q.types != nil && !q.types[c.Type]; skipped {
				continue
			}
			buf = appendIDLine(buf, c.Seq)
			buf = append(buf, "event: "...)
			buf = append(buf, c.Type...)
			buf = append(buf, "\ndata: "...)
			buf = append(buf, c.Body...)
			buf = append(buf, "\n\n"...)
		}
		if skipped {
			// The position moves past the changes left out, so that a reconnection
			// does not read them again (nor report them pruned, once they are).
			buf = append(appendIDLine(buf, after), '\n')
		}
		if len(buf) > 0 {
			w.Write(buf)
			if !flush(w, rc) {
				return
			}
		}
	}
}
