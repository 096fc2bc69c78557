package inproc

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/journal"
)

// recover rebuilds the state at Open: the newest snapshot that is intact, then the
// journal's events after it. A damaged snapshot is skipped with a warning (the one
// before it still has its events in the journal); events that are needed but gone
// fail Open clearly.
func (inv *Inventory) recover(ctx context.Context) error {
	var seqs []uint64
	if inv.Dir != "" {
		var err error
		if seqs, err = listSnapshots(inv.Dir); err != nil {
			return err
		}
		if !inv.ReadOnly {
			removeTemp(inv.Dir)
		}
	}
	var skipped []string
	for _, s0 := range seqs {
		path := filepath.Join(inv.Dir, snapName(s0))
		err := inv.loadSnapshot(path)
		if err == nil {
			inv.lastSnap = s0
			inv.queueSnapshotFinals()
			break
		}
		if errors.Is(err, os.ErrNotExist) && inv.ReadOnly {
			continue // the running writer replaced it meanwhile
		}
		inv.Logger.Warn("inproc: skipping damaged snapshot", "file", path, "err", err)
		skipped = append(skipped, filepath.Base(path))
		inv.resetState()
	}

	s0 := inv.lastSnap
	last, first := inv.Journal.LastSeq(), inv.Journal.FirstSeq()
	damaged := ""
	if len(skipped) > 0 {
		damaged = fmt.Sprintf(" (damaged snapshots: %s)", strings.Join(skipped, ", "))
	}
	switch {
	case last < s0 && inv.ReadOnly:
		// The writer took a snapshot after this read-only journal was opened.
		inv.applied.Store(s0)
		return inv.finishRecovery()
	case last < s0:
		return fmt.Errorf("inproc: recover: snapshot at seq %d is ahead of the journal, which ends at %d: %w",
			s0, last, journal.ErrCorrupt)
	case last > s0 && (first == 0 || first > s0+1):
		return fmt.Errorf("inproc: recover: the journal starts at seq %d but events after %d are needed%s: %w",
			first, s0, damaged, journal.ErrCorrupt)
	}
	inv.applied.Store(s0)
	// About half of a journal's events create reservations (the others end them).
	inv.res.reserve(int(min(last-s0, 1<<30) / 2))
	n := 0
	err := inv.Journal.Replay(s0, func(ev *revguard.Event) error {
		if n++; n%65536 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if err := inv.replayEvent(ev); err != nil {
			return fmt.Errorf("inproc: recover: event %d (%s of %q): %w", ev.Seq, ev.Type, ev.SKU, err)
		}
		inv.applied.Store(ev.Seq)
		return nil
	})
	if err != nil {
		if errors.Is(err, journal.ErrCorrupt) || errors.Is(err, context.Canceled) {
			return err
		}
		return fmt.Errorf("inproc: recover: replay journal: %w", err)
	}
	return inv.finishRecovery()
}

// removeTemp deletes the temporary files of snapshots that a crash interrupted.
func removeTemp(dir string) {
	tmps, _ := filepath.Glob(filepath.Join(dir, "snapshot-*.snap.tmp"))
	for _, t := range tmps {
		os.Remove(t)
	}
}

// loadSnapshot decodes the snapshot file path and installs it.
func (inv *Inventory) loadSnapshot(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	st, err := decodeSnapshot(data)
	if err != nil {
		return err
	}
	return inv.installSnapshot(st)
}

// installSnapshot makes the decoded state inv's own. On error, call resetState.
func (inv *Inventory) installSnapshot(st *snapState) error {
	for _, s := range st.skus {
		if _, dup := inv.skus.LoadOrStore(s.id, s); dup {
			return fmt.Errorf("%w: SKU %q twice", errBadSnapshot, s.id)
		}
		inv.skuCount.Add(1)
		inv.applied.Store(max(inv.applied.Load(), s.lastSeq.Load()))
		if s.book == nil {
			continue
		}
		for _, r := range s.book.all {
			if !inv.res.insert(r) {
				return fmt.Errorf("%w: reservation %s twice", errBadSnapshot, r.id)
			}
			if r.state == stHeld {
				inv.holdCount.Add(1)
			}
			if key := r.idemKey(); key != "" {
				inv.idem.Store(idemKey(r.customer, key), r)
			}
		}
	}
	return nil
}

// resetState forgets a partly installed snapshot.
func (inv *Inventory) resetState() {
	inv.skus.Clear()
	inv.idem.Clear()
	inv.res.init()
	inv.skuCount.Store(0)
	inv.holdCount.Store(0)
	inv.applied.Store(0)
}

// finishRecovery publishes every SKU's state and arms the expirer for the SKUs with
// holds (holds that fell due while the engine was down expire at once).
func (inv *Inventory) finishRecovery() error {
	inv.skus.Range(func(_, v any) bool {
		s := v.(*sku)
		s.avail.Store(s.available())
		inv.armTimer(s)
		inv.applied.Store(max(inv.applied.Load(), s.lastSeq.Load()))
		return true
	})
	return nil
}

// errReplay marks an event that does not apply to the recovered state: the journal
// and the snapshot disagree.
var errReplay = fmt.Errorf("does not apply: %w", journal.ErrCorrupt)

// replayEvent applies one journaled event during recovery (one goroutine, before any
// other runs: no locks). Events a SKU's snapshot already contains are skipped.
func (inv *Inventory) replayEvent(ev *revguard.Event) error {
	s := inv.lookup(ev.SKU)
	if s != nil && ev.Seq <= s.lastSeq.Load() {
		return nil
	}
	if ev.Type == revguard.EventSKUPut {
		u := revguard.SKUUpdate{Stock: ev.Stock, PerCustomerLimit: ev.PerCustomerLimit, HoldSeconds: ev.HoldSeconds, OpensAt: ev.OpensAt}
		if err := revguard.CheckPut(ev.SKU, u); err != nil {
			return fmt.Errorf("%v: %w", err, errReplay)
		}
		if s == nil {
			s = newSKU(ev.SKU)
			inv.skus.Store(s.id, s)
		}
		inv.applyPut(s, ev.Stock, ev.PerCustomerLimit, ev.HoldSeconds, unixNanos(ev.OpensAt))
		if s.available() < 0 {
			return fmt.Errorf("stock %d below the %d units held or sold: %w", ev.Stock, s.held+s.sold, errReplay)
		}
		replayed(s, ev)
		return nil
	}
	if s == nil || !s.exists.Load() {
		return fmt.Errorf("unknown SKU: %w", errReplay)
	}
	id, ok := parseID(ev.ReservationID)
	if !ok {
		return fmt.Errorf("bad reservation id %q: %w", ev.ReservationID, errReplay)
	}
	at := unixNanos(ev.Time)
	if ev.Type == revguard.EventReserved {
		if ev.Quantity < 1 || ev.Quantity > math.MaxInt32 || ev.Quantity > s.available() || ev.CustomerID == "" {
			return fmt.Errorf("cannot hold %d units (%d available): %w", ev.Quantity, s.available(), errReplay)
		}
		r := &reservation{
			id:        id,
			sku:       s,
			customer:  ev.CustomerID,
			createdAt: at,
			expiresAt: unixNanos(ev.ExpiresAt),
			qty:       int32(ev.Quantity),
			state:     stHeld,
		}
		if ev.IdempotencyKey != "" {
			r.extra = &resExtra{idemKey: ev.IdempotencyKey}
		}
		if !inv.res.insert(r) {
			return fmt.Errorf("reservation %s exists: %w", ev.ReservationID, errReplay)
		}
		inv.applyReserve(s, r)
		if r.extra != nil {
			inv.idem.Store(idemKey(r.customer, r.extra.idemKey), r)
		}
		replayed(s, ev)
		return nil
	}
	r := inv.res.load(id)
	if r == nil || r.sku != s {
		return fmt.Errorf("unknown reservation %s: %w", ev.ReservationID, errReplay)
	}
	switch {
	case ev.Type == revguard.EventConfirmed && r.state == stHeld && !ev.Revived:
		inv.applyConfirm(s, r, ev.Seq, at, ev.OrderRef, false)
	case ev.Type == revguard.EventConfirmed && r.state == stExpired && ev.Revived && int64(r.qty) <= s.available():
		inv.applyConfirm(s, r, ev.Seq, at, ev.OrderRef, true)
	case ev.Type == revguard.EventReleased && r.state == stHeld:
		inv.applyRelease(s, r, ev.Seq, at)
	case ev.Type == revguard.EventExpired && r.state == stHeld:
		inv.applyExpire(s, r, ev.Seq, at)
	default:
		return fmt.Errorf("reservation %s is %s: %w", ev.ReservationID, r.state.status(), errReplay)
	}
	replayed(s, ev)
	return nil
}

// replayed records that ev is applied to s: its seq, and its time as the floor of the
// times of s's next changes (as the live path's Inventory.clock keeps it).
func replayed(s *sku, ev *revguard.Event) {
	s.lastSeq.Store(ev.Seq)
	s.lastAt = max(s.lastAt, unixNanos(ev.Time))
}
