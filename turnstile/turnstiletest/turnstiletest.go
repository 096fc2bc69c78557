// Package turnstiletest is a fake Cloudflare Turnstile siteverify server for tests,
// benchmarks and load tests. It follows Cloudflare's documented behaviour:
//
//   - Tokens issued by [Server.Token] verify with the fake's own secret ([Server.Secret])
//     once: a second verification answers success:false with timeout-or-duplicate, and
//     so does a token older than 300 seconds (the clock is [Server.Now]). Unknown tokens,
//     including the dummy token, are invalid-input-response.
//   - A retry that carries the idempotency_key of an earlier successful verification of
//     the same token gets the same success again.
//   - The documented test secrets: [PassSecret] always passes (any token, including
//     [DummyToken]), [FailSecret] always fails (invalid-input-response), [SpentSecret]
//     always answers "token already spent" (timeout-or-duplicate).
//   - Any other secret is invalid-input-secret; missing fields are missing-input-secret
//     and missing-input-response; a token longer than 2048 bytes is invalid-input-response;
//     a malformed request is bad-request (HTTP 400).
//
// Requests are form-encoded (as BotChecker sends them), multipart or JSON, POSTed to
// [Path]. [Server.SetMode] and [Server.FailNext] make the verifier unreachable, failing
// or hanging, for fail-closed tests; [Server.Calls] and [Server.Requests] let a test
// assert how many checks were spent and which idempotency keys were sent.
//
// A Server is an [http.Handler]. [Server.Start] serves it on 127.0.0.1; [Server.Client]
// returns an http.Client that calls it in process, without a socket.
package turnstiletest

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Path is the siteverify path, as on challenges.cloudflare.com.
const Path = "/turnstile/v0/siteverify"

// Cloudflare's documented test secret keys and the dummy token that test sitekeys issue.
const (
	PassSecret  = "1x0000000000000000000000000000000AA"
	FailSecret  = "2x0000000000000000000000000000000AA"
	SpentSecret = "3x0000000000000000000000000000000AA"
	DummyToken  = "XXXX.DUMMY.TOKEN.XXXX"
)

// Variants of the failing test secrets that some references give (with the suffix of the
// matching test sitekey); the fake accepts them as aliases so that a test written from
// such a reference does not see invalid-input-secret instead.
const (
	FailSecretAlias  = "2x0000000000000000000000000000000AB"
	SpentSecretAlias = "3x0000000000000000000000000000000AD"
)

// DefaultSecret is the fake site's own secret key, under which issued tokens are checked.
const DefaultSecret = "0x4AAAAAAAfake-revguard-siteverify-secret"

// TokenTTL is how long an issued token stays valid (Cloudflare: 300 seconds).
const TokenTTL = 300 * time.Second

// MaxTokenLen is the longest token the verifier accepts.
const MaxTokenLen = 2048

// maxRequestBody bounds a siteverify request body.
const maxRequestBody = 64 << 10

// keepRequests is how many recent requests Requests remembers.
const keepRequests = 1024

// Challenge is what a solved challenge reports back through siteverify.
type Challenge struct {
	Hostname string
	Action   string
	CData    string
}

// Request is one siteverify request the fake received, the mode it was answered in, and
// the answer when the mode let it be verified.
type Request struct {
	Secret         string
	Token          string
	RemoteIP       string
	IdempotencyKey string
	Mode           Mode
	Success        bool
	ErrorCodes     []string
}

// Server is a fake siteverify endpoint. Set the exported fields before use; the methods
// are safe for concurrent use.
type Server struct {
	// Secret is the site's secret key; New sets DefaultSecret.
	Secret string

	// Hostname and Action are reported for tokens issued by Token and for the test
	// secrets; New sets "localhost" and "".
	Hostname string
	Action   string

	// Now is the fake's clock, for token expiry; New sets time.Now.
	Now func() time.Time

	calls atomic.Int64

	// mu guards everything below. It is never held together with net.mu (server.go).
	mu        sync.Mutex
	tokens    map[string]*issued
	issues    int // tokens issued since the last sweep
	mode      Mode
	remaining int // requests left in mode before it returns to ModeUp; -1 forever
	requests  []Request
	next      int // ring index into requests once it is full
	done      chan struct{}

	net listener
}

type issued struct {
	at    time.Time
	ch    Challenge
	spent bool
	key   string // idempotency key of the verification that spent the token
}

// New returns a Server that is not listening yet; use it as an http.Handler, through
// Client, or call Start.
func New() *Server {
	return &Server{
		Secret:    DefaultSecret,
		Hostname:  "localhost",
		Now:       time.Now,
		tokens:    make(map[string]*issued),
		remaining: -1,
		done:      make(chan struct{}),
	}
}

// Token issues a fresh single-use token for a challenge on the fake's Hostname and Action.
func (s *Server) Token() string {
	return s.TokenFor(Challenge{Hostname: s.Hostname, Action: s.Action})
}

// TokenFor issues a fresh single-use token for challenge c.
func (s *Server) TokenFor(c Challenge) string {
	b := make([]byte, 48)
	rand.Read(b) // never fails (crypto/rand, Go 1.24+)
	tok := "0." + base64.RawURLEncoding.EncodeToString(b)
	now := s.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[tok] = &issued{at: now, ch: c}
	s.issues++
	if s.issues >= 4096 && s.issues >= len(s.tokens)/2 {
		s.sweep(now)
	}
	return tok
}

// sweep forgets tokens long past their expiry; a forgotten token then verifies as
// invalid-input-response instead of timeout-or-duplicate, a failure either way. It keeps
// memory bounded in long load tests. Called with s.mu held.
func (s *Server) sweep(now time.Time) {
	for tok, st := range s.tokens {
		if now.Sub(st.at) > 2*TokenTTL {
			delete(s.tokens, tok)
		}
	}
	s.issues = 0
}

// Calls reports how many siteverify requests reached the fake (in every mode except
// ModeRefuse, where none does).
func (s *Server) Calls() int64 { return s.calls.Load() }

// Requests returns the most recent requests (up to 1024), oldest first.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, 0, len(s.requests))
	out = append(out, s.requests[s.next:]...)
	return append(out, s.requests[:s.next]...)
}

func (s *Server) record(r Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.requests) < keepRequests {
		s.requests = append(s.requests, r)
		return
	}
	s.requests[s.next] = r
	s.next = (s.next + 1) % keepRequests
}

// answer is a siteverify answer as Cloudflare writes it.
type answer struct {
	Success     bool     `json:"success"`
	ErrorCodes  []string `json:"error-codes"`
	ChallengeTS string   `json:"challenge_ts,omitempty"`
	Hostname    string   `json:"hostname,omitempty"`
	Action      *string  `json:"action,omitempty"`
	CData       *string  `json:"cdata,omitempty"`
}

func failure(codes ...string) answer { return answer{ErrorCodes: codes} }

func success(at time.Time, c Challenge) answer {
	return answer{
		Success:     true,
		ErrorCodes:  []string{},
		ChallengeTS: at.UTC().Format("2006-01-02T15:04:05.000Z"),
		Hostname:    c.Hostname,
		Action:      &c.Action,
		CData:       &c.CData,
	}
}

// ServeHTTP answers siteverify requests on Path.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != Path {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	s.calls.Add(1)
	mode := s.takeMode()
	// Every request is parsed and recorded, whatever the mode, so that a test can see
	// what a failed attempt carried (its idempotency key, above all).
	req, err := parseRequest(w, r)
	req.Mode = mode
	switch mode {
	case ModeError:
		s.record(req)
		http.Error(w, "internal server error", http.StatusInternalServerError)
		return
	case ModeInternalError:
		a := failure("internal-error")
		req.ErrorCodes = a.ErrorCodes
		s.record(req)
		writeAnswer(w, http.StatusOK, a)
		return
	case ModeHang:
		s.record(req)
		select {
		case <-r.Context().Done():
		case <-s.done:
		}
		return
	case ModeDrop, ModeRefuse:
		s.record(req)
		dropConnection(w)
		return
	}
	if err != nil {
		req.ErrorCodes = []string{"bad-request"}
		s.record(req)
		writeAnswer(w, http.StatusBadRequest, failure("bad-request"))
		return
	}
	a := s.verify(req)
	req.Success, req.ErrorCodes = a.Success, a.ErrorCodes
	s.record(req)
	if mode == ModeDropAnswer {
		dropConnection(w) // the token is spent, the answer is lost
		return
	}
	writeAnswer(w, http.StatusOK, a)
}

// verify decides the answer to one well-formed request.
func (s *Server) verify(req Request) answer {
	switch {
	case req.Secret == "":
		return failure("missing-input-secret")
	case req.Secret != s.Secret && !isTestSecret(req.Secret):
		return failure("invalid-input-secret")
	case req.Token == "":
		return failure("missing-input-response")
	case len(req.Token) > MaxTokenLen:
		return failure("invalid-input-response")
	}
	now := s.Now()
	switch req.Secret {
	case PassSecret:
		return success(now, Challenge{Hostname: s.Hostname, Action: s.Action})
	case FailSecret, FailSecretAlias:
		return failure("invalid-input-response")
	case SpentSecret, SpentSecretAlias:
		return failure("timeout-or-duplicate")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.tokens[req.Token]
	switch {
	case !ok:
		return failure("invalid-input-response")
	case st.spent && req.IdempotencyKey != "" && req.IdempotencyKey == st.key:
		return success(st.at, st.ch) // the same request again: the same answer
	case st.spent, now.Sub(st.at) > TokenTTL:
		return failure("timeout-or-duplicate")
	}
	st.spent, st.key = true, req.IdempotencyKey
	return success(st.at, st.ch)
}

func isTestSecret(secret string) bool {
	switch secret {
	case PassSecret, FailSecret, SpentSecret, FailSecretAlias, SpentSecretAlias:
		return true
	}
	return false
}

// parseRequest reads the fields of a siteverify request from a form-encoded, multipart
// or JSON body.
func parseRequest(w http.ResponseWriter, r *http.Request) (Request, error) {
	r.Body = http.MaxBytesReader(w, r.Body, maxRequestBody)
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return Request{}, err
	}
	switch ct {
	case "application/json":
		var body struct {
			Secret         string `json:"secret"`
			Response       string `json:"response"`
			RemoteIP       string `json:"remoteip"`
			IdempotencyKey string `json:"idempotency_key"`
		}
		dec := json.NewDecoder(r.Body)
		if err := dec.Decode(&body); err != nil {
			return Request{}, err
		}
		if dec.More() {
			return Request{}, errors.New("trailing data")
		}
		return Request{Secret: body.Secret, Token: body.Response, RemoteIP: body.RemoteIP,
			IdempotencyKey: body.IdempotencyKey}, nil
	case "application/x-www-form-urlencoded", "multipart/form-data":
		parse := r.ParseForm
		if ct == "multipart/form-data" {
			parse = func() error { return r.ParseMultipartForm(maxRequestBody) }
		}
		if err := parse(); err != nil {
			return Request{}, err
		}
		return Request{Secret: r.PostFormValue("secret"), Token: r.PostFormValue("response"),
			RemoteIP: r.PostFormValue("remoteip"), IdempotencyKey: r.PostFormValue("idempotency_key")}, nil
	}
	return Request{}, errors.New("unsupported content type")
}

func writeAnswer(w http.ResponseWriter, status int, a answer) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(a)
}

// dropConnection closes the client's connection without an answer, a transport error on
// the client side. Where the connection cannot be taken over (HTTP/2, an in-process
// recorder), the handler panics with http.ErrAbortHandler, which aborts the response.
func dropConnection(w http.ResponseWriter) {
	if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
		conn.Close()
		return
	}
	panic(http.ErrAbortHandler)
}
