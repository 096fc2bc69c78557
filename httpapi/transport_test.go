package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/httpapi"
	"github.com/revenueguard/revguard/internal/testlog"
)

// rawHTTP writes request to a new connection to e's server and reads one answer;
// closeWrite half-closes the connection after the request. A nil answer means the
// server closed the connection without one.
func rawHTTP(tb testing.TB, e *env, request string, closeWrite bool) *response {
	tb.Helper()
	c := e.srv.dial(tb)
	if _, err := io.WriteString(c, request); err != nil {
		tb.Fatal(err)
	}
	if closeWrite {
		c.(*net.TCPConn).CloseWrite()
	}
	method := "GET"
	if strings.HasPrefix(request, "HEAD ") {
		method = "HEAD"
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil
		}
		tb.Fatalf("read the answer to %.60q: %v", request, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("read the body of the answer to %.60q: %v", request, err)
	}
	return &response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// TestHTTPServer_Unreadable: a request the server cannot read as HTTP gets a problem
// document with a request id, never a 5xx, and changes nothing.
func TestHTTPServer_Unreadable(t *testing.T) {
	e := mustOpenEnv(t, envOptions{})
	e.putSKU("tx", `{"stock":5}`)
	token := e.session("c-tx")
	reserve := func(body string, extra string) string {
		return "POST /v1/skus/tx/reservations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token +
			"\r\nContent-Type: application/json\r\n" + extra + "\r\n" + body
	}
	big := strings.Repeat("x", 70<<10)
	cases := []struct {
		name    string
		request string
		status  int
		code    revguard.Code
		echo    string // the X-Request-Id the answer must echo; "" for any
	}{
		{"garbage", "HELLO THERE\r\n\r\n", 400, revguard.CodeInvalidRequest, ""},
		{"bad version", "GET /healthz HTTP/9\r\nHost: x\r\n\r\n", 400, revguard.CodeInvalidRequest, ""},
		{"HTTP/2.0", "GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n", 400, revguard.CodeInvalidRequest, ""},
		{"HTTP/1.2", "GET /healthz HTTP/1.2\r\nHost: x\r\n\r\n", 400, revguard.CodeInvalidRequest, ""},
		{"not a URL", "GET /v1/skus/%zz/availability HTTP/1.1\r\nHost: x\r\nX-Request-Id: mine-400\r\n\r\n", 400, revguard.CodeInvalidRequest, "mine-400"},
		{"header too large", "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 20<<10) + "\r\n\r\n", 431, revguard.CodeHeaderTooLarge, ""},
		{"announced body too large", reserve("", "X-Request-Id: mine-413\r\nContent-Length: "+strconv.Itoa(len(big))+"\r\n"), 413, revguard.CodeBodyTooLarge, "mine-413"},
		{"chunked body too large", reserve(fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(big), big), "Transfer-Encoding: chunked\r\n"), 413, revguard.CodeBodyTooLarge, ""}, // fasthttp drops the header of a chunked body it refuses: a new id
		{"broken chunks", reserve("zz\r\n{}\r\n0\r\n\r\n", "Transfer-Encoding: chunked\r\n"), 400, revguard.CodeInvalidRequest, ""},
		{"body shorter than announced", reserve(`{"quantity":1}`, "Content-Length: 40\r\n"), 400, revguard.CodeInvalidRequest, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := rawHTTP(t, e, c.request, true)
			if r == nil {
				t.Fatal("the connection was closed without an answer")
			}
			r.wantProblem(t, c.status, c.code)
			if id := r.Header.Get("X-Request-Id"); c.echo != "" && id != c.echo {
				t.Fatalf("X-Request-Id %q, want the client's %q echoed", id, c.echo)
			}
		})
	}
	if s := e.checkInvariant("tx"); s.Available != 5 {
		t.Fatalf("unreadable requests changed the SKU: %+v", s)
	}
	// A request that is well formed still works afterwards, on the raw path too.
	r := rawHTTP(t, e, reserve(`{"quantity":1}`, "Content-Length: 14\r\n"), false)
	if r == nil || r.Status != 201 {
		t.Fatalf("a well-formed raw reserve: %+v", r)
	}
}

// TestHTTPServer_Head: HEAD answers with the GET's status and headers, and the length
// of the body it leaves out.
func TestHTTPServer_Head(t *testing.T) {
	e := mustOpenEnv(t, envOptions{})
	e.putSKU("hd", `{"stock":3}`)
	get := rawHTTP(t, e, "GET /v1/skus/hd/availability HTTP/1.1\r\nHost: x\r\n\r\n", false)
	head := rawHTTP(t, e, "HEAD /v1/skus/hd/availability HTTP/1.1\r\nHost: x\r\n\r\n", false)
	if get == nil || head == nil || get.Status != 200 || head.Status != 200 {
		t.Fatalf("GET %+v, HEAD %+v", get, head)
	}
	// No body follows the head: the next answer on the connection starts right after.
	c := e.srv.dial(t)
	io.WriteString(c, "HEAD /v1/skus/hd/availability HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	if resp, err := http.ReadResponse(br, &http.Request{Method: "HEAD"}); err != nil || resp.StatusCode != 200 {
		t.Fatalf("HEAD on a kept connection: %v %v", resp, err)
	}
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("the answer after a HEAD's (a body left in between would garble it): %v %v", resp, err)
	}
	if cl := head.Header.Get("Content-Length"); cl != strconv.Itoa(len(get.Body)) {
		t.Fatalf("HEAD Content-Length %q, the GET's body has %d bytes", cl, len(get.Body))
	}
	if head.Header.Get("Content-Type") != get.Header.Get("Content-Type") || head.Header.Get("X-Request-Id") == "" {
		t.Fatalf("HEAD headers %v, GET headers %v", head.Header, get.Header)
	}
}

// TestHTTPServer_KeepAlive: answers keep the connection open, carry their status's
// own reason phrase, and pipelined requests are answered in order.
func TestHTTPServer_KeepAlive(t *testing.T) {
	e := mustOpenEnv(t, envOptions{})
	c := e.srv.dial(t)
	body := `{"stock":2}`
	fmt.Fprintf(c, "PUT /v1/skus/ka HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", e.admin, len(body), body)
	fmt.Fprintf(c, "GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n")
	fmt.Fprintf(c, "GET /v1/skus/ka/availability HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	for _, want := range []string{"201 Created", "404 Not Found", "200 OK"} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer %q: %v", want, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.Status != want || resp.Close {
			t.Fatalf("status line %q (want %q), closes the connection: %v", resp.Status, want, resp.Close)
		}
	}
}

// TestHTTPServer_KeepAliveNoContent: a 204 has no body and no Content-Length and
// keeps the connection; an HTTP/1.0 client that asks for keep-alive keeps it too,
// with the answer's length.
func TestHTTPServer_KeepAliveNoContent(t *testing.T) {
	e := mustOpenEnv(t, envOptions{})
	token := e.session("c-204")
	c := e.srv.dial(t)
	br := bufio.NewReader(c)
	fmt.Fprintf(c, "DELETE /v1/sessions/current HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", token)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 204 || resp.Close || resp.Header.Get("Content-Length") != "" {
		t.Fatalf("logout: %s, closes %v, Content-Length %q", resp.Status, resp.Close, resp.Header.Get("Content-Length"))
	}
	for range 2 {
		io.WriteString(c, "GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
		resp, err = http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("HTTP/1.0 keep-alive after a 204: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || resp.Close || resp.Header.Get("Content-Length") != strconv.Itoa(len(b)) {
			t.Fatalf("HTTP/1.0 keep-alive: %s, closes %v, Content-Length %q for %d bytes", resp.Status, resp.Close, resp.Header.Get("Content-Length"), len(b))
		}
	}
}

// TestHTTPServer_Date: every answer, an unreadable request's too, carries the
// current second in Date (fasthttp's own Date can lag by a second; clients read it
// as the answer's time).
func TestHTTPServer_Date(t *testing.T) {
	e := mustOpenEnv(t, envOptions{})
	for i := range 20 {
		before := time.Now().Truncate(time.Second)
		var r *response
		if i%2 == 0 {
			r = e.do(req{Method: "GET", Path: "/healthz"})
		} else if r = rawHTTP(t, e, "GARBAGE\r\n\r\n", true); r == nil || r.Status != 400 {
			t.Fatalf("garbage: %+v", r)
		}
		after := time.Now()
		if n := len(r.Header.Values("Date")); n != 1 {
			t.Fatalf("%d Date fields: %v", n, r.Header.Values("Date"))
		}
		d, err := http.ParseTime(r.Header.Get("Date"))
		if err != nil {
			t.Fatalf("Date %q: %v", r.Header.Get("Date"), err)
		}
		if d.Before(before) || d.After(after) {
			t.Fatalf("Date %v outside the request's span [%v, %v]", d, before, after)
		}
		time.Sleep(60 * time.Millisecond)
	}
}

// TestHTTPServer_KeepsNoBuffers: what a handler keeps of a request (the SKU id of a
// reservation, from the path) must not change when the connection's next requests
// reuse the server's buffers (TestRequestCopies checks every field of the
// conversion).
func TestHTTPServer_KeepsNoBuffers(t *testing.T) {
	e := mustOpenEnv(t, envOptions{})
	e.putSKU("aaaa", `{"stock":100,"per_customer_limit":100}`)
	e.putSKU("bbbb", `{"stock":100,"per_customer_limit":100}`)
	token := e.session("c-buf")
	// One keep-alive connection: the first reservation, then others of the same
	// lengths whose bytes differ, then the first key again.
	first := e.mustReserve(token, "aaaa", `{"quantity":1}`, map[string]string{"Idempotency-Key": "key-0000"})
	for i := 1; i <= 20; i++ {
		e.mustReserve(token, "bbbb", `{"quantity":1}`, map[string]string{"Idempotency-Key": fmt.Sprintf("key-%04d", i)})
	}
	again := e.reserve(token, "aaaa", `{"quantity":1}`, map[string]string{"Idempotency-Key": "key-0000"})
	var res reservation
	again.json(t, 201, &res)
	if again.Header.Get("Idempotent-Replayed") != "true" || res.ID != first.ID || res.SKU != "aaaa" {
		t.Fatalf("the first key's replay: %s (replayed %q), want %s of aaaa", again.Body, again.Header.Get("Idempotent-Replayed"), first.ID)
	}
	if a, b := e.checkInvariant("aaaa"), e.checkInvariant("bbbb"); a.Held != 1 || b.Held != 20 {
		t.Fatalf("held aaaa %d, bbbb %d; want 1 and 20", a.Held, b.Held)
	}
}

// streamRunning reports whether a goroutine of this process is in handler (a
// function name of the httpapi package).
func streamRunning(handler string) bool {
	var b bytes.Buffer
	pprof.Lookup("goroutine").WriteTo(&b, 1)
	return strings.Contains(b.String(), "httpapi.(*Server)."+handler)
}

// TestHTTPServer_StreamEndsWithClient: an event stream's handler ends when its client
// disconnects, and Shutdown ends the ones still open.
func TestHTTPServer_StreamEndsWithClient(t *testing.T) {
	e := mustOpenEnv(t, envOptions{changes: true})
	open := func() (net.Conn, *http.Response) {
		c := e.srv.dial(t)
		fmt.Fprintf(c, "GET /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", e.admin)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("events: %d %v", resp.StatusCode, resp.Header)
		}
		return c, resp
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !cond(); {
			if time.Now().After(deadline) {
				t.Fatalf("still not %s after 5 s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	c, _ := open()
	waitFor("streaming", func() bool { return streamRunning("handleEvents") })
	c.Close()
	waitFor("ended after the client left", func() bool { return !streamRunning("handleEvents") })

	// Shutdown ends an open stream: its client reads the end of the answer.
	c, resp := open()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.srv.srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown with an open stream: %v", err)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Fatalf("the stream did not end cleanly: %v", err)
	}
	waitFor("ended at shutdown", func() bool { return !streamRunning("handleEvents") })
}

// TestHTTPServer_StreamRefusal: a stream route's refusal is a complete answer with
// its length, as any other.
func TestHTTPServer_StreamRefusal(t *testing.T) {
	e := mustOpenEnv(t, envOptions{})
	r := rawHTTP(t, e, "GET /v1/events HTTP/1.1\r\nHost: x\r\n\r\n", false)
	if r == nil {
		t.Fatal("no answer")
	}
	r.wantProblem(t, 401, revguard.CodeUnauthenticated)
	if r.Header.Get("Content-Length") != strconv.Itoa(len(r.Body)) {
		t.Fatalf("Content-Length %q for a body of %d bytes", r.Header.Get("Content-Length"), len(r.Body))
	}
}

// FuzzRawHTTP sends arbitrary bytes as a request: the answer, if any, is never a 5xx,
// and an error is a problem document.
func FuzzRawHTTP(f *testing.F) {
	e := mustOpenEnv(f, envOptions{noSync: true})
	e.putSKU("fz", `{"stock":1000000,"per_customer_limit":1000000}`)
	token := e.session("c-fz")
	for _, s := range []string{
		"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /v1/skus/fz/reservations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token + "\r\nContent-Type: application/json\r\nContent-Length: 14\r\n\r\n{\"quantity\":1}",
		"POST /v1/skus/fz/reservations HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
		"GET /v1/skus/%zz/availability HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET http://x/healthz HTTP/1.0\r\n\r\n",
		"GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
		"\x00\x01\x02",
		"GET / HTTP/1.1\r\nHost: x\r\nX: \x7f\r\n\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, request string) {
		r := rawHTTP(t, e, request, true)
		if r == nil {
			return
		}
		if r.Status >= 500 {
			t.Fatalf("%.80q answered %d: %s", request, r.Status, r.Body)
		}
		if r.Status >= 400 {
			r.problem(t)
		}
	})
}

// TestHTTPServer_Timeout: a request that does not arrive within the read timeout,
// like a connection that never sends one, is closed without an answer (a client
// that opened it ahead of time must not read a stale error as its answer).
func TestHTTPServer_Timeout(t *testing.T) {
	e := mustOpenEnv(t, envOptions{})
	ts := serveHTTPWith(t, e.api, httpapi.HTTPConfig{ReadTimeout: 300 * time.Millisecond})
	for _, sent := range []string{"", "GET /healthz HTTP/1.1\r\nHost: x\r\n"} { // the header's end never comes
		c := ts.dial(t) // its 10 s deadline fails the read if the server never closes
		io.WriteString(c, sent)
		b, err := io.ReadAll(c)
		if err != nil || len(b) != 0 {
			t.Fatalf("after %q: read %q, %v; want the connection closed without an answer", sent, b, err)
		}
	}
}

// TestHTTPServer_Close: Close ends a kept-alive connection at once, and Serve returns.
func TestHTTPServer_Close(t *testing.T) {
	e := mustOpenEnv(t, envOptions{})
	ts := serveHTTPWith(t, e.api, httpapi.HTTPConfig{IdleTimeout: time.Minute})
	c := ts.dial(t)
	br := bufio.NewReader(c)
	io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 || resp.Close {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	ts.srv.Close()
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("the kept-alive connection is still open after Close")
	}
	select {
	case <-ts.done:
		if ts.err != nil {
			t.Fatalf("Serve after Close: %v", ts.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after Close")
	}
}

// TestHTTPServer_LogsNoCredentials: what the server logs of an unreadable request
// carries no header value (fasthttp quotes the bytes it could not parse unless told
// not to).
func TestHTTPServer_LogsNoCredentials(t *testing.T) {
	e := mustOpenEnv(t, envOptions{})
	var logs testlog.Buffer
	ts := serveHTTPWith(t, e.api, httpapi.HTTPConfig{ReadTimeout: 5 * time.Second,
		ErrorLog: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	const secret = "Bearer sekrit-0123456789-token"
	for _, req := range []string{
		"GET / HTTP/1.1\r\nAuthorization: " + secret + "\r\nNo colon here\r\n\r\n",
		"GET / HTTP/9.9\r\nHost: x\r\nAuthorization: " + secret + "\r\n\r\n",
		"G\x00T / HTTP/1.1\r\nAuthorization: " + secret + "\r\n\r\n",
	} {
		c := ts.dial(t)
		io.WriteString(c, req)
		io.ReadAll(c)
		c.Close()
	}
	ts.srv.Shutdown(t.Context()) // the log is complete once the connections are done
	out := logs.String()
	if !strings.Contains(out, "unreadable request") {
		t.Fatalf("the unreadable requests were not logged: %q", out)
	}
	if strings.Contains(out, "sekrit") {
		t.Fatalf("a credential reached the log: %q", out)
	}
}

// TestHTTPServer_BigBody: a client that sends a body over 64 KiB reads its 413, not a
// reset: the server reads on for a moment before it closes (a close with unread data
// resets the connection, and the reset can destroy the answer before it is read).
func TestHTTPServer_BigBody(t *testing.T) {
	e := mustOpenEnv(t, envOptions{})
	for _, n := range []int{70 << 10, 1 << 20, 1 << 20, 1 << 20, 4 << 20} {
		e.do(req{Method: "PUT", Path: "/v1/skus/big", Token: e.admin, Body: strings.Repeat("a", n)}).wantProblem(t, 413, revguard.CodeBodyTooLarge)
	}
}

// TestHTTPServer_MaxConns: a connection over MaxConns is answered 503 unavailable at
// once (a problem document with Retry-After and its request id) and closed; once a
// connection closes, a new one is served.
func TestHTTPServer_MaxConns(t *testing.T) {
	e := mustOpenEnv(t, envOptions{})
	ts := serveHTTPWith(t, e.api, httpapi.HTTPConfig{ReadTimeout: 10 * time.Second, MaxConns: 2})
	first, second := ts.dial(t), ts.dial(t) // open, sending nothing yet
	over := ts.dial(t)
	resp, err := http.ReadResponse(bufio.NewReader(over), nil)
	if err != nil {
		t.Fatalf("the connection over the bound: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	r := &response{Status: resp.StatusCode, Header: resp.Header, Body: body}
	r.wantProblem(t, 503, revguard.CodeUnavailable)
	if resp.Header.Get("Retry-After") != "1" || !resp.Close {
		t.Errorf("503 over the bound: Retry-After %q, close %v", resp.Header.Get("Retry-After"), resp.Close)
	}
	// The two within the bound are served.
	io.WriteString(second, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, err := http.ReadResponse(bufio.NewReader(second), nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("a connection within the bound: %v, %v", resp, err)
	}
	first.Close()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		c := ts.dial(t)
		io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		c.Close()
		if err == nil && resp.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connection served 10 s after one of the two closed: %v, %v", resp, err)
		}
	}
}

// emfileListener fails its first fails Accepts as a process out of file descriptors
// does (fault injection).
type emfileListener struct {
	net.Listener
	fails atomic.Int32
}

func (l *emfileListener) Accept() (net.Conn, error) {
	if l.fails.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// TestHTTPServer_AcceptOutOfFiles: a process out of file descriptors waits and
// accepts again; the server does not take it for its listener's end (fasthttp does,
// and its Serve returned, which ended the process).
func TestHTTPServer_AcceptOutOfFiles(t *testing.T) {
	e := mustOpenEnv(t, envOptions{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := &emfileListener{Listener: ln}
	fl.fails.Store(4)
	srv := e.api.NewHTTPServer(httpapi.HTTPConfig{ReadTimeout: 5 * time.Second})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(fl) }()
	defer func() {
		srv.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve after Close: %v", err)
		}
	}()
	hc := &http.Client{Timeout: 10 * time.Second} // a server no longer accepting: no answer
	resp, err := hc.Get("http://" + ln.Addr().String() + "/healthz")
	if err != nil {
		t.Fatalf("after 4 accepts out of files: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || fl.fails.Load() >= 0 {
		t.Fatalf("status %d, failures left %d", resp.StatusCode, fl.fails.Load())
	}
	select {
	case err := <-done:
		t.Fatalf("Serve returned: %v", err)
	default:
	}
}
