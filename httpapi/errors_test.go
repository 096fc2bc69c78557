package httpapi_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/httpapi"
	"github.com/revenueguard/revguard/httpapi/openapitest"
	"github.com/revenueguard/revguard/internal/testlog"
	"github.com/revenueguard/revguard/mock"
)

// These tests inject failures that the real backends cannot be made to produce on
// demand (a store that breaks, a panic) through package mock. Everything else is tested
// end to end against the real backends.

const (
	mockAdmin    = "admin-secret-token"
	mockCustomer = "customer-token"
)

// mockServer serves an httpapi.Server over inv and ledger, with a session store that
// knows mockCustomer as customer c1.
func mockServer(t *testing.T, inv *mock.Inventory, ledger *mock.Ledger, edit func(*httpapi.Server)) (*client, *testlog.Buffer) {
	t.Helper()
	logs := &testlog.Buffer{}
	s := httpapi.NewServer()
	s.Inventory = inv
	s.Ledger = ledger
	s.Sessions = &mock.Sessions{FindSessionFn: func(_ context.Context, token string) (revguard.Session, error) {
		if token == mockCustomer {
			return revguard.Session{CustomerID: "c1", ExpiresAt: time.Now().Add(time.Hour)}, nil
		}
		return revguard.Session{}, revguard.Errorf(revguard.CodeUnauthenticated, "unknown token")
	}}
	s.AdminToken = mockAdmin
	s.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if edit != nil {
		edit(s)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return &client{tb: t, base: srv.URL, hc: openapitest.Wrap(srv.Client())}, logs
}

func TestInternalErrors(t *testing.T) {
	secret := errors.New("sqlite: disk I/O error at /var/lib/revguard/revguard.db")
	inv := &mock.Inventory{
		FindSKUFn: func(context.Context, string) (revguard.SKU, error) {
			return revguard.SKU{}, fmt.Errorf("inproc: find sku: %w", secret)
		},
		AvailabilityFn: func(context.Context, string) (revguard.Availability, error) {
			panic("availability exploded at /src/inproc/inventory.go:42")
		},
		FindReservationFn: func(context.Context, string) (revguard.Reservation, error) {
			return revguard.Reservation{}, context.DeadlineExceeded
		},
	}
	ledger := &mock.Ledger{FindOrdersFn: func(context.Context, revguard.OrderFilter) (revguard.OrderPage, error) {
		return revguard.OrderPage{}, revguard.Errorf(revguard.CodeUnavailable, "ledger is restarting")
	}}
	c, logs := mockServer(t, inv, ledger, nil)

	t.Run("ErrInternal", func(t *testing.T) {
		r := c.do(req{Method: "GET", Path: "/v1/skus/a", Token: mockAdmin, Header: map[string]string{"X-Request-Id": "trace-123"}})
		p := r.wantProblem(t, 500, revguard.CodeInternal)
		if p.RequestID != "trace-123" || r.Header.Get("X-Request-Id") != "trace-123" {
			t.Fatalf("request id: body %q header %q, want trace-123", p.RequestID, r.Header.Get("X-Request-Id"))
		}
		if strings.Contains(string(r.Body), "sqlite") || strings.Contains(string(r.Body), "/var/lib") {
			t.Fatalf("internal error text leaked: %s", r.Body)
		}
		if l := logs.String(); !strings.Contains(l, `"request_id":"trace-123"`) || !strings.Contains(l, "disk I/O error") {
			t.Fatalf("log lacks the request id or the error: %s", l)
		}
	})
	t.Run("ErrPanic", func(t *testing.T) {
		r := c.do(req{Method: "GET", Path: "/v1/skus/a/availability"})
		p := r.wantProblem(t, 500, revguard.CodeInternal)
		if p.RequestID == "" || p.RequestID != r.Header.Get("X-Request-Id") {
			t.Fatalf("request id %q, header %q", p.RequestID, r.Header.Get("X-Request-Id"))
		}
		if strings.Contains(string(r.Body), "exploded") || strings.Contains(string(r.Body), ".go") {
			t.Fatalf("panic text leaked: %s", r.Body)
		}
		if l := logs.String(); !strings.Contains(l, p.RequestID) || !strings.Contains(l, "availability exploded") {
			t.Fatalf("log lacks the panic: %s", l)
		}
	})
	t.Run("ErrDeadline", func(t *testing.T) {
		r := c.do(req{Method: "GET", Path: "/v1/reservations/01ABC", Token: mockCustomer})
		r.wantProblem(t, 503, revguard.CodeUnavailable)
	})
	t.Run("ErrUnavailable", func(t *testing.T) {
		r := c.do(req{Method: "GET", Path: "/v1/orders", Token: mockAdmin})
		p := r.wantProblem(t, 503, revguard.CodeUnavailable)
		if p.Detail != "ledger is restarting" || p.RequestID != "" {
			t.Fatalf("detail %q request_id %q", p.Detail, p.RequestID)
		}
	})
	t.Run("ErrUnknownCode", func(t *testing.T) {
		inv.FindSKUFn = nil
		c2, _ := mockServer(t, &mock.Inventory{FindSKUFn: func(context.Context, string) (revguard.SKU, error) {
			return revguard.SKU{}, revguard.Errorf("made_up_code", "x")
		}}, ledger, nil)
		c2.do(req{Method: "GET", Path: "/v1/skus/a", Token: mockAdmin}).wantProblem(t, 500, revguard.CodeInternal)
	})
}

func TestSessionStoreDown(t *testing.T) {
	c, _ := mockServer(t, &mock.Inventory{}, &mock.Ledger{}, func(s *httpapi.Server) {
		s.Sessions = &mock.Sessions{FindSessionFn: func(context.Context, string) (revguard.Session, error) {
			return revguard.Session{}, errors.New("database is locked")
		}}
	})
	r := c.do(req{Method: "POST", Path: "/v1/skus/a/reservations", Token: "whatever"})
	r.wantProblem(t, 500, revguard.CodeInternal)
	// The admin token is recognised without asking the broken store.
	r = c.do(req{Method: "GET", Path: "/v1/me/reservations", Token: mockAdmin})
	r.wantProblem(t, 403, revguard.CodeForbidden)
}

func TestRateLimiterDown(t *testing.T) {
	reserved := false
	inv := &mock.Inventory{ReserveFn: func(context.Context, revguard.ReserveRequest) (revguard.Reservation, bool, error) {
		reserved = true
		return revguard.Reservation{}, false, nil
	}}
	c, _ := mockServer(t, inv, &mock.Ledger{}, func(s *httpapi.Server) {
		s.CustomerLimiter = &mock.RateLimiter{AllowFn: func(context.Context, string) (bool, time.Duration, error) {
			return false, 0, revguard.Errorf(revguard.CodeUnavailable, "rate limiter unreachable")
		}}
	})
	c.do(req{Method: "POST", Path: "/v1/skus/a/reservations", Token: mockCustomer}).wantProblem(t, 503, revguard.CodeUnavailable)
	if reserved {
		t.Fatal("a request refused by a broken rate limiter reserved")
	}
}

// TestBotCheckerErrorCodes checks that whatever code a BotChecker fails with reaches the
// client, and that nothing is reserved after a failed check.
func TestBotCheckerErrorCodes(t *testing.T) {
	for _, code := range []revguard.Code{revguard.CodeBotCheckFailed, revguard.CodeBotCheckUnavailable, revguard.CodeInternal} {
		t.Run(string(code), func(t *testing.T) {
			inv := &mock.Inventory{
				AvailabilityFn: func(_ context.Context, id string) (revguard.Availability, error) {
					return revguard.Availability{SKU: id, Available: 5}, nil
				},
				ReserveFn: func(context.Context, revguard.ReserveRequest) (revguard.Reservation, bool, error) {
					t.Fatal("reserved after a failed bot check")
					return revguard.Reservation{}, false, nil
				},
			}
			var gotIP string
			c, _ := mockServer(t, inv, &mock.Ledger{}, func(s *httpapi.Server) {
				s.BotChecker = &mock.BotChecker{VerifyFn: func(_ context.Context, token, ip string) error {
					gotIP = ip
					if code == revguard.CodeInternal {
						return errors.New("verifier client bug")
					}
					return revguard.Errorf(code, "no")
				}}
			})
			r := c.do(req{Method: "POST", Path: "/v1/skus/a/reservations", Token: mockCustomer,
				Header: map[string]string{"CF-Turnstile-Response": "tok"}})
			status := map[revguard.Code]int{revguard.CodeBotCheckFailed: 403, revguard.CodeBotCheckUnavailable: 503, revguard.CodeInternal: 500}[code]
			r.wantProblem(t, status, code)
			if gotIP != "127.0.0.1" {
				t.Fatalf("remote ip given to the verifier %q, want 127.0.0.1", gotIP)
			}
		})
	}
}

// findingLedger is a mock.Ledger that is also a revguard.ReservationFinder.
type findingLedger struct {
	mock.Ledger
	find func(ctx context.Context, id string) (revguard.Reservation, error)
}

func (l *findingLedger) FindReservation(ctx context.Context, id string) (revguard.Reservation, error) {
	return l.find(ctx, id)
}

// TestArchivedErrors: when the inventory does not have a reservation, the ledger's
// failures are answered as such (503, never 404 for what may exist), a ledger that
// cannot find reservations leaves the 404, and a reservation that the ledger still has
// as held (its final state not there yet) is 503 for a confirm or a release.
func TestArchivedErrors(t *testing.T) {
	notFound := func(context.Context, string) (revguard.Reservation, error) {
		return revguard.Reservation{}, revguard.Errorf(revguard.CodeReservationNotFound, "no")
	}
	inv := &mock.Inventory{
		FindReservationFn: notFound,
		ConfirmFn: func(context.Context, revguard.ConfirmRequest) (revguard.Reservation, error) {
			return revguard.Reservation{}, revguard.Errorf(revguard.CodeReservationNotFound, "no")
		},
		ReleaseFn: func(context.Context, string, string) (revguard.Reservation, error) {
			return revguard.Reservation{}, revguard.Errorf(revguard.CodeReservationNotFound, "no")
		},
	}
	t.Run("ErrLedgerUnavailable", func(t *testing.T) {
		c, _ := mockServer(t, inv, nil, func(s *httpapi.Server) {
			s.Ledger = &findingLedger{find: func(context.Context, string) (revguard.Reservation, error) {
				return revguard.Reservation{}, revguard.Errorf(revguard.CodeUnavailable, "the ledger does not answer")
			}}
		})
		c.do(req{Method: "GET", Path: "/v1/reservations/r1", Token: mockCustomer}).wantProblem(t, 503, revguard.CodeUnavailable)
		c.do(req{Method: "POST", Path: "/v1/reservations/r1/confirm", Token: mockCustomer}).wantProblem(t, 503, revguard.CodeUnavailable)
		c.do(req{Method: "POST", Path: "/v1/reservations/r1/release", Token: mockAdmin}).wantProblem(t, 503, revguard.CodeUnavailable)
	})
	t.Run("ErrHeldInLedger", func(t *testing.T) {
		c, _ := mockServer(t, inv, nil, func(s *httpapi.Server) {
			s.Ledger = &findingLedger{find: func(_ context.Context, id string) (revguard.Reservation, error) {
				return revguard.Reservation{ID: id, SKU: "a", CustomerID: "c1", Quantity: 1, Status: revguard.StatusHeld,
					CreatedAt: time.Now(), ExpiresAt: time.Now().Add(time.Minute)}, nil
			}}
		})
		c.do(req{Method: "GET", Path: "/v1/reservations/r1", Token: mockCustomer}).json(t, 200, &reservation{})
		c.do(req{Method: "POST", Path: "/v1/reservations/r1/confirm", Token: mockCustomer}).wantProblem(t, 503, revguard.CodeUnavailable)
		c.do(req{Method: "POST", Path: "/v1/reservations/r1/release", Token: mockCustomer}).wantProblem(t, 503, revguard.CodeUnavailable)
	})
	t.Run("ErrNoFinder", func(t *testing.T) {
		c, _ := mockServer(t, inv, &mock.Ledger{}, nil)
		c.do(req{Method: "GET", Path: "/v1/reservations/r1", Token: mockCustomer}).wantProblem(t, 404, revguard.CodeReservationNotFound)
		c.do(req{Method: "POST", Path: "/v1/reservations/r1/confirm", Token: mockCustomer}).wantProblem(t, 404, revguard.CodeReservationNotFound)
	})
}

// TestWaitingRoomErrors injects the waiting room's failures: a store that breaks is a
// 500 that leaks nothing, one that is down a 503, and a reservation whose admission
// could not be settled still answers its outcome (the failure is logged).
func TestWaitingRoomErrors(t *testing.T) {
	secret := errors.New("redis: READONLY You can't write against a read only replica at 10.0.0.7")
	var settled []bool
	room := &mock.WaitingRoom{
		FindPlaceFn: func(context.Context, string, string) (revguard.Place, error) {
			return revguard.Place{}, fmt.Errorf("redis: find place: %w", secret)
		},
		FindRoomFn: func(context.Context, string) (revguard.Room, error) {
			return revguard.Room{}, revguard.Errorf(revguard.CodeUnavailable, "redis does not answer")
		},
		ClaimFn: func(_ context.Context, sku, _ string) (bool, error) {
			if sku == "broken" {
				return false, secret
			}
			return true, nil
		},
		SettleFn: func(_ context.Context, _, _ string, used bool) error {
			settled = append(settled, used)
			return secret
		},
	}
	inv := &mock.Inventory{
		AvailabilityFn: func(_ context.Context, id string) (revguard.Availability, error) {
			return revguard.Availability{SKU: id, Available: 5}, nil
		},
		ReserveFn: func(_ context.Context, r revguard.ReserveRequest) (revguard.Reservation, bool, error) {
			if r.SKU == "full" {
				return revguard.Reservation{}, false, revguard.Errorf(revguard.CodeSoldOut, "no units are available")
			}
			now := time.Now().UTC()
			return revguard.Reservation{ID: "01RES", SKU: r.SKU, CustomerID: r.CustomerID, Quantity: 1,
				Status: revguard.StatusHeld, CreatedAt: now, ExpiresAt: now.Add(time.Minute)}, false, nil
		},
	}
	c, logs := mockServer(t, inv, &mock.Ledger{}, func(s *httpapi.Server) { s.WaitingRoom = room })

	r := c.do(req{Method: "GET", Path: "/v1/skus/a/waiting-room/place", Token: mockCustomer})
	r.wantProblem(t, 500, revguard.CodeInternal)
	if strings.Contains(string(r.Body), "10.0.0.7") || !strings.Contains(logs.String(), "READONLY") {
		t.Fatalf("answer %s, log %s: want the error logged and not shown", r.Body, logs.String())
	}
	c.do(req{Method: "GET", Path: "/v1/skus/a/waiting-room", Token: mockAdmin}).wantProblem(t, 503, revguard.CodeUnavailable)
	c.do(req{Method: "POST", Path: "/v1/skus/broken/reservations", Token: mockCustomer}).wantProblem(t, 500, revguard.CodeInternal)
	c.do(req{Method: "POST", Path: "/v1/skus/full/reservations", Token: mockCustomer}).wantProblem(t, 409, revguard.CodeSoldOut)
	c.do(req{Method: "POST", Path: "/v1/skus/shoe/reservations", Token: mockCustomer}).json(t, 201, &reservation{})
	if fmt.Sprint(settled) != "[false true]" {
		t.Fatalf("settled %v, want the refused reservation's claim given back and the made one's spent", settled)
	}
	if !strings.Contains(logs.String(), "settle an admission") {
		t.Fatalf("log lacks the failed settle: %s", logs.String())
	}
}

// TestSharedReservePanics: when the pipeline that requests with one idempotency key
// share panics, the request that ran it gets the middleware's 500 and those waiting for
// it a 500 too: not a hang, and not a 201 without a reservation.
func TestSharedReservePanics(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int64
	inv := &mock.Inventory{FindIdempotentFn: func(context.Context, revguard.ReserveRequest) (revguard.Reservation, bool, error) {
		if calls.Add(1) == 1 {
			close(entered)
			<-release
		}
		panic("the idempotency index exploded")
	}}
	c, logs := mockServer(t, inv, &mock.Ledger{}, nil)
	reserve := func() *response {
		return c.do(req{Method: "POST", Path: "/v1/skus/a/reservations", Token: mockCustomer, Body: `{"quantity":1}`,
			Header: map[string]string{"Idempotency-Key": "k1"}})
	}
	answers := make(chan *response, 2)
	go func() { answers <- reserve() }()
	<-entered // the first runs the pipeline; the second arrives while it does
	go func() { answers <- reserve() }()
	// Time for the second to reach the run and wait for it. Were it later, it would run
	// the pipeline itself and get the same 500: the test could then not tell a waiter's
	// answer from a runner's, but it would not fail wrongly.
	time.Sleep(100 * time.Millisecond)
	close(release)
	for range 2 {
		select {
		case r := <-answers:
			r.wantProblem(t, 500, revguard.CodeInternal)
		case <-time.After(10 * time.Second):
			t.Fatal("a request with the key of a pipeline that panicked never got an answer")
		}
	}
	if !strings.Contains(logs.String(), "the idempotency index exploded") {
		t.Fatalf("log lacks the panic: %s", logs.String())
	}
}
