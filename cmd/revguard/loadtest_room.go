package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/revenueguard/revguard"
)

// roomGroups are the simulated distances of `revguard loadtest --waiting-room`: every
// request of a customer in a group is delayed by the group's latency, as a buyer far
// from the server would be.
var roomGroups = []time.Duration{0, 50 * time.Millisecond, 150 * time.Millisecond, 300 * time.Millisecond}

// roomLoad is one fairness experiment: a crowd split into the distance groups, the same
// crowd with the waiting room on and with it off.
type roomLoad struct {
	base     string
	admin    string
	tokens   func() string // a valid bot-check token
	hc       *http.Client
	crowd    int
	stock    int64
	rate     int64         // admissions per second
	preQueue time.Duration // how long before opens_at the crowd arrives
	seed     uint64
	timeout  time.Duration
}

// roomOutcome is what one run of the crowd got, per group.
type roomOutcome struct {
	customers [4]int
	admitted  [4]int
	won       [4]int
	took      time.Duration
}

// groupOf is the distance group of customer i (round-robin: equal shares).
func groupOf(i int) int { return i % len(roomGroups) }

// call sends one request after the customer's distance, decodes a JSON answer into out
// and returns the status and, for a problem document, its code.
func (l *roomLoad) call(ctx context.Context, delay time.Duration, method, path, token, body string, hdr map[string]string, out any) (int, string, error) {
	select {
	case <-time.After(delay):
	case <-ctx.Done():
		return 0, "", ctx.Err()
	}
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, l.base+path, rd)
	if err != nil {
		return 0, "", err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+token)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := l.hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, "", err
	}
	if resp.StatusCode >= 400 {
		var p struct {
			Code string `json:"code"`
		}
		json.Unmarshal(b, &p)
		return resp.StatusCode, p.Code, nil
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, "", err
		}
	}
	return resp.StatusCode, "", nil
}

func (l *roomLoad) adminCall(ctx context.Context, method, path, body string, want ...int) error {
	st, _, err := l.call(ctx, 0, method, path, l.admin, body, nil, nil)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	for _, w := range want {
		if st == w {
			return nil
		}
	}
	return fmt.Errorf("%s %s: status %d", method, path, st)
}

// sessions issues a session per customer.
func (l *roomLoad) sessions(ctx context.Context, prefix string) ([]string, error) {
	tokens := make([]string, l.crowd)
	errs := make(chan error, 64)
	var wg sync.WaitGroup
	for g := range 64 {
		wg.Go(func() {
			for i := g; i < l.crowd; i += 64 {
				var s struct {
					Token string `json:"token"`
				}
				st, _, err := l.call(ctx, 0, "POST", "/v1/sessions", l.admin, fmt.Sprintf(`{"customer_id":"%s-%d"}`, prefix, i), nil, &s)
				if err != nil || st != http.StatusCreated {
					errs <- fmt.Errorf("session %d: status %d, %v", i, st, err)
					return
				}
				tokens[i] = s.Token
			}
		})
	}
	wg.Wait()
	close(errs)
	return tokens, <-errs
}

// buy reserves one unit and confirms it, and reports whether the unit was won. It
// tries again on sale_not_open (a clock a hair early) and on 429 and 503.
func (l *roomLoad) buy(ctx context.Context, delay time.Duration, sku, token string) bool {
	for {
		var res struct {
			ID string `json:"id"`
		}
		st, code, err := l.call(ctx, delay, "POST", "/v1/skus/"+sku+"/reservations", token, "", map[string]string{"CF-Turnstile-Response": l.tokens()}, &res)
		switch {
		case err != nil:
			return false
		case st == http.StatusCreated:
			l.call(ctx, delay, "POST", "/v1/reservations/"+res.ID+"/confirm", token, "", nil, nil)
			return true
		case code == string(revguard.CodeSaleNotOpen) || st == http.StatusTooManyRequests || st == http.StatusServiceUnavailable:
			select {
			case <-time.After(20 * time.Millisecond):
			case <-ctx.Done():
				return false
			}
		default:
			return false
		}
	}
}

// run plays the crowd once, with the room on or off, on a fresh SKU.
func (l *roomLoad) run(ctx context.Context, withRoom bool) (roomOutcome, error) {
	var out roomOutcome
	sku := fmt.Sprintf("fair-%d-%v", l.seed, withRoom)
	// The sessions first: the crowd's pre-queue starts once they exist, so that a slow
	// setup does not push the last arrivals past opens_at (and out of the draw).
	tokens, err := l.sessions(ctx, sku)
	if err != nil {
		return out, err
	}
	opens := time.Now().Add(l.preQueue + time.Second).UTC()
	if err := l.adminCall(ctx, "PUT", "/v1/skus/"+sku, fmt.Sprintf(`{"stock":%d,"per_customer_limit":1,"hold_seconds":600,"opens_at":%q}`,
		l.stock, opens.Format(time.RFC3339Nano)), 200, 201); err != nil {
		return out, err
	}
	if withRoom {
		if err := l.adminCall(ctx, "PUT", "/v1/skus/"+sku+"/waiting-room", fmt.Sprintf(`{"admit_per_second":%d,"pre_queue_seconds":3600}`, l.rate), 201); err != nil {
			return out, err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	rng := rand.New(rand.NewPCG(l.seed, 1))
	arrive := make([]time.Duration, l.crowd)
	for i := range arrive {
		arrive[i] = time.Duration(rng.Int64N(int64(l.preQueue)))
	}
	start := time.Now()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range l.crowd {
		g := groupOf(i)
		out.customers[g]++
		delay := roomGroups[g]
		wg.Go(func() {
			var admitted, won bool
			if withRoom {
				admitted, won = l.waitAndBuy(ctx, start.Add(arrive[i]), delay, sku, tokens[i])
			} else {
				sleepUntil(ctx, opens) // everyone clicks at the opening instant
				won = l.buy(ctx, delay, sku, tokens[i])
			}
			mu.Lock()
			if admitted {
				out.admitted[g]++
			}
			if won {
				out.won[g]++
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	out.took = time.Since(start)
	return out, ctx.Err()
}

func sleepUntil(ctx context.Context, t time.Time) {
	select {
	case <-time.After(time.Until(t)):
	case <-ctx.Done():
	}
}

// waitAndBuy joins the room at arrival, polls its place at a pace set by the estimated
// wait, and buys once admitted.
func (l *roomLoad) waitAndBuy(ctx context.Context, arrival time.Time, delay time.Duration, sku, token string) (admitted, won bool) {
	sleepUntil(ctx, arrival)
	type placeJSON struct {
		Status string `json:"status"`
		Wait   *int64 `json:"estimated_wait_seconds"`
	}
	var p placeJSON
	st, _, err := l.call(ctx, delay, "POST", "/v1/skus/"+sku+"/waiting-room/place", token, "", map[string]string{"CF-Turnstile-Response": l.tokens()}, &p)
	if err != nil || st != http.StatusCreated && st != http.StatusOK {
		return false, false
	}
	for {
		switch p.Status {
		case string(revguard.PlaceAdmitted):
			return true, l.buy(ctx, delay, sku, token)
		case string(revguard.PlaceSoldOut), string(revguard.PlaceExpired), string(revguard.PlaceUsed):
			return false, false
		}
		wait := 500 * time.Millisecond
		if p.Wait != nil {
			wait = min(max(time.Duration(*p.Wait)*time.Second/2, 250*time.Millisecond), 3*time.Second)
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return false, false
		}
		p = placeJSON{}
		if st, _, err := l.call(ctx, delay, "GET", "/v1/skus/"+sku+"/waiting-room/place", token, "", nil, &p); err != nil || st != http.StatusOK {
			return false, false
		}
	}
}

// writeRoomReport prints each group's share of the crowd, of the admissions and of the
// stock, with the room and without, against the sampling noise of a fair draw.
func writeRoomReport(w io.Writer, l *roomLoad, on, off roomOutcome) bool {
	var wonOn, wonOff, admOn int
	for g := range roomGroups {
		wonOn += on.won[g]
		wonOff += off.won[g]
		admOn += on.admitted[g]
	}
	share := func(n, of int) float64 {
		if of == 0 {
			return 0
		}
		return 100 * float64(n) / float64(of)
	}
	// A fair room gives each group a share of the units like a draw without
	// replacement of wonOn customers from the crowd: its standard deviation.
	p := 1 / float64(len(roomGroups))
	n, N := float64(max(wonOn, 1)), float64(l.crowd)
	sigma := 100 * math.Sqrt(p*(1-p)/n*max((N-n)/(N-1), 0))
	fmt.Fprintf(w, "waiting room fairness: %d customers in %d groups, %d units, %d admitted a second\n",
		l.crowd, len(roomGroups), l.stock, l.rate)
	fmt.Fprintf(w, "(every request of a group is delayed by its distance; with the room the crowd joins in the %s before the opening, without it everyone clicks at the opening)\n\n", l.preQueue)
	fmt.Fprintf(w, "  %-9s %7s   %-28s   %s\n", "", "", "with the waiting room", "without it")
	fmt.Fprintf(w, "  %-9s %7s   %13s %14s   %14s\n", "distance", "crowd", "admissions", "stock", "stock")
	fair := true
	for g, d := range roomGroups {
		crowd := share(on.customers[g], l.crowd)
		sOn := share(on.won[g], wonOn)
		if math.Abs(sOn-crowd) > 3*sigma {
			fair = false
		}
		fmt.Fprintf(w, "  +%-3d ms   %6.1f%%   %6.1f%% %5d  %6.1f%% %5d   %6.1f%% %5d\n", d.Milliseconds(), crowd,
			share(on.admitted[g], admOn), on.admitted[g], sOn, on.won[g], share(off.won[g], wonOff), off.won[g])
	}
	fmt.Fprintf(w, "\nsampling noise of a group's share of the stock under a fair draw: σ = %.1f points\n", sigma)
	verdict := "every group within 3σ of its share of the crowd"
	if !fair {
		verdict = "SOME GROUP OUTSIDE 3σ of its share of the crowd"
	}
	fmt.Fprintf(w, "with the room (%s): %s\n", on.took.Round(100*time.Millisecond), verdict)
	fmt.Fprintf(w, "without it (%s): the nearest group took %.1f%% of the stock, the farthest %.1f%%\n",
		off.took.Round(100*time.Millisecond), share(off.won[0], wonOff), share(off.won[len(roomGroups)-1], wonOff))
	return fair
}

// runWaitingRoom runs `revguard loadtest --waiting-room`.
func (lc *LoadtestCommand) runWaitingRoom(ctx context.Context, c loadtestConfig) error {
	l := &roomLoad{crowd: c.scenario.Customers, stock: c.scenario.Stock, rate: c.roomRate,
		preQueue: c.roomPreQueue, timeout: c.scenario.Duration + c.roomPreQueue + 30*time.Second,
		seed: uint64(c.scenario.Seed)}
	if l.seed == 0 {
		l.seed = rand.Uint64() >> 1
	}
	switch {
	case len(c.targets) == 0:
		srv, err := startEmbedded(ctx, c.dataDir, lc.Stderr)
		if err != nil {
			return err
		}
		defer srv.Close()
		l.base, l.admin, l.tokens = srv.main.URL(), srv.main.Config.AdminToken, srv.verifier.Token
		fmt.Fprintf(lc.Stderr, "loadtest: embedded server on %s, bot check against a fake verifier\n", l.base)
	case c.token != "":
		l.base, l.admin, l.tokens = c.targets[0], c.adminToken, func() string { return c.token }
	default:
		return usageErrorf("loadtest: --waiting-room with --target needs --turnstile-token")
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost, tr.MaxConnsPerHost = c.scenario.Connections, c.scenario.Connections
	l.hc = &http.Client{Transport: tr, Timeout: c.requestTimeout}
	defer tr.CloseIdleConnections()

	fmt.Fprintln(lc.Stderr, "loadtest: the crowd with the waiting room…")
	on, err := l.run(ctx, true)
	if err != nil {
		return fmt.Errorf("loadtest: with the waiting room: %w", err)
	}
	fmt.Fprintln(lc.Stderr, "loadtest: the same crowd without it…")
	off, err := l.run(ctx, false)
	if err != nil {
		return fmt.Errorf("loadtest: without the waiting room: %w", err)
	}
	var buf bytes.Buffer
	fair := writeRoomReport(&buf, l, on, off)
	if _, err := lc.Stdout.Write(buf.Bytes()); err != nil {
		return err
	}
	if !fair {
		return fmt.Errorf("loadtest: the waiting room's outcome is outside the noise of a fair draw")
	}
	return nil
}
