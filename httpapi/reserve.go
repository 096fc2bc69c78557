package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/revenueguard/revguard"
)

// reserveOutcome is the result of one pass through the reserve pipeline, shared by the
// requests that wait on the same idempotency key.
type reserveOutcome struct {
	res      revguard.Reservation
	replayed bool
	err      error
	engine   bool // the outcome is the inventory's Reserve's (the checks before it passed)
}

// handleReserve is the hot path: POST /v1/skus/{sku}/reservations.
//
// The order of checks is docs/api.md's: session; request shape (SKU id, body, Idempotency-Key);
// rate limits; an idempotent replay (which costs no bot check and no stock); the SKU
// exists; the quantity against the SKU's own per-customer limit (the rest of the shape);
// the sale is open; the sold-out fast path (no bot check, no trip to the serialisation
// point); the bot check; and the serialisation point, which answers only once the hold
// is durable.
func (s *Server) handleReserve(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	c, ok := s.requireCustomer(w, r)
	if !ok {
		return
	}
	skuID, ok := s.skuID(w, r)
	if !ok {
		return
	}
	var body reserveRequest
	err := withBody(r, func(b []byte) (err error) {
		body, err = decodeReserve(b)
		return err
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	key, err := idempotencyKey(r.Header)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := s.reserveFor(ctx, w, c.customerID, skuID, body, key, r.Header.Get("Cf-Turnstile-Response"), s.clientIP(r))
	if out.err != nil {
		s.writeError(w, r, out.err)
		return
	}
	h := w.Header()
	if out.replayed {
		h["Idempotent-Replayed"] = replayedTrue
	}
	h["Location"] = []string{"/v1/reservations/" + out.res.ID}
	s.writeReservation(w, http.StatusCreated, &out.res)
}

// reserveFor is the hot path once the request's shape is checked (handleReserve, and
// HTTPServer's reserve lane): the rate limits (whose refusal sets Retry-After on w),
// then the pipeline, with the Turnstile token of the header or else of the body. It
// counts the outcome.
func (s *Server) reserveFor(ctx context.Context, w http.ResponseWriter, customerID, skuID string, body reserveRequest, key, headerToken, ip string) reserveOutcome {
	if err := s.rateLimit(ctx, w, customerID, ip); err != nil {
		s.metrics.observeReservation(string(revguard.ErrorCode(err)))
		return reserveOutcome{err: err}
	}
	req := revguard.ReserveRequest{SKU: skuID, CustomerID: customerID, Quantity: body.Quantity, IdempotencyKey: key}
	token := headerToken
	if token == "" {
		token = body.TurnstileToken
	}
	var out reserveOutcome
	if key == "" {
		out = s.reserve(ctx, &req, token, ip)
	} else {
		out = s.reserveOnce(ctx, &req, token, ip)
	}
	switch {
	case out.err != nil:
		s.metrics.observeReservation(string(revguard.ErrorCode(out.err)))
	case out.replayed:
		s.metrics.observeReservation(outcomeReplayed)
	default:
		s.metrics.observeReservation(outcomeReserved)
	}
	return out
}

var replayedTrue = []string{"true"}

// idempotencyKey returns the optional Idempotency-Key: one header of 1 to 255 printable
// ASCII characters.
func idempotencyKey(h http.Header) (string, error) {
	vals := h["Idempotency-Key"]
	switch {
	case len(vals) == 0:
		return "", nil
	case len(vals) > 1:
		return "", revguard.Errorf(revguard.CodeInvalidRequest, "send at most one Idempotency-Key header")
	case !revguard.ValidIdempotencyKey(vals[0]):
		return "", revguard.Errorf(revguard.CodeInvalidRequest, "Idempotency-Key must be 1 to %d printable ASCII characters", revguard.MaxIdempotencyKeyLen)
	}
	return vals[0], nil
}

// flight is one run of the reserve pipeline for a customer's idempotency key, which
// the requests that arrive with the same key while it runs wait for.
type flight struct {
	req  revguard.ReserveRequest
	done chan struct{} // closed once out is set
	out  reserveOutcome
}

// errFlightPanicked is the outcome the waiters of a run that panicked get (the
// panicking request itself gets the panic, which the middleware answers with a 500).
var errFlightPanicked = errors.New("httpapi: the shared reserve pipeline panicked")

// reserveOnce runs the pipeline once for all concurrent requests of one customer with
// one idempotency key: the first runs it, the others wait and get its outcome as a
// replay. The first request runs it itself (no goroutine of its own), detached from
// its client's context, so that the client's leaving does not fail the others (it then
// finishes the run, which the backends' own deadlines bound, before it returns); each
// waiter stops waiting when its own context ends. A waiter whose SKU or quantity
// differs from the first runs the pipeline itself afterwards, which finds the key and
// refuses it as reused (or, if the first failed, reserves normally). Most requests
// meet no other with their key: that case costs a map entry, no goroutine.
func (s *Server) reserveOnce(ctx context.Context, req *revguard.ReserveRequest, token, ip string) reserveOutcome {
	key := req.CustomerID + "\x00" + req.IdempotencyKey
	s.flightMu.Lock()
	if f, ok := s.flights[key]; ok {
		s.flightMu.Unlock()
		select {
		case <-ctx.Done():
			return reserveOutcome{err: ctx.Err()}
		case <-f.done:
		}
		if f.req.SKU != req.SKU || f.req.Quantity != req.Quantity {
			return s.reserve(ctx, req, token, ip)
		}
		out := f.out
		if out.err == nil {
			out.replayed = true
		}
		return out
	}
	f := &flight{req: *req, done: make(chan struct{})}
	s.flights[key] = f
	s.flightMu.Unlock()
	completed := false
	defer func() {
		if !completed {
			f.out = reserveOutcome{err: errFlightPanicked}
		}
		s.flightMu.Lock()
		delete(s.flights, key)
		s.flightMu.Unlock()
		close(f.done)
	}()
	f.out = s.reserve(context.WithoutCancel(ctx), req, token, ip)
	completed = true
	return f.out
}

// fleetFlights is an Inventory whose idempotency keys several processes share (redis):
// it marks a key's first reserve in flight for the fleet, for at most FlightTTL. See
// redis's ClaimIdempotent.
type fleetFlights interface {
	ClaimIdempotent(ctx context.Context, customerID, key string) (release func(), mine, bound bool, err error)
	FlightTTL() time.Duration
}

// fleetFlightPoll is how often a request waits for a key's first reserve on another
// node; it waits at most a little more than a mark lasts (FlightTTL), then looks once
// more, and then answers 503.
const fleetFlightPoll = 20 * time.Millisecond

// unsure reports whether an inventory's error leaves the outcome unknown: the store
// did not answer, or failed unexpectedly, and may have reserved.
func unsure(err error) bool {
	code := revguard.ErrorCode(err) // CodeInternal for an error that is not an *Error
	return code == revguard.CodeUnavailable || code == revguard.CodeInternal
}

// reserve runs the checks after the rate limit, then the serialisation point. With an
// idempotency key on a fleet it may wait for the key's first reserve on another node
// (reserveStep): then it looks again until it replays that reservation, or runs the
// pipeline itself once the other has ended without one (refused, or its node died: the
// mark expires). reserveOnce has already merged the requests of this node.
func (s *Server) reserve(ctx context.Context, req *revguard.ReserveRequest, token, ip string) reserveOutcome {
	var until time.Time
	for {
		out, elsewhere := s.reserveStep(ctx, req, token, ip)
		if !elsewhere {
			return out
		}
		// Bounded: the client may be gone (reserveOnce detaches ctx from it).
		if now := time.Now(); until.IsZero() {
			until = now.Add(s.fleet.FlightTTL() + time.Second)
		} else if now.After(until) {
			return reserveOutcome{err: revguard.Errorf(revguard.CodeUnavailable,
				"a request with this Idempotency-Key is still under way on another node")}
		}
		t := time.NewTimer(fleetFlightPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return reserveOutcome{err: ctx.Err()}
		case <-t.C:
		}
	}
}

// reserveStep is one pass of reserve. It reports elsewhere, with no outcome, when the
// key's first reserve runs on another node.
func (s *Server) reserveStep(ctx context.Context, req *revguard.ReserveRequest, token, ip string) (result reserveOutcome, elsewhere bool) {
	if req.IdempotencyKey != "" {
		res, found, err := s.Inventory.FindIdempotent(ctx, *req)
		if err != nil {
			return reserveOutcome{err: err}, false
		}
		if found {
			return reserveOutcome{res: res, replayed: true}, false
		}
	}
	av, err := s.precheck(ctx, req)
	if err != nil {
		return reserveOutcome{err: err}, false
	}
	if req.Quantity > 1 {
		// A quantity above the SKU's per_customer_limit is a malformed request
		// (docs/api.md: quantity is 1 to per_customer_limit), refused before any state
		// of the sale (not open, sold out) that a retry could change. Only a
		// multi-unit request can exceed a limit, which is at least 1; the limit is
		// not in the cheap public view, so ask for the SKU's settings.
		sku, err := s.Inventory.FindSKU(ctx, req.SKU)
		if err != nil {
			return reserveOutcome{err: err}, false
		}
		if req.Quantity > sku.PerCustomerLimit {
			return reserveOutcome{err: revguard.Errorf(revguard.CodeInvalidRequest,
				"quantity must be between 1 and the SKU's per_customer_limit (%d)", sku.PerCustomerLimit)}, false
		}
	}
	if !av.OpensAt.IsZero() && s.Now().Before(av.OpensAt) {
		return reserveOutcome{err: revguard.Errorf(revguard.CodeSaleNotOpen,
			"the sale opens at %s", av.OpensAt.UTC().Format(time.RFC3339Nano))}, false
	}
	if av.Available < req.Quantity {
		return reserveOutcome{err: soldOut(av.Available, req.Quantity)}, false
	}
	// Past the refusals that cost nothing: on a fleet, the key's first reserve runs on
	// one node only, so that its requests on the others spend no bot check of their own
	// (a double click split over two nodes carries one token, which one check spends).
	// Without a bot check the reserve script alone keeps a key to one hold.
	if s.fleet != nil && req.IdempotencyKey != "" && s.BotChecker != nil {
		release, mine, bound, err := s.fleet.ClaimIdempotent(ctx, req.CustomerID, req.IdempotencyKey)
		if err != nil {
			return reserveOutcome{err: err}, false
		}
		if !mine {
			return reserveOutcome{}, true
		}
		// The mark ends with a refusal, so that a retry with the key runs at once; after
		// the settlement of a room's admission (reserveAdmitted, before this returns). After a
		// reservation it stays until it expires (requests elsewhere find the
		// reservation meanwhile), and after an outcome the inventory left unsure (it
		// may have reserved) too.
		defer func() {
			if result.err != nil && !(result.engine && unsure(result.err)) {
				go release() // the answer does not wait for it
			}
		}()
		if bound {
			// A reserve with the key may have ended since the look above (its mark gone
			// with it): look again, now that no other node can be making one.
			res, found, err := s.Inventory.FindIdempotent(ctx, *req)
			if err != nil {
				return reserveOutcome{err: err}, false
			}
			if found {
				return reserveOutcome{res: res, replayed: true}, false
			}
		}
	}
	// A SKU with a waiting room: the customer's admission, claimed before the bot
	// check (a customer not yet admitted spends none) and spent only if the
	// reservation is made.
	settle, err := s.gateReserve(ctx, req)
	if err != nil {
		return reserveOutcome{err: err}, false
	}
	if settle != nil {
		return s.reserveAdmitted(ctx, req, settle, true, token, ip), false
	}
	if err := s.verify(ctx, token, ip); err != nil {
		return reserveOutcome{err: err}, false
	}
	// The bot check may take seconds, and a room put meanwhile gates this reservation
	// too: look again (the node's copy of the room set, a map lookup where the SKU has
	// none).
	if s.BotChecker != nil {
		if settle, err = s.gateReserve(ctx, req); err != nil {
			return reserveOutcome{err: err}, false
		}
		if settle != nil {
			return s.reserveAdmitted(ctx, req, settle, false, token, ip), false
		}
	}
	return s.reserveNow(ctx, req), false
}

// reserveAdmitted makes the reservation of a customer whose room admission is
// claimed (after the bot check, unless verified), and settles the claim. With an
// admission at stake the reservation does not depend on the client's patience: a hold
// made after the client left, reported as the context's error, would leave the
// admission usable for a second one. Deferred, so that the claim is settled whatever
// happens.
func (s *Server) reserveAdmitted(ctx context.Context, req *revguard.ReserveRequest, settle func(made bool), verify bool, token, ip string) (out reserveOutcome) {
	defer func() { settle(admissionSpent(out)) }()
	ctx = context.WithoutCancel(ctx)
	if verify {
		if err := s.verify(ctx, token, ip); err != nil {
			return reserveOutcome{err: err}
		}
	}
	return s.reserveNow(ctx, req)
}

// admissionSpent reports whether a reservation attempt spends the admission it
// claimed: when it made a reservation, and when its outcome is unknown (a store that
// did not answer may have made it), so that one admission never buys two. A refusal
// (sold out, the bot check, the customer's limit) leaves it usable within its window.
func admissionSpent(out reserveOutcome) bool {
	if out.err == nil {
		return !out.replayed
	}
	return unsure(out.err)
}

// verify runs the bot check, where there is one.
func (s *Server) verify(ctx context.Context, token, ip string) error {
	if s.BotChecker == nil {
		return nil
	}
	if token == "" {
		s.metrics.countBotCheck(string(revguard.CodeBotCheckFailed))
		return revguard.Errorf(revguard.CodeBotCheckFailed, "a Turnstile token is required: send the CF-Turnstile-Response header or the turnstile_token field")
	}
	start := time.Now()
	err := s.BotChecker.Verify(ctx, token, ip)
	s.metrics.observeBotCheck(err, time.Since(start))
	return err
}

// reserveNow asks the serialisation point for the reservation.
func (s *Server) reserveNow(ctx context.Context, req *revguard.ReserveRequest) reserveOutcome {
	res, replayed, err := s.Inventory.Reserve(ctx, *req)
	return reserveOutcome{res: res, replayed: replayed, err: err, engine: true}
}

// precheck returns the SKU's public view for the checks before the bot check: through
// the inventory's PrecheckReserve where it has one, which lets a request that may
// succeed through without waiting for other reservations' group commits.
func (s *Server) precheck(ctx context.Context, req *revguard.ReserveRequest) (revguard.Availability, error) {
	if pc, ok := s.Inventory.(revguard.ReservePrechecker); ok {
		return pc.PrecheckReserve(ctx, req.SKU, req.Quantity)
	}
	return s.Inventory.Availability(ctx, req.SKU)
}

// errNoneLeft is the sold-out refusal of the crowd after the last unit; it is never
// modified, and sharing it saves the hot refusal path an allocation.
var errNoneLeft error = &revguard.Error{Code: revguard.CodeSoldOut, Detail: "no units are available"}

// soldOut is the refusal of a request for more units than are available.
func soldOut(available, quantity int64) error {
	if available <= 0 {
		return errNoneLeft
	}
	return &revguard.Error{Code: revguard.CodeSoldOut, Detail: "only " + strconv.FormatInt(available, 10) +
		" units are available, fewer than the " + strconv.FormatInt(quantity, 10) + " requested"}
}

// writeReservation sends the reservation object.
func (s *Server) writeReservation(w http.ResponseWriter, status int, res *revguard.Reservation) {
	bp := getBuf()
	*bp = append(appendReservation((*bp)[:0], res), '\n')
	writeJSON(w, status, *bp)
	putBuf(bp)
}
