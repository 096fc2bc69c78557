package httpapi_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestOptionsStar: OPTIONS * (a request for the server as a whole, RFC 9110 9.3.7) is
// the not-found problem with a plain detail, not one about dot segments.
func TestOptionsStar(t *testing.T) {
	e := mustOpenEnv(t, envOptions{})
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, "OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p struct{ Code, Detail string }
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil || resp.StatusCode != 404 || p.Code != "not_found" || p.Detail != "no such endpoint" {
		t.Fatalf("OPTIONS *: %d %+v %v; want 404 not_found, \"no such endpoint\"", resp.StatusCode, p, err)
	}
}
