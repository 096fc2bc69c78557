package httpapi

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/revenueguard/revguard"
)

// DefaultPlaceStreamEvery is how often the place stream looks at the place.
const DefaultPlaceStreamEvery = time.Second

// placeStreamKeepAlive is how long the place stream may stay silent: a comment line
// then tells proxies the connection is alive.
const placeStreamKeepAlive = 15 * time.Second

// room returns the server's waiting room, or writes 404 waiting_room_not_found when the
// server has none.
func (s *Server) room(w http.ResponseWriter, r *http.Request) (revguard.WaitingRoom, bool) {
	if s.WaitingRoom == nil {
		s.writeProblem(w, r, revguard.CodeWaitingRoomNotFound, "this server has no waiting rooms")
		return nil, false
	}
	return s.WaitingRoom, true
}

// handlePutRoom creates (201) or replaces (200) a SKU's waiting room settings.
func (s *Server) handlePutRoom(w http.ResponseWriter, r *http.Request) {
	if !s.requireAdmin(w, r) {
		return
	}
	id, ok := s.skuID(w, r)
	if !ok {
		return
	}
	var set revguard.RoomSettings
	err := withBody(r, func(b []byte) (err error) {
		set, err = decodeRoom(b)
		return err
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	wr, ok := s.room(w, r)
	if !ok {
		return
	}
	room, created, err := wr.PutRoom(r.Context(), id, set)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		w.Header().Set("Location", "/v1/skus/"+id+"/waiting-room")
	}
	s.writeRoom(w, status, &room)
}

// handleGetRoom answers a SKU's waiting room: settings, counts and the draw.
func (s *Server) handleGetRoom(w http.ResponseWriter, r *http.Request) {
	if !s.requireAdmin(w, r) {
		return
	}
	id, ok := s.skuID(w, r)
	if !ok {
		return
	}
	wr, ok := s.room(w, r)
	if !ok {
		return
	}
	room, err := wr.FindRoom(r.Context(), id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeRoom(w, http.StatusOK, &room)
}

// handleDeleteRoom turns a SKU's waiting room off.
func (s *Server) handleDeleteRoom(w http.ResponseWriter, r *http.Request) {
	if !s.requireAdmin(w, r) {
		return
	}
	id, ok := s.skuID(w, r)
	if !ok {
		return
	}
	if err := withBody(r, decodeEmpty); err != nil {
		s.writeError(w, r, err)
		return
	}
	wr, ok := s.room(w, r)
	if !ok {
		return
	}
	if err := wr.DeleteRoom(r.Context(), id); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleJoin gives the customer a place in a SKU's waiting room (201), or answers the
// place it has (200) at no bot check. Order of checks: session, request shape, the rate
// limits (allowJoin), the room and an existing place, what the room refuses anyway,
// the bot check, then the room.
func (s *Server) handleJoin(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	c, ok := s.requireCustomer(w, r)
	if !ok {
		return
	}
	id, ok := s.skuID(w, r)
	if !ok {
		return
	}
	var body joinRequest
	err := withBody(r, func(b []byte) (err error) {
		body, err = decodeJoin(b)
		return err
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if !s.allowJoin(w, r, c) {
		return
	}
	wr, ok := s.room(w, r)
	if !ok {
		return
	}
	p, err := wr.FindPlace(ctx, id, c.customerID)
	if err == nil {
		s.writePlace(w, http.StatusOK, &p)
		return
	}
	if revguard.ErrorCode(err) != revguard.CodePlaceNotFound {
		s.writeError(w, r, err)
		return
	}
	if s.BotChecker != nil {
		// What the room would refuse in any case is refused before the bot check, which
		// would spend the customer's single-use token for nothing. The room checks again.
		if err := s.joinRefused(ctx, wr, id); err != nil {
			s.writeError(w, r, err)
			return
		}
		token := r.Header.Get("Cf-Turnstile-Response")
		if token == "" {
			token = body.TurnstileToken
		}
		if err := s.verify(ctx, token, s.clientIP(r)); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	p, joined, err := wr.Join(ctx, id, c.customerID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	status := http.StatusOK
	if joined {
		status = http.StatusCreated
	}
	s.writePlace(w, status, &p)
}

// allowJoin takes a token from the client address's bucket, then from the customer's
// bucket of joins: a bucket of its own at the --rate-limit-customer rate, so that a
// join never spends what the customer's reserve, confirm and release need, yet one
// session cannot make joins (and bot checks) without bound from many addresses.
func (s *Server) allowJoin(w http.ResponseWriter, r *http.Request, c caller) bool {
	key := "join\x00" + c.customerID // customer ids are printable: no clash with one
	if err := s.rateLimit(r.Context(), w, key, s.clientIP(r)); err != nil {
		s.writeError(w, r, err)
		return false
	}
	return true
}

// joinRefused returns the refusal that the room would give a new place whatever the
// bot check says, in the room's order: the pre-queue not open yet, then the room
// closed (sold out: nothing available and nothing held).
func (s *Server) joinRefused(ctx context.Context, wr revguard.WaitingRoom, sku string) error {
	room, err := wr.FindRoom(ctx, sku)
	if err != nil {
		return err
	}
	av, closed, err := revguard.SKUClosed(ctx, s.Inventory, sku) // as the room's join judges it
	if err != nil {
		return err
	}
	if opens := av.OpensAt.Add(-time.Duration(room.PreQueueSeconds) * time.Second); !av.OpensAt.IsZero() && s.Now().Before(opens) {
		return revguard.Errorf(revguard.CodeSaleNotOpen, "the waiting room opens at %s", opens.UTC().Format(time.RFC3339Nano))
	}
	if closed {
		return revguard.Errorf(revguard.CodeSoldOut, "sold out: the waiting room is closed")
	}
	return nil
}

// findPlace runs the checks that the reads of a place share (the customer's session,
// the SKU id, the per-IP limit only, so that polling does not spend the customer's
// reservation budget, a server with rooms) and returns the caller's place and room.
func (s *Server) findPlace(w http.ResponseWriter, r *http.Request) (wr revguard.WaitingRoom, sku, customerID string, p revguard.Place, ok bool) {
	c, ok := s.requireCustomer(w, r)
	if !ok {
		return nil, "", "", p, false
	}
	if sku, ok = s.skuID(w, r); !ok {
		return nil, "", "", p, false
	}
	if !s.allow(w, r, c, false) {
		return nil, "", "", p, false
	}
	if wr, ok = s.room(w, r); !ok {
		return nil, "", "", p, false
	}
	p, err := wr.FindPlace(r.Context(), sku, c.customerID)
	if err != nil {
		s.writeError(w, r, err)
		return nil, "", "", p, false
	}
	return wr, sku, c.customerID, p, true
}

// handleGetPlace answers the customer's place: cheap, never through the SKU's
// serialisation point.
func (s *Server) handleGetPlace(w http.ResponseWriter, r *http.Request) {
	_, _, _, p, ok := s.findPlace(w, r)
	if !ok {
		return
	}
	w.Header()["Cache-Control"] = noStore
	s.writePlace(w, http.StatusOK, &p)
}

// handlePlaceEvents streams the customer's place as server-sent events: an event
// "place" with the place object at once and whenever it changes, until the place is
// final (used or expired), the session ends (a logout, or its expiry), the client
// leaves or the server shuts down (CloseStreams). Errors before the stream starts are
// problem documents, as for GET .../place.
func (s *Server) handlePlaceEvents(w http.ResponseWriter, r *http.Request) {
	wr, sku, customerID, p, ok := s.findPlace(w, r)
	if !ok {
		return
	}
	if !s.openPlaceStream(customerID) {
		w.Header()["Retry-After"] = retryAfterOne
		s.writeProblem(w, r, revguard.CodeRateLimited, fmt.Sprintf("at most %d place streams at once per customer: close one", MaxPlaceStreams))
		return
	}
	defer s.closePlaceStream(customerID)
	token, _ := bearerToken(r.Header["Authorization"]) // findPlace authenticated it
	ctx, cancel := s.streamContext(r)
	defer cancel()
	every := s.PlaceStreamEvery
	if every <= 0 {
		every = DefaultPlaceStreamEvery
	}
	rc := startStream(w, r, "no-store")
	if rc == nil {
		return
	}
	var last []byte
	quiet := time.Duration(0)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		b := appendPlace(nil, &p)
		var out []byte
		switch {
		case !bytes.Equal(b, last):
			out = append(append([]byte("event: place\ndata: "), b...), "\n\n"...)
			last, quiet = b, 0
		case quiet >= placeStreamKeepAlive:
			out, quiet = []byte(": keep-alive\n\n"), 0
		}
		if out != nil {
			if _, err := w.Write(out); err != nil || !flush(w, rc) {
				return
			}
		}
		if p.Status == revguard.PlaceUsed || p.Status == revguard.PlaceExpired {
			return
		}
		select {
		case <-ctx.Done(): // the client left, or the server is shutting down
			return
		case <-t.C:
			quiet += every
		}
		if _, err := s.identify(ctx, token); revguard.ErrorCode(err) == revguard.CodeUnauthenticated {
			return // the session ended: the token is refused from now on, here too
		}
		var err error
		if p, err = wr.FindPlace(ctx, sku, customerID); err != nil {
			return // the room was turned off, or the client left
		}
	}
}

// MaxPlaceStreams bounds a customer's place streams open at once on one server: a
// page follows its place with one (a few tabs, a few), and each holds a connection and
// two goroutines, which one session must not multiply without end.
const MaxPlaceStreams = 8

// openPlaceStream counts a place stream of customerID, unless MaxPlaceStreams are
// open already; closePlaceStream uncounts it.
func (s *Server) openPlaceStream(customerID string) bool {
	s.placeStreamMu.Lock()
	defer s.placeStreamMu.Unlock()
	if s.placeStreams[customerID] >= MaxPlaceStreams {
		return false
	}
	if s.placeStreams == nil {
		s.placeStreams = map[string]int{}
	}
	s.placeStreams[customerID]++
	return true
}

func (s *Server) closePlaceStream(customerID string) {
	s.placeStreamMu.Lock()
	defer s.placeStreamMu.Unlock()
	if s.placeStreams[customerID]--; s.placeStreams[customerID] <= 0 {
		delete(s.placeStreams, customerID)
	}
}

// gateReserve claims the customer's admission for a reservation of a SKU that has a
// waiting room; the returned settle must be called with the reservation's outcome.
// A SKU without a room needs no admission.
func (s *Server) gateReserve(ctx context.Context, req *revguard.ReserveRequest) (settle func(made bool), err error) {
	if s.WaitingRoom == nil {
		return nil, nil
	}
	claimed, err := s.WaitingRoom.Claim(ctx, req.SKU, req.CustomerID)
	if err != nil || !claimed {
		return nil, err
	}
	sku, customer := req.SKU, req.CustomerID
	return func(made bool) {
		if err := s.WaitingRoom.Settle(context.WithoutCancel(ctx), sku, customer, made); err != nil {
			s.Logger.LogAttrs(ctx, slog.LevelError, "httpapi: settle an admission", slog.String("err", err.Error()),
				slog.String("sku", sku), slog.String("request_id", revguard.RequestIDFromContext(ctx)))
		}
	}, nil
}

// joinRequest is the optional body of POST .../waiting-room/place.
type joinRequest struct {
	TurnstileToken string
}

var joinFields = []string{"turnstile_token"}

func decodeJoin(body []byte) (joinRequest, error) {
	var req joinRequest
	if len(body) == 0 {
		return req, nil
	}
	d := objectDecoder{data: body, fields: joinFields}
	for f := d.next(); f >= 0; f = d.next() {
		if d.null() {
			continue
		}
		req.TurnstileToken = d.str("turnstile_token")
	}
	return req, d.err
}

var roomFields = []string{"pre_queue_seconds", "admit_per_second", "admission_seconds"}

// decodeRoom decodes the body of PUT /v1/skus/{sku}/waiting-room into validated
// settings: admit_per_second is required; pre_queue_seconds defaults to an hour;
// admission_seconds, when omitted or null, is the SKU's hold_seconds.
func decodeRoom(body []byte) (revguard.RoomSettings, error) {
	s := revguard.RoomSettings{PreQueueSeconds: revguard.DefaultPreQueueSeconds}
	if len(body) == 0 {
		return s, revguard.Errorf(revguard.CodeInvalidRequest, "request body is empty; admit_per_second is required")
	}
	d := objectDecoder{data: body, fields: roomFields}
	var present [3]bool
	for f := d.next(); f >= 0; f = d.next() {
		if d.null() {
			continue
		}
		present[f] = true
		switch f {
		case 0:
			s.PreQueueSeconds = d.int("pre_queue_seconds")
		case 1:
			s.AdmitPerSecond = d.int("admit_per_second")
		case 2:
			s.AdmissionSeconds = d.int("admission_seconds")
		}
	}
	if d.err != nil {
		return s, d.err
	}
	if !present[1] {
		return s, revguard.Errorf(revguard.CodeInvalidRequest, "admit_per_second is required")
	}
	if present[2] && s.AdmissionSeconds < 1 {
		s.AdmissionSeconds = -1 // make Validate refuse an explicit 0
	}
	if err := s.Validate(); err != nil {
		return revguard.RoomSettings{}, err
	}
	return s, nil
}

func (s *Server) writeRoom(w http.ResponseWriter, status int, room *revguard.Room) {
	bp := getBuf()
	*bp = append(appendRoom((*bp)[:0], room), '\n')
	writeJSON(w, status, *bp)
	putBuf(bp)
}

func (s *Server) writePlace(w http.ResponseWriter, status int, p *revguard.Place) {
	bp := getBuf()
	*bp = append(appendPlace((*bp)[:0], p), '\n')
	writeJSON(w, status, *bp)
	putBuf(bp)
}

// appendRoom appends the waiting room object.
func appendRoom(b []byte, r *revguard.Room) []byte {
	b = append(b, `{"sku":`...)
	b = appendString(b, r.SKU)
	b = append(b, `,"pre_queue_seconds":`...)
	b = strconv.AppendInt(b, r.PreQueueSeconds, 10)
	b = append(b, `,"admit_per_second":`...)
	b = strconv.AppendInt(b, r.AdmitPerSecond, 10)
	b = append(b, `,"admission_seconds":`...)
	if r.AdmissionSeconds > 0 {
		b = strconv.AppendInt(b, r.AdmissionSeconds, 10)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"joined":`...)
	b = strconv.AppendInt(b, r.Joined, 10)
	b = append(b, `,"pre_queue":`...)
	b = strconv.AppendInt(b, r.PreQueue, 10)
	b = append(b, `,"waiting":`...)
	b = strconv.AppendInt(b, r.Waiting, 10)
	b = append(b, `,"admitted":`...)
	b = strconv.AppendInt(b, r.Admitted, 10)
	b = append(b, `,"used":`...)
	b = strconv.AppendInt(b, r.Used, 10)
	b = append(b, `,"sold_out":`...)
	b = strconv.AppendBool(b, r.SoldOut)
	b = append(b, `,"draw":`...)
	if r.Seed == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, `{"seed":"`...)
		b = hex.AppendEncode(b, r.Seed)
		b = append(b, `","drawn_at":`...)
		b = appendTime(b, r.DrawnAt)
		b = append(b, `,"size":`...)
		b = strconv.AppendInt(b, r.DrawSize, 10)
		b = append(b, '}')
	}
	return append(b, '}')
}

// appendPlace appends the place object.
func appendPlace(b []byte, p *revguard.Place) []byte {
	b = append(b, `{"sku":`...)
	b = appendString(b, p.SKU)
	b = append(b, `,"customer_id":`...)
	b = appendString(b, p.CustomerID)
	b = append(b, `,"status":`...)
	b = appendString(b, string(p.Status))
	b = append(b, `,"position":`...)
	if p.Position > 0 {
		b = strconv.AppendInt(b, p.Position, 10)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"estimated_wait_seconds":`...)
	if p.EstimatedWait >= 0 {
		b = strconv.AppendInt(b, int64((p.EstimatedWait+time.Second-1)/time.Second), 10)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"joined_at":`...)
	b = appendTime(b, p.JoinedAt)
	b = append(b, `,"opens_at":`...)
	b = appendTime(b, p.OpensAt)
	b = append(b, `,"admitted_at":`...)
	b = appendTime(b, p.AdmittedAt)
	b = append(b, `,"admitted_until":`...)
	b = appendTime(b, p.AdmittedUntil)
	return append(b, '}')
}
