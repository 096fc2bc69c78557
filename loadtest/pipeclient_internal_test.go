package loadtest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	rgclient "github.com/revenueguard/revguard/client"
)

// rawServer is an HTTP/1.1 server on 127.0.0.1 that reads requests as they come on each
// connection and answers each with its path, in order, so that a test sees the
// pipelining: how many requests arrived already buffered behind the one before (in the
// same read).
type rawServer struct {
	addr      string
	conns     atomic.Int64
	requests  atomic.Int64
	pipelined atomic.Int64 // requests already read into the buffer when the one before was answered

	mu   sync.Mutex
	seen map[string]int // request paths, and how many times each came
	open []net.Conn     // accepted connections, closed at cleanup
}

// Its first breakFirst connections break: each reads 8 requests, answers 3 and closes.
func newRawServer(t *testing.T, breakFirst int) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rs := &rawServer{addr: ln.Addr().String(), seen: map[string]int{}}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		rs.mu.Lock()
		for _, c := range rs.open {
			c.Close()
		}
		rs.mu.Unlock()
		wg.Wait()
	})
	// Started here; it exits when the listener is closed at cleanup.
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			breaks := rs.conns.Add(1) <= int64(breakFirst)
			rs.mu.Lock()
			rs.open = append(rs.open, conn)
			rs.mu.Unlock()
			// Started here; it exits when its connection closes: by the client, after
			// a break, or at cleanup.
			wg.Go(func() { rs.serve(conn, breaks) })
		}
	})
	return rs
}

func (rs *rawServer) serve(conn net.Conn, breaks bool) {
	defer conn.Close()
	br := bufio.NewReader(conn)
	var paths []string
	for n := 0; ; n++ {
		r, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, r.Body)
		rs.requests.Add(1)
		if n > 0 && br.Buffered() > 0 {
			rs.pipelined.Add(1)
		}
		rs.mu.Lock()
		rs.seen[r.URL.Path]++
		rs.mu.Unlock()
		paths = append(paths, r.URL.Path)
		if breaks && len(paths) < 8 {
			continue
		}
		if breaks {
			paths = paths[:3]
		}
		for _, p := range paths {
			fmt.Fprintf(conn, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s", len(p), p)
		}
		if breaks {
			return
		}
		paths = paths[:0]
	}
}

// TestPipelineInOrder: many callers at once over two pipelined connections each get
// their own answer, the requests share writes, and only the two connections are dialled.
func TestPipelineInOrder(t *testing.T) {
	rs := newRawServer(t, 0)
	c := &client{targets: []string{"http://" + rs.addr}, timeout: 5 * time.Second, now: time.Now, pipeline: 2}
	t.Cleanup(c.useTransport(64))
	var wg sync.WaitGroup
	var wrong atomic.Int64
	for g := range 64 {
		wg.Go(func() {
			for i := range 50 {
				path := fmt.Sprintf("/r/%d/%d", g, i)
				a := c.do(t.Context(), "POST", path, "", headers{}, []byte("{}"))
				if a.err != nil || a.status != 200 || string(a.body) != path {
					if wrong.Add(1) == 1 {
						t.Errorf("%s: %+v, body %q", path, a, a.body)
					}
				}
			}
		})
	}
	wg.Wait()
	if n := rs.conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
	if n := rs.requests.Load(); n != 64*50 {
		t.Errorf("server got %d requests, want %d", n, 64*50)
	}
	if rs.pipelined.Load() == 0 {
		t.Errorf("no request came behind another in one read: nothing was pipelined")
	}
	t.Logf("%d of %d requests came pipelined behind another", rs.pipelined.Load(), rs.requests.Load())
}

// TestPipelineBroken: a connection that the server closes with requests unanswered
// fails them, except those that may be sent twice (with an Idempotency-Key), which go
// again once on a new connection; a request that may not be sent twice never reaches
// the server twice, and no caller is left waiting.
func TestPipelineBroken(t *testing.T) {
	rs := newRawServer(t, 2)
	c := &client{targets: []string{"http://" + rs.addr}, timeout: 5 * time.Second, now: time.Now, pipeline: 1}
	t.Cleanup(c.useTransport(8))
	// Eight at once, on a connection that answers three of them and closes.
	send := func(prefix string, h headers) (answered, failed int) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		for i := range 8 {
			wg.Go(func() {
				path := fmt.Sprintf("/%s/%d", prefix, i)
				a := c.do(t.Context(), "POST", path, "", h, nil)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case a.err != nil:
					failed++
				case string(a.body) != path:
					t.Errorf("%s answered with %q", path, a.body)
				default:
					answered++
				}
			})
		}
		wg.Wait()
		return answered, failed
	}
	if answered, failed := send("once", headers{}); answered != 3 || failed != 5 {
		t.Errorf("without an Idempotency-Key: %d answered and %d failed, want 3 and 5", answered, failed)
	}
	if answered, failed := send("key", headers{idempotencyKey: "k"}); answered != 8 || failed != 0 {
		t.Errorf("with an Idempotency-Key: %d answered and %d failed, want 8 and 0", answered, failed)
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	twice := 0
	for path, n := range rs.seen {
		switch {
		case strings.HasPrefix(path, "/once/") && n != 1:
			t.Errorf("%s, without an Idempotency-Key, reached the server %d times", path, n)
		case n == 2:
			twice++
		}
	}
	if twice != 5 || rs.conns.Load() != 3 {
		t.Errorf("%d requests sent twice over %d connections, want 5 over 3", twice, rs.conns.Load())
	}
}

// TestPipelineClose: a closed target fails what comes next at once, and its
// connections' goroutines end.
func TestPipelineClose(t *testing.T) {
	rs := newRawServer(t, 0)
	ignore := goleak.IgnoreCurrent() // the server's
	c := &client{targets: []string{"http://" + rs.addr}, timeout: 5 * time.Second, now: time.Now, pipeline: 2}
	closeIdle := c.useTransport(4)
	for range 4 {
		if a := c.do(t.Context(), "GET", "/x", "", headers{}, nil); a.err != nil || string(a.body) != "/x" {
			t.Fatalf("before close: %+v", a)
		}
	}
	closeIdle()
	if a := c.do(t.Context(), "GET", "/x", "", headers{}, nil); !errors.Is(a.err, errPipeClosed) {
		t.Fatalf("after close: %+v, want errPipeClosed", a)
	}
	goleak.VerifyNone(t, ignore)
}

// TestPipelineLongBatch: more callers at once than a connection's writer hands its
// reader in one part are all answered, none waiting for its deadline.
func TestPipelineLongBatch(t *testing.T) {
	rs := newRawServer(t, 0)
	c := &client{targets: []string{"http://" + rs.addr}, timeout: 5 * time.Second, now: time.Now, pipeline: 1}
	t.Cleanup(c.useTransport(3 * pipeChunk))
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := range 3 * pipeChunk {
		wg.Go(func() {
			path := fmt.Sprintf("/r/%d", i)
			if a := c.do(t.Context(), "GET", path, "", headers{}, nil); a.err != nil || string(a.body) != path {
				if failed.Add(1) == 1 {
					t.Errorf("%s: %+v", path, a)
				}
			}
		})
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Errorf("%d of %d requests failed", n, 3*pipeChunk)
	}
}

// TestPipelineCloseWhileDialling: a target closed while its connection is being dialled
// (and the dial fails) fails what was queued and its writer ends.
func TestPipelineCloseWhileDialling(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	dialling := make(chan struct{}, 2)
	refused := errors.New("refused")
	p := newPipeline(&fastTarget{host: "h"}, func() (net.Conn, error) {
		dialling <- struct{}{}
		time.Sleep(20 * time.Millisecond)
		return nil, refused
	}, 1, 1, time.Millisecond)
	errs := make(chan error, 2)
	send := func() {
		_, err := p.do(&rgclient.RawRequest{Method: "GET", Path: "/"}, time.Time{})
		errs <- err
	}
	go send()
	<-dialling // the first request's dial has begun
	go send()  // queued behind it, its wake-up pending
	for queued := 0; queued == 0; {
		runtime.Gosched()
		p.mu.Lock()
		queued = len(p.conns[0].queue)
		p.mu.Unlock()
	}
	p.close()
	for range 2 {
		if err := <-errs; !errors.Is(err, refused) && !errors.Is(err, errPipeClosed) {
			t.Errorf("request: %v, want the dial's error or errPipeClosed", err)
		}
	}
	goleak.VerifyNone(t, ignore)
}

// TestReadChunked: a chunk size that would overflow the body's bound is refused.
func TestReadChunked(t *testing.T) {
	for _, in := range []string{"1\r\na\r\n7fffffffffffffff\r\n", "ffffffffffffffff\r\n", "-1\r\n", "400001\r\n"} {
		if _, err := readChunked(bufio.NewReader(strings.NewReader(in))); err == nil {
			t.Errorf("%q: read, want an error", in)
		}
	}
	b, err := readChunked(bufio.NewReader(strings.NewReader("3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: 1\r\n\r\n")))
	if err != nil || string(b) != "abcde" {
		t.Errorf("chunked body %q, %v; want abcde", b, err)
	}
}

// FuzzReadAnswer: whatever a server sends, reading an answer returns it or an error,
// never panics, and a returned answer has a final status and a bounded body.
func FuzzReadAnswer(f *testing.F) {
	f.Add([]byte("HTTP/1.1 409 Conflict\r\nContent-Type: application/problem+json\r\nContent-Length: 2\r\nDate: Mon, 07 Dec 2026 10:00:00 GMT\r\n\r\n{}"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\nok\r\n0\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 204 No Content\r\nIdempotent-Replayed: true\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 100 Continue\r\n\r\n"))
	f.Add([]byte("HTTP/1.0 200 OK\r\n\r\nbody"))
	ft := &fastTarget{host: "h"}
	f.Fuzz(func(t *testing.T, data []byte) {
		c := &pipeCall{req: &rgclient.RawRequest{Method: "POST", Path: "/"}}
		_, _, err := ft.readAnswer(bufio.NewReader(bytes.NewReader(data)), c)
		if err != nil {
			return
		}
		if s := c.resp.StatusCode; s < 200 || s > 599 || len(c.resp.Body) > maxAnswer || c.resp.Header == nil {
			t.Fatalf("answer %d with %d bytes, header %v", s, len(c.resp.Body), c.resp.Header)
		}
	})
}
