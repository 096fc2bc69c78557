package loadtest

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// h1Pool is a minimal HTTP/1.1 client of one plain-text (http://) target: keep-alive
// connections, one request at a time on each, and no goroutine of its own.
//
// The load generator shares its machine, often its two cores, with the server it
// measures, so what a request costs the generator is taken from the server. net/http's
// client spends about twice what the server does on a refused reservation: a reader and
// a writer goroutine per connection with a handoff to each per request, a context and a
// timer, header maps and canonical keys. This client writes a request in one write and
// parses the answer in place, keeping only what the load test reads: the status, the
// body, and the Date, Retry-After and Idempotent-Replayed headers. It reads bodies with a
// Content-Length, chunked bodies, and bodies ended by the connection's close.
type h1Pool struct {
	addr    string        // host:port to dial
	host    string        // the Host header
	prefix  string        // the base URL's path, without a trailing slash
	timeout time.Duration // of one exchange, dial included; 0 for none
	idle    chan *h1Conn  // connections ready for the next request
	dialer  net.Dialer
}

// h1Conn is one keep-alive connection. Only the caller that took it from the pool uses
// it until it puts it back.
type h1Conn struct {
	nc net.Conn
	br *bufio.Reader
	wb []byte // the request being written, reused
}

// h1Request is a request of the v1 API: a JSON body, and the few headers it uses.
type h1Request struct {
	method, path   string
	auth           string // bearer token; "" sends none
	turnstile      string // CF-Turnstile-Response; "" sends none
	idempotencyKey string // Idempotency-Key; "" sends none
	body           []byte // JSON; nil sends none
}

// Limits of an answer's head.
const (
	h1BufSize     = 8 << 10 // the read buffer: also the longest header line
	h1MaxHeaders  = 100
	h1MaxInterims = 10 // 1xx answers before the final one
)

// errH1 marks an answer that is not HTTP/1.x as this client reads it.
var errH1 = errors.New("malformed HTTP answer")

// newH1Pools returns a pool per target, each keeping up to conns idle connections, or
// false when a target is not a plain http:// base URL (https:// goes through net/http).
func newH1Pools(targets []string, conns int, timeout time.Duration) ([]*h1Pool, bool) {
	pools := make([]*h1Pool, len(targets))
	for i, t := range targets {
		u, err := url.Parse(t)
		if err != nil || u.Scheme != "http" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			return nil, false
		}
		addr := u.Host
		if u.Port() == "" {
			addr = net.JoinHostPort(u.Hostname(), "80")
		}
		pools[i] = &h1Pool{
			addr: addr, host: u.Host, prefix: strings.TrimRight(u.EscapedPath(), "/"), timeout: timeout,
			idle:   make(chan *h1Conn, conns),
			dialer: net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second},
		}
	}
	return pools, true
}

// close closes the idle connections; those in use are closed when they come back.
func (p *h1Pool) close() {
	for {
		select {
		case cn := <-p.idle:
			cn.nc.Close()
		default:
			return
		}
	}
}

// roundTrip sends r and reads its answer into a: status, body, and the headers the load
// test reads (Date through dates). An error means the outcome is unknown. A request that
// may safely be sent twice (GET, PUT, or one with an idempotency key) is sent again on a
// fresh connection when a kept-alive one turns out closed before any answer.
func (p *h1Pool) roundTrip(ctx context.Context, r *h1Request, a *answer, dates *dateCache) error {
	if err := r.check(); err != nil {
		return err
	}
	for try := 0; ; try++ {
		cn, reused := p.get()
		if cn == nil {
			var err error
			if cn, err = p.dial(ctx); err != nil {
				return err
			}
		}
		answered, err := p.exchange(ctx, cn, r, a, dates)
		if err == nil {
			return nil
		}
		if !reused || answered || try > 0 || !r.replayable() || ctx.Err() != nil {
			return err
		}
		*a = answer{}
	}
}

// get takes an idle connection, or reports nil.
func (p *h1Pool) get() (*h1Conn, bool) {
	select {
	case cn := <-p.idle:
		return cn, true
	default:
		return nil, false
	}
}

// put keeps cn for the next request, or closes it when enough are idle.
func (p *h1Pool) put(cn *h1Conn) {
	select {
	case p.idle <- cn:
	default:
		cn.nc.Close()
	}
}

func (p *h1Pool) dial(ctx context.Context) (*h1Conn, error) {
	if p.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.timeout)
		defer cancel()
	}
	nc, err := p.dialer.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, err
	}
	return &h1Conn{nc: nc, br: bufio.NewReaderSize(nc, h1BufSize)}, nil
}

// aLongTimeAgo is a deadline in the past: it makes a blocked read or write return.
var aLongTimeAgo = time.Unix(1, 0)

// exchange writes r on cn and reads the answer. It keeps cn for the next request when
// the answer allows, and closes it otherwise. answered reports whether any byte of an
// answer came.
func (p *h1Pool) exchange(ctx context.Context, cn *h1Conn, r *h1Request, a *answer, dates *dateCache) (answered bool, err error) {
	var deadline time.Time
	if p.timeout > 0 {
		deadline = time.Now().Add(p.timeout)
	}
	if err := cn.nc.SetDeadline(deadline); err != nil {
		cn.nc.Close()
		return false, err
	}
	stop := context.AfterFunc(ctx, func() { cn.nc.SetDeadline(aLongTimeAgo) })
	cn.wb = r.appendTo(cn.wb[:0], p.host, p.prefix)
	keep := false
	if _, err = cn.nc.Write(cn.wb); err == nil {
		keep, answered, err = readAnswer(cn.br, r.method, a, dates)
	}
	if !stop() {
		err = context.Cause(ctx) // the deadline in the past broke the exchange
	}
	if err != nil || !keep {
		cn.nc.Close()
		return answered, err
	}
	p.put(cn)
	return answered, nil
}

// replayable reports whether r may be sent twice without a second effect.
func (r *h1Request) replayable() bool {
	return r.method == "GET" || r.method == "PUT" || r.idempotencyKey != ""
}

// check refuses a request that would not be one request: a control character in the
// path or in a header value would split it.
func (r *h1Request) check() error {
	for _, s := range []string{r.method, r.path} {
		for i := 0; i < len(s); i++ {
			if s[i] <= ' ' || s[i] == 0x7f {
				return fmt.Errorf("request %q %q: a space or control character in the request line", r.method, r.path)
			}
		}
	}
	for _, s := range []string{r.auth, r.turnstile, r.idempotencyKey} {
		for i := 0; i < len(s); i++ {
			if s[i] < ' ' || s[i] == 0x7f {
				return fmt.Errorf("request %s %s: a control character in a header value", r.method, r.path)
			}
		}
	}
	return nil
}

// appendTo appends r as sent to host, its path under prefix.
func (r *h1Request) appendTo(b []byte, host, prefix string) []byte {
	b = append(b, r.method...)
	b = append(b, ' ')
	b = append(b, prefix...)
	b = append(b, r.path...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, host...)
	b = append(b, "\r\nUser-Agent: revguard-loadtest\r\n"...)
	if r.auth != "" {
		b = append(b, "Authorization: Bearer "...)
		b = append(b, r.auth...)
		b = append(b, "\r\n"...)
	}
	if r.turnstile != "" {
		b = append(b, "Cf-Turnstile-Response: "...)
		b = append(b, r.turnstile...)
		b = append(b, "\r\n"...)
	}
	if r.idempotencyKey != "" {
		b = append(b, "Idempotency-Key: "...)
		b = append(b, r.idempotencyKey...)
		b = append(b, "\r\n"...)
	}
	if r.body != nil {
		b = append(b, "Content-Type: application/json\r\n"...)
	}
	if r.body != nil || r.method == "POST" || r.method == "PUT" {
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, int64(len(r.body)), 10)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	return append(b, r.body...)
}

// readAnswer reads one answer to a request of method: interim 1xx answers are skipped.
// keep reports whether the connection may carry another request; answered whether any
// byte came.
func readAnswer(br *bufio.Reader, method string, a *answer, dates *dateCache) (keep, answered bool, err error) {
	if _, err := br.Peek(1); err != nil {
		return false, false, err
	}
	for interim := 0; ; interim++ {
		h, err := readHead(br, a, dates)
		if err != nil {
			return false, true, err
		}
		if a.status >= 200 {
			return h.readBody(br, method, a)
		}
		if a.status == 101 || interim >= h1MaxInterims {
			return false, true, fmt.Errorf("%w: status %d", errH1, a.status)
		}
	}
}

// head is what the status line and the headers say about the body and the connection.
type head struct {
	length  int64 // Content-Length; -1 when absent
	chunked bool
	close   bool // the connection ends after this answer
}

// readHead reads the status line and the headers into a and h.
func readHead(br *bufio.Reader, a *answer, dates *dateCache) (head, error) {
	h := head{length: -1}
	line, err := readLine(br)
	if err != nil {
		return h, err
	}
	// HTTP/1.1 409 Conflict
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || (line[7] != '0' && line[7] != '1') ||
		line[8] != ' ' || (len(line) > 12 && line[12] != ' ') {
		return h, fmt.Errorf("%w: status line %q", errH1, truncate(line))
	}
	status, ok := parseDigits(line[9:12], 10)
	if !ok || status < 100 {
		return h, fmt.Errorf("%w: status line %q", errH1, truncate(line))
	}
	a.status = int(status)
	http10 := line[7] == '0'
	h.close = http10 // HTTP/1.0 closes unless it says keep-alive
	for n := 0; ; n++ {
		line, err := readLine(br)
		if err != nil {
			return h, err
		}
		if len(line) == 0 {
			return h, nil
		}
		if n >= h1MaxHeaders {
			return h, fmt.Errorf("%w: more than %d headers", errH1, h1MaxHeaders)
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || len(name) == 0 || bytes.ContainsAny(name, " \t") {
			return h, fmt.Errorf("%w: header line %q", errH1, truncate(line))
		}
		value = bytes.Trim(value, " \t")
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			n, ok := parseDigits(value, 10)
			if !ok || (h.length >= 0 && n != h.length) {
				return h, fmt.Errorf("%w: Content-Length %q", errH1, truncate(value))
			}
			h.length = n
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			// HTTP/1.0 has no chunked coding: its framing is faulty (RFC 9112 6.1).
			if !bytes.EqualFold(value, []byte("chunked")) || h.chunked || http10 {
				return h, fmt.Errorf("%w: Transfer-Encoding %q", errH1, truncate(value))
			}
			h.chunked = true
		case bytes.EqualFold(name, []byte("Connection")):
			for tok := range bytes.SplitSeq(value, []byte(",")) {
				switch tok = bytes.Trim(tok, " \t"); {
				case bytes.EqualFold(tok, []byte("close")):
					h.close = true
				case bytes.EqualFold(tok, []byte("keep-alive")) && http10:
					h.close = false
				}
			}
		case bytes.EqualFold(name, []byte("Date")):
			a.date, _ = dates.parseBytes(value)
		case bytes.EqualFold(name, []byte("Retry-After")):
			if s, err := strconv.Atoi(string(value)); err == nil && s >= 0 {
				a.retryAfter = time.Duration(s) * time.Second
			}
		case bytes.EqualFold(name, []byte("Idempotent-Replayed")):
			a.replayed = string(value) == "true"
		}
	}
}

// readBody reads the body of a final answer into a.
func (h head) readBody(br *bufio.Reader, method string, a *answer) (keep, answered bool, err error) {
	switch {
	case method == "HEAD" || a.status == 204 || a.status == 304:
		if h.chunked || h.length > 0 && method != "HEAD" {
			return false, true, fmt.Errorf("%w: a body on a %d answer", errH1, a.status)
		}
	case h.chunked:
		if a.body, err = readChunked(br); err != nil {
			return false, true, err
		}
	case h.length >= 0:
		if h.length > maxAnswer {
			return false, true, fmt.Errorf("answer larger than %d bytes", maxAnswer)
		}
		if h.length <= h1BufSize {
			a.body = make([]byte, h.length)
			_, err = io.ReadFull(br, a.body)
		} else { // grown as it comes, not as announced
			a.body, err = io.ReadAll(io.LimitReader(br, h.length))
			if err == nil && int64(len(a.body)) < h.length {
				err = io.ErrUnexpectedEOF
			}
		}
		if err != nil {
			return false, true, fmt.Errorf("read body: %w", err)
		}
	default: // the body ends with the connection
		if a.body, err = io.ReadAll(io.LimitReader(br, maxAnswer+1)); err != nil {
			return false, true, fmt.Errorf("read body: %w", err)
		}
		if len(a.body) > maxAnswer {
			return false, true, fmt.Errorf("answer larger than %d bytes", maxAnswer)
		}
		return false, true, nil
	}
	return !h.close, true, nil
}

// readChunked reads a chunked body and its trailers.
func readChunked(br *bufio.Reader) ([]byte, error) {
	var body []byte
	for {
		line, err := readLine(br)
		if err != nil {
			return nil, err
		}
		size, _, _ := bytes.Cut(line, []byte(";"))
		n, ok := parseDigits(bytes.TrimRight(size, " \t"), 16)
		if !ok {
			return nil, fmt.Errorf("%w: chunk size %q", errH1, truncate(line))
		}
		if n == 0 {
			break
		}
		if int64(len(body))+n > maxAnswer {
			return nil, fmt.Errorf("answer larger than %d bytes", maxAnswer)
		}
		var chunk bytes.Buffer
		chunk.Grow(int(min(n, h1BufSize)))
		if m, err := chunk.ReadFrom(io.LimitReader(br, n)); err != nil || m < n {
			return nil, fmt.Errorf("read chunk: %w", cmp.Or(err, io.ErrUnexpectedEOF))
		}
		body = append(body, chunk.Bytes()...)
		if line, err := readLine(br); err != nil || len(line) != 0 {
			return nil, fmt.Errorf("%w: no line end after a chunk", errH1)
		}
	}
	for n := 0; ; n++ { // trailers, ignored
		line, err := readLine(br)
		if err != nil {
			return nil, err
		}
		if len(line) == 0 {
			if body == nil {
				body = []byte{}
			}
			return body, nil
		}
		if n >= h1MaxHeaders {
			return nil, fmt.Errorf("%w: more than %d trailers", errH1, h1MaxHeaders)
		}
	}
}

// readLine reads a line of the head without its CRLF (or bare LF). The line is valid
// until the next read.
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	switch {
	case errors.Is(err, bufio.ErrBufferFull):
		return nil, fmt.Errorf("%w: a line longer than %d bytes", errH1, h1BufSize)
	case errors.Is(err, io.EOF) && len(line) > 0:
		return nil, io.ErrUnexpectedEOF
	case err != nil:
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

// parseDigits parses 1 to 15 digits of base 10 or 16, without sign or prefix.
func parseDigits(b []byte, base int64) (int64, bool) {
	if len(b) == 0 || len(b) > 15 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		var d int64
		switch {
		case '0' <= c && c <= '9':
			d = int64(c - '0')
		case base == 16 && 'a' <= c && c <= 'f':
			d = int64(c-'a') + 10
		case base == 16 && 'A' <= c && c <= 'F':
			d = int64(c-'A') + 10
		default:
			return 0, false
		}
		n = n*base + d
	}
	return n, true
}

// truncate shortens b for an error message.
func truncate(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}
