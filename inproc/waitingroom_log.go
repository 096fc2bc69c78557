package inproc

import (
	"context"
	"sync"

	"github.com/revenueguard/revguard"
)

// roomCommitter writes the records of concurrent callers to the room log in shared
// appends (group commit). Records are enqueued under the room lock that orders them,
// and waited for after it is released: the first waiter that finds no append under way
// appends everything enqueued so far, in order; the others find their batch done.
type roomCommitter struct {
	log revguard.RoomLog

	mu      sync.Mutex // guards pending and batch
	pending []revguard.RoomRecord
	batch   *commitBatch // the batch that pending will be written in

	wmu sync.Mutex // held while appending
}

// commitBatch is the outcome of one append.
type commitBatch struct {
	done chan struct{} // closed once written, or failed (err)
	err  error
}

// enqueue adds recs to the next append and returns its batch. It does not block on
// I/O, so callers may hold their room's lock.
func (c *roomCommitter) enqueue(recs ...revguard.RoomRecord) *commitBatch {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.batch == nil {
		c.batch = &commitBatch{done: make(chan struct{})}
	}
	c.pending = append(c.pending, recs...)
	return c.batch
}

// wait returns once b is durable, appending it (and whatever else is pending) itself
// when no other caller is. A nil b is nothing to wait for. It does not stop for a
// context: a commit under way serves every caller in its batch.
func (c *roomCommitter) wait(b *commitBatch) error {
	if b == nil {
		return nil
	}
	select {
	case <-b.done:
		return b.err
	default:
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	select {
	case <-b.done: // appended by the caller that held wmu
		return b.err
	default:
	}
	// b is not done and no append is under way, so b is still the pending batch.
	c.mu.Lock()
	recs, cur := c.pending, c.batch
	c.pending, c.batch = nil, nil
	c.mu.Unlock()
	cur.err = c.log.AppendRoomRecords(context.Background(), recs)
	close(cur.done)
	return b.err
}

// replay applies one record of the log to the rooms, at Open.
func (w *WaitingRoom) replay(rec revguard.RoomRecord) error {
	rooms := *w.rooms.Load() // Open's own map: no reader yet
	r := rooms[rec.SKU]
	if r == nil {
		r = newRoom(rec.SKU)
		rooms[rec.SKU] = r
	}
	get := func() *place {
		p := r.places[rec.CustomerID]
		if p == nil {
			p = &place{customer: rec.CustomerID, joinedAt: rec.Time, ready: closedCh}
			r.places[rec.CustomerID] = p
		}
		return p
	}
	// placeAt puts p in line at its ticket; failed joins left holes.
	placeAt := func(p *place, ticket int64) {
		p.ticket = ticket
		for int64(len(r.line)) < ticket-1 {
			r.line = append(r.line, nil)
		}
		if int64(len(r.line)) < ticket {
			r.line = append(r.line, p)
		} else {
			r.line[ticket-1] = p
		}
	}
	switch rec.Type {
	case revguard.RoomPut:
		r.settings, r.enabled = rec.Settings, true
	case revguard.RoomDeleted:
		r.enabled = false
	case revguard.RoomJoined:
		known := r.places[rec.CustomerID] != nil
		p := get()
		p.joinedAt = rec.Time
		switch {
		case known:
		case rec.Ticket == 0:
			r.prequeue = append(r.prequeue, p)
		default:
			placeAt(p, rec.Ticket)
		}
	case revguard.RoomDrawn:
		r.drawn, r.drawnAt, r.seed, r.drawSize = true, rec.Time, rec.Seed, rec.Ticket
		r.prequeue = nil
	case revguard.RoomPlaced:
		placeAt(get(), rec.Ticket)
	case revguard.RoomAdmitted:
		p := get()
		p.admitted, p.admittedAt, p.until = true, rec.Time, rec.Until
		r.head = max(r.head, int(p.ticket))
		r.admitted = append(r.admitted, p)
	case revguard.RoomUsed:
		p := get()
		if !p.used {
			p.used = true
			r.used++
		}
	case revguard.RoomClosed:
		r.soldOut = true
	case revguard.RoomReopened:
		r.soldOut = false
	}
	return nil
}
