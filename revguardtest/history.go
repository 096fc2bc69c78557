package revguardtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/revenueguard/revguard"
)

// History records concurrent operations on one SKU, with their call and return
// times, for a linearizability check against the sequential model of a SKU
// (SKUModel). Its methods call the inventory and record what they asked and got; they
// are safe for concurrent use.
type History struct {
	start time.Time
	mu    sync.Mutex
	ops   []porcupine.Operation
}

// NewHistory returns an empty history.
func NewHistory() *History { return &History{start: time.Now()} }

// OpKind names an operation of a history.
type OpKind string

// The operations a history records.
const (
	OpReserve         OpKind = "reserve"
	OpConfirm         OpKind = "confirm"
	OpRelease         OpKind = "release"
	OpFindSKU         OpKind = "find_sku"
	OpFindReservation OpKind = "find_reservation"
)

// OpInput is what an operation asked.
type OpInput struct {
	Kind     OpKind
	Customer string
	Quantity int64  // reserve
	ID       string // confirm, release, find_reservation
	Revive   bool   // confirm
}

// OpOutput is what an operation got: an error code, or the values it read.
type OpOutput struct {
	Code                  revguard.Code
	ID                    string          // reserve
	Status                revguard.Status // confirm, release, find_reservation
	Available, Held, Sold int64           // find_sku
}

func (h *History) record(client int, in OpInput, call func() OpOutput) OpOutput {
	begin := time.Since(h.start).Nanoseconds()
	out := call()
	end := time.Since(h.start).Nanoseconds()
	h.mu.Lock()
	h.ops = append(h.ops, porcupine.Operation{ClientId: client, Input: in, Call: begin, Output: out, Return: end})
	h.mu.Unlock()
	return out
}

// Reserve reserves and records it.
func (h *History) Reserve(ctx context.Context, inv revguard.Inventory, client int, skuID, customer string, qty int64) OpOutput {
	return h.record(client, OpInput{Kind: OpReserve, Customer: customer, Quantity: qty}, func() OpOutput {
		r, _, err := inv.Reserve(ctx, revguard.ReserveRequest{SKU: skuID, CustomerID: customer, Quantity: qty})
		return OpOutput{Code: revguard.ErrorCode(err), ID: r.ID}
	})
}

// Confirm confirms and records it.
func (h *History) Confirm(ctx context.Context, inv revguard.Inventory, client int, customer, id string, revive bool) OpOutput {
	return h.record(client, OpInput{Kind: OpConfirm, Customer: customer, ID: id, Revive: revive}, func() OpOutput {
		r, err := inv.Confirm(ctx, revguard.ConfirmRequest{ID: id, CustomerID: customer, Revive: revive})
		return OpOutput{Code: revguard.ErrorCode(err), Status: r.Status}
	})
}

// Release releases and records it.
func (h *History) Release(ctx context.Context, inv revguard.Inventory, client int, customer, id string) OpOutput {
	return h.record(client, OpInput{Kind: OpRelease, Customer: customer, ID: id}, func() OpOutput {
		r, err := inv.Release(ctx, id, customer)
		return OpOutput{Code: revguard.ErrorCode(err), Status: r.Status}
	})
}

// FindSKU reads the SKU's counts and records it.
func (h *History) FindSKU(ctx context.Context, inv revguard.Inventory, client int, skuID string) OpOutput {
	return h.record(client, OpInput{Kind: OpFindSKU}, func() OpOutput {
		s, err := inv.FindSKU(ctx, skuID)
		return OpOutput{Code: revguard.ErrorCode(err), Available: s.Available, Held: s.Held, Sold: s.Sold}
	})
}

// FindReservation reads a reservation's status and records it.
func (h *History) FindReservation(ctx context.Context, inv revguard.Inventory, client int, id string) OpOutput {
	return h.record(client, OpInput{Kind: OpFindReservation, ID: id}, func() OpOutput {
		r, err := inv.FindReservation(ctx, id)
		return OpOutput{Code: revguard.ErrorCode(err), Status: r.Status}
	})
}

// Check fails tb unless the recorded history is linearizable with respect to
// SKUModel(stock, limit): a SKU created with that stock and limit before the history
// began, whose holds do not expire during it.
func (h *History) Check(tb testing.TB, stock, limit int64) {
	tb.Helper()
	h.mu.Lock()
	ops := slices.Clone(h.ops)
	h.mu.Unlock()
	res, _ := porcupine.CheckOperationsVerbose(SKUModel(stock, limit), ops, 30*time.Second)
	switch res {
	case porcupine.Ok:
	case porcupine.Illegal:
		var b strings.Builder
		slices.SortFunc(ops, func(a, b porcupine.Operation) int { return int(a.Call - b.Call) })
		for _, op := range ops {
			fmt.Fprintf(&b, "\n  client %d [%d, %d] %+v -> %+v", op.ClientId, op.Call, op.Return, op.Input, op.Output)
		}
		tb.Fatalf("history of %d operations is not linearizable:%s", len(ops), b.String())
	default:
		tb.Fatalf("linearizability check of %d operations gave %s: keep histories smaller", len(ops), res)
	}
}

// skuState is the model's state of one SKU: the units available and every
// reservation as "id customer qty status" lines in id order. It is a comparable value,
// so porcupine can compare and cache states.
type skuState struct {
	avail int64
	res   string
}

type modelRes struct {
	id, customer string
	qty          int64
	status       revguard.Status
}

func (s skuState) list() []modelRes {
	if s.res == "" {
		return nil
	}
	lines := strings.Split(s.res, "\n")
	out := make([]modelRes, len(lines))
	for i, l := range lines {
		f := strings.Fields(l)
		q, _ := strconv.ParseInt(f[2], 10, 64)
		out[i] = modelRes{id: f[0], customer: f[1], qty: q, status: revguard.Status(f[3])}
	}
	return out
}

func makeState(avail int64, rs []modelRes) skuState {
	slices.SortFunc(rs, func(a, b modelRes) int { return strings.Compare(a.id, b.id) })
	lines := make([]string, len(rs))
	for i, r := range rs {
		lines[i] = fmt.Sprintf("%s %s %d %s", r.id, r.customer, r.qty, r.status)
	}
	return skuState{avail: avail, res: strings.Join(lines, "\n")}
}

// SKUModel is the sequential specification of one SKU with stock units and a
// per-customer limit, for porcupine. Customer ids and reservation ids must not
// contain spaces.
func SKUModel(stock, limit int64) porcupine.Model {
	return porcupine.Model{
		Init: func() any { return skuState{avail: stock} },
		Step: func(state, input, output any) (bool, any) {
			return skuStep(state.(skuState), input.(OpInput), output.(OpOutput), stock, limit)
		},
		DescribeOperation: func(input, output any) string {
			return fmt.Sprintf("%+v -> %+v", input, output)
		},
	}
}

func skuStep(s skuState, in OpInput, out OpOutput, stock, limit int64) (bool, any) {
	rs := s.list()
	find := func(id string) int {
		return slices.IndexFunc(rs, func(r modelRes) bool { return r.id == id })
	}
	var held, sold, owned int64
	for _, r := range rs {
		switch r.status {
		case revguard.StatusHeld:
			held += r.qty
		case revguard.StatusConfirmed:
			sold += r.qty
		}
		if r.customer == in.Customer && r.status.Counts() {
			owned += r.qty
		}
	}
	switch in.Kind {
	case OpFindSKU:
		return out.Code == "" && out.Available == s.avail && out.Held == held && out.Sold == sold && s.avail+held+sold == stock, s
	case OpReserve:
		switch {
		case s.avail < in.Quantity:
			return out.Code == revguard.CodeSoldOut, s
		case owned+in.Quantity > limit:
			return out.Code == revguard.CodeLimitExceeded, s
		case out.Code != "" || out.ID == "" || find(out.ID) >= 0:
			return false, s
		}
		rs = append(rs, modelRes{id: out.ID, customer: in.Customer, qty: in.Quantity, status: revguard.StatusHeld})
		return true, makeState(s.avail-in.Quantity, rs)
	}
	i := find(in.ID)
	if i < 0 || (in.Kind != OpFindReservation && rs[i].customer != in.Customer) {
		return out.Code == revguard.CodeReservationNotFound, s
	}
	r := &rs[i]
	switch in.Kind {
	case OpFindReservation:
		return out.Code == "" && out.Status == r.status, s
	case OpConfirm:
		to, _, code := revguard.ConfirmOutcome(r.status, in.Revive)
		if code != "" || r.status == to {
			return out.Code == code && (code != "" || out.Status == to), s
		}
		if !(out.Code == "" && out.Status == to) {
			return false, s
		}
		r.status = to
		return true, makeState(s.avail, rs)
	case OpRelease:
		to, code := revguard.ReleaseOutcome(r.status)
		if code != "" || r.status == to {
			return out.Code == code && (code != "" || out.Status == to), s
		}
		if !(out.Code == "" && out.Status == to) {
			return false, s
		}
		r.status = to
		return true, makeState(s.avail+r.qty, rs)
	}
	return false, s
}

// testLinearizable runs rounds of concurrent reserve, confirm, release and reads on
// one SKU each and checks every history. Holds never expire during a round.
func testLinearizable(f *invFixture) {
	const (
		rounds  = 12
		clients = 5
		ops     = 7
		stock   = 4
		limit   = 2
	)
	for round := range rounds {
		skuID := fmt.Sprintf("lin-%d", round)
		f.put(skuID, stock, limit, 3600)
		h := NewHistory()
		var wg sync.WaitGroup
		for c := range clients {
			// Clients 0 and 1 act for the same customer, so the limit is contended.
			customer := fmt.Sprintf("c%d", max(c, 1))
			rng := rand.New(rand.NewPCG(uint64(round), uint64(c)))
			wg.Go(func() {
				var mine []string
				for range ops {
					switch p := rng.IntN(10); {
					case p < 4 || len(mine) == 0:
						out := h.Reserve(f.ctx, f.inv, c, skuID, customer, 1+rng.Int64N(2))
						if out.ID != "" {
							mine = append(mine, out.ID)
						}
					case p < 6:
						h.Confirm(f.ctx, f.inv, c, customer, mine[rng.IntN(len(mine))], false)
					case p < 8:
						h.Release(f.ctx, f.inv, c, customer, mine[rng.IntN(len(mine))])
					case p < 9:
						h.FindReservation(f.ctx, f.inv, c, mine[rng.IntN(len(mine))])
					default:
						h.FindSKU(f.ctx, f.inv, c, skuID)
					}
				}
			})
		}
		wg.Wait()
		h.Check(f.t, stock, limit)
		f.check(skuID)
	}
}
