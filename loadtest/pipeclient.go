package loadtest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"sync"
	"time"

	rgclient "github.com/revenueguard/revguard/client"
)

// pipeline sends the requests of one http:// target over a fixed set of HTTP/1.1
// connections, pipelined: each connection's writer sends every request waiting for it
// in one write, and its reader reads the answers in order and hands each to its
// caller. It replaces fasthttp's PipelineClient, whose goroutine handoffs, request and
// answer objects and scan of every connection's queue per request cost the load
// generator more than the server spent on the answer (BENCHMARKS.md).
type pipeline struct {
	ft    *fastTarget // the host, the path prefix and the shared Date values
	dial  func() (net.Conn, error)
	delay time.Duration // how long a writer waits for more requests
	full  int           // requests queued on a connection that end the wait at once
	conns []*pipeConn

	mu     sync.Mutex // guards what follows and the connections' queues
	cur    int        // the connection of the next request
	closed bool
}

// pipeIdle is how long a connection may stay unused before it is dialled again rather
// than written to: the server may have closed it meanwhile (revguard serve after 2
// minutes), and a batch written into a closed connection fails whole.
const pipeIdle = 30 * time.Second

// errPipeClosed fails the requests sent after the target was closed.
var errPipeClosed = errors.New("loadtest: pipelined target closed")

// newPipeline returns a pipeline of conns connections for about inFlight requests in
// flight at once.
func newPipeline(ft *fastTarget, dial func() (net.Conn, error), conns, inFlight int, delay time.Duration) *pipeline {
	p := &pipeline{ft: ft, dial: dial, delay: delay, full: max(1, inFlight/conns)}
	p.conns = make([]*pipeConn, conns)
	for i := range p.conns {
		p.conns[i] = &pipeConn{p: p, wake: make(chan struct{}, 1), full: make(chan struct{}, 1)}
	}
	return p
}

// pipeCall is one request on its way: the caller waits on done.
type pipeCall struct {
	req      *rgclient.RawRequest
	deadline time.Time // zero: none
	retried  bool      // sent again once after its connection broke
	resp     rgclient.RawResponse
	err      error
	done     chan struct{}
}

var callPool = sync.Pool{New: func() any { return &pipeCall{done: make(chan struct{}, 1)} }}

// do sends r and waits for its answer or its deadline. A read that times out fails
// with an error for which os.ErrDeadlineExceeded holds.
func (p *pipeline) do(r *rgclient.RawRequest, deadline time.Time) (rgclient.RawResponse, error) {
	c := callPool.Get().(*pipeCall)
	c.req, c.deadline, c.retried = r, deadline, false
	p.enqueue(c, nil)
	<-c.done
	resp, err := c.resp, c.err
	*c = pipeCall{done: c.done}
	callPool.Put(c)
	return resp, err
}

// enqueue queues c on pc, or on the next connection, round-robin, when pc is nil.
// (Filling one connection's batch before the next, for larger writes, made the sale
// slower: a connection's reservations are answered one after the other, each after
// its fsync, so the crowd's first clicks waited in line.)
func (p *pipeline) enqueue(c *pipeCall, pc *pipeConn) {
	p.mu.Lock()
	if p.closed && (pc == nil || !pc.running) {
		p.mu.Unlock()
		c.finish(errPipeClosed)
		return
	}
	if pc == nil {
		pc = p.conns[p.cur]
	}
	pc.queue = append(pc.queue, c)
	n := len(pc.queue)
	p.cur = (p.cur + 1) % len(p.conns)
	if !pc.running {
		pc.running = true
		// The writer is started here and exits once the pipeline is closed and its
		// queue written (see write).
		go pc.write()
	}
	p.mu.Unlock()
	if n == 1 {
		signal(pc.wake)
	}
	if n >= p.full {
		signal(pc.full)
	}
}

// close stops the writers once they have written what is queued; the readers stop once
// the connections have answered it.
func (p *pipeline) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, pc := range p.conns {
		signal(pc.wake)
	}
}

// pipeConn is one connection's queue and writer; the connection itself is dialled
// again whenever it broke.
type pipeConn struct {
	p    *pipeline
	wake chan struct{} // something is queued
	full chan struct{} // p.full requests are queued

	queue   []*pipeCall // guarded by p.mu
	running bool        // the writer goroutine runs; guarded by p.mu
}

// signal wakes the receiver of ch unless it is already due to wake.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// finish hands c's outcome to its caller.
func (c *pipeCall) finish(err error) {
	c.err = err
	c.done <- struct{}{}
}

// pipeGen is one connection, from its dial to its failure.
type pipeGen struct {
	conn     net.Conn
	inflight chan *pipeCall // written and not yet answered, in order
	dead     chan struct{}  // closed by the reader when the connection failed
	lastUse  time.Time      // of the last write
}

// write is the connection's writer: it waits for requests, up to p.delay for more
// unless p.full are queued, dials when there is no usable connection, and writes every
// queued request in one write, handing them to the connection's reader in order.
func (pc *pipeConn) write() {
	var gen *pipeGen
	var buf []byte
	var batch []*pipeCall
	t := time.NewTimer(time.Hour)
	t.Stop()
	defer func() {
		if gen != nil {
			close(gen.inflight) // the reader answers what was written, then closes
		}
	}()
	p := pc.p
	for {
		<-pc.wake
		p.mu.Lock()
		n := len(pc.queue)
		p.mu.Unlock()
		if p.delay > 0 && n < p.full {
			t.Reset(p.delay)
			select {
			case <-t.C:
			case <-pc.full:
				t.Stop()
			}
		}
		p.mu.Lock()
		batch, pc.queue = pc.queue, batch[:0]
		closed := p.closed
		if closed && len(batch) == 0 {
			pc.running = false
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		if closed {
			signal(pc.wake) // once more, to see the queue empty and exit
		}
		select {
		case <-pc.full: // drained with the queue
		default:
		}
		if len(batch) == 0 {
			continue
		}
		if gen != nil {
			select {
			case <-gen.dead:
				close(gen.inflight)
				gen = nil
			default:
				if time.Since(gen.lastUse) > pipeIdle {
					close(gen.inflight)
					gen = nil
				}
			}
		}
		if gen == nil {
			conn, err := p.dial()
			if err != nil {
				for _, c := range batch {
					c.finish(err)
				}
				clear(batch)
				continue
			}
			gen = &pipeGen{conn: conn, inflight: make(chan *pipeCall, pipeChunk), dead: make(chan struct{})}
			// The reader is started here and exits once the writer closed inflight
			// and every request in it has its outcome.
			go pc.read(gen)
		}
		// Written in parts of at most pipeChunk, each handed to the reader before it
		// is written (so that answers are read while a long write goes on): the
		// reader may wait on the first call of a part not yet written only once it
		// drained every earlier one, and inflight then has room for the whole part.
		for part := batch; len(part) > 0; {
			n := min(len(part), pipeChunk)
			buf = buf[:0]
			for _, c := range part[:n] {
				buf = p.ft.appendRequest(buf, c.req)
				gen.inflight <- c
			}
			part = part[n:]
			gen.lastUse = time.Now()
			if _, err := gen.conn.Write(buf); err != nil {
				gen.conn.Close() // the reader fails what it waits for
			}
		}
		clear(batch)
		if cap(buf) > 1<<20 {
			buf = nil
		}
	}
}

// pipeChunk is the most requests a connection's writer writes at once, and the room
// of the connection's inflight queue.
const pipeChunk = 1024

// read is the connection's reader: it reads the answer of each request written, in
// order, until the writer closes inflight. Once the connection failed, the requests
// still unanswered fail too, except those that may safely be sent again (and were not
// yet), which go back to the queue: as fasthttp's HostClient does with retryFast. A
// request whose answer timed out is not sent again. Each answer is read under its
// own request's deadline, so a request behind another waits at most until the
// earlier deadline of the two (the load test gives them all the same timeout).
func (pc *pipeConn) read(gen *pipeGen) {
	br := bufio.NewReaderSize(gen.conn, 64<<10)
	var fail error // what the requests behind the connection's failure fail with
	for c := range gen.inflight {
		if fail == nil {
			err := gen.conn.SetReadDeadline(c.deadline)
			var started, keep bool
			if err == nil {
				started, keep, err = pc.p.ft.readAnswer(br, c)
			}
			if err == nil && keep {
				c.finish(nil)
				continue
			}
			gen.conn.Close()
			close(gen.dead)
			switch {
			case err == nil:
				fail = errServerClosed
				c.finish(nil)
				continue
			case isTimeout(err):
				// The requests behind this one did not time out themselves: they
				// fail, or go again, as on a broken connection.
				fail = fmt.Errorf("loadtest: a request before this one on its pipelined connection timed out (%v)", err)
				c.finish(err)
				continue
			}
			fail = err
			if started {
				c.finish(err)
				continue
			}
		}
		if !c.retried && retryable(c.req) {
			c.retried = true
			pc.p.enqueue(c, pc)
			continue
		}
		c.finish(fail)
	}
	if fail == nil {
		gen.conn.Close()
	}
}

// errServerClosed fails the requests written after an answer with Connection: close.
var errServerClosed = errors.New("loadtest: the server closed the pipelined connection")

// retryable reports whether r may be sent twice (resendable, as for the HostClient).
func retryable(r *rgclient.RawRequest) bool {
	keyed := false
	for i := 0; i+1 < len(r.Header); i += 2 {
		keyed = keyed || r.Header[i] == "Idempotency-Key"
	}
	return resendable(r.Method, keyed)
}

// isTimeout reports whether err is a timeout (a connection's deadline passed).
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// appendRequest appends r as sent to the target: the request line with the target's
// path prefix, Host, r's headers, and a Content-Length unless a GET or HEAD without a
// body.
func (ft *fastTarget) appendRequest(b []byte, r *rgclient.RawRequest) []byte {
	b = append(b, r.Method...)
	b = append(b, ' ')
	b = append(b, ft.prefix...)
	b = append(b, r.Path...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, ft.host...)
	b = append(b, "\r\n"...)
	for i := 0; i+1 < len(r.Header); i += 2 {
		b = append(b, r.Header[i]...)
		b = append(b, ": "...)
		b = append(b, r.Header[i+1]...)
		b = append(b, "\r\n"...)
	}
	if r.Body != nil || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, int64(len(r.Body)), 10)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	return append(b, r.Body...)
}

// readAnswer reads c's answer from br. started reports whether any of it arrived; keep
// whether the connection stays open after it.
//
// It reads only what the load test uses, into the client package's form: on a 409 of
// the drop, 0.8 µs and 5 allocations, where http.ReadResponse took 1.8 µs and 14
// before its header map was even filtered (about a twentieth of the generator's CPU
// per request).
func (ft *fastTarget) readAnswer(br *bufio.Reader, c *pipeCall) (started, keep bool, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return len(line) > 0, false, err
	}
	started = true
	code, ok := statusCode(line)
	if !ok {
		return true, false, fmt.Errorf("loadtest: bad status line %q", bytes.TrimSpace(line))
	}
	h := make(http.Header, 4)
	length, chunked := int64(-1), false
	keep = true
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			return true, false, fmt.Errorf("loadtest: read the answer's header: %w", err)
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return true, false, fmt.Errorf("loadtest: bad header line %q", line)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			n, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil || n < 0 {
				return true, false, fmt.Errorf("loadtest: bad Content-Length %q", value)
			}
			length = n
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
			if !chunked {
				return true, false, fmt.Errorf("loadtest: Transfer-Encoding %q", value)
			}
		case bytes.EqualFold(name, []byte("Connection")):
			keep = keep && !bytes.EqualFold(value, []byte("close"))
		case bytes.EqualFold(name, []byte("Date")):
			h["Date"] = ft.date(value)
		case bytes.EqualFold(name, []byte("Content-Type")):
			h["Content-Type"] = contentType(value)
		default:
			for _, want := range answerHeaders {
				if bytes.EqualFold(name, []byte(want)) {
					h[want] = []string{string(value)}
				}
			}
		}
	}
	var body []byte
	switch {
	case code == http.StatusNoContent || code == http.StatusNotModified || c.req.Method == http.MethodHead:
	case chunked:
		body, err = readChunked(br)
	case length > maxAnswer:
		err = errTooLarge
	case length >= 0:
		body = make([]byte, length)
		_, err = io.ReadFull(br, body)
	default:
		err = errors.New("loadtest: an answer without a length on a pipelined connection")
	}
	if err != nil {
		return true, false, err
	}
	c.resp = rgclient.RawResponse{StatusCode: code, Header: h, Body: body}
	return true, keep, nil
}

// errTooLarge fails an answer longer than maxAnswer.
var errTooLarge = fmt.Errorf("loadtest: an answer over %d bytes", maxAnswer)

// statusCode parses "HTTP/1.x NNN ...".
func statusCode(line []byte) (int, bool) {
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return 0, false
	}
	n, err := strconv.Atoi(string(line[9:12]))
	if err != nil || n < 200 || n > 599 || (len(line) > 12 && line[12] != ' ' && line[12] != '\r' && line[12] != '\n') {
		return 0, false // 1xx: the load test sends no Expect, and the API has no other
	}
	return n, true
}

// contentType returns the Content-Type value v of an answer, shared for the API's
// usual ones (both transports).
func contentType(v []byte) []string {
	switch string(v) {
	case "application/problem+json":
		return problemType
	case "application/json; charset=utf-8":
		return jsonUTF8Type
	}
	return []string{string(v)}
}

// readChunked reads a chunked body (net/http/httputil's reader) and its trailer, up
// to maxAnswer bytes.
func readChunked(br *bufio.Reader) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(httputil.NewChunkedReader(br), maxAnswer+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("loadtest: read a chunked answer: %w", err)
	case len(body) > maxAnswer:
		return nil, errTooLarge
	}
	for { // the trailer
		line, err := br.ReadSlice('\n')
		if err != nil {
			return nil, fmt.Errorf("loadtest: read the trailer: %w", err)
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			return body, nil
		}
	}
}
