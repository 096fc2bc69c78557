package main

import (
	"context"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/postgres"
	"github.com/revenueguard/revguard/redis"
	"github.com/revenueguard/revguard/sqlite"
)

// roomColumns is the CSV header of `revguard export --waiting-room`.
var roomColumns = []string{"seq", "sku", "type", "time", "customer_id", "ticket", "until", "seed",
	"pre_queue_seconds", "admit_per_second", "admission_seconds"}

// roomLine is one record of the room log as a JSON line.
type roomLine struct {
	Seq              int64   `json:"seq"`
	SKU              string  `json:"sku"`
	Type             string  `json:"type"`
	Time             string  `json:"time"`
	CustomerID       *string `json:"customer_id,omitempty"`
	Ticket           *int64  `json:"ticket,omitempty"`
	Until            *string `json:"until,omitempty"`
	Seed             *string `json:"seed,omitempty"`
	PreQueueSeconds  *int64  `json:"pre_queue_seconds,omitempty"`
	AdmitPerSecond   *int64  `json:"admit_per_second,omitempty"`
	AdmissionSeconds *int64  `json:"admission_seconds,omitempty"`
}

// drawCheck reproduces the draws of a room log as it is read: the pre-queue's joins in
// order, then the seed, then the order the draw gave. Once the log has been read,
// every draw's recorded order must equal DrawOrder of its seed and its pre-queue.
type drawCheck struct {
	prequeue map[string][]string // SKU → customers who joined before the draw, in order
	drawn    map[string]*draw    // SKU → its draw
	skus     []string            // the SKUs drawn, in the order of their draws
}

type draw struct {
	seed  []byte
	size  int64
	order []string // as recorded, by ticket
}

func newDrawCheck() *drawCheck {
	return &drawCheck{prequeue: map[string][]string{}, drawn: map[string]*draw{}}
}

func (c *drawCheck) add(r revguard.RoomRecord) {
	switch r.Type {
	case revguard.RoomJoined:
		if r.Ticket == 0 {
			c.prequeue[r.SKU] = append(c.prequeue[r.SKU], r.CustomerID)
		}
	case revguard.RoomDrawn:
		c.drawn[r.SKU] = &draw{seed: r.Seed, size: r.Ticket}
		c.skus = append(c.skus, r.SKU)
	case revguard.RoomPlaced:
		if d := c.drawn[r.SKU]; d != nil && r.Ticket == int64(len(d.order))+1 {
			d.order = append(d.order, r.CustomerID)
		} else if d != nil {
			d.order = append(d.order, "\x00out of order")
		}
	}
}

// report writes one line per draw to w and fails if a draw cannot be reproduced.
func (c *drawCheck) report(w io.Writer) error {
	var bad []string
	for _, sku := range c.skus {
		d := c.drawn[sku]
		want := revguard.DrawOrder(d.seed, c.prequeue[sku])
		ok := len(d.seed) == revguard.DrawSeedLen && int64(len(d.order)) == d.size && slices.Equal(want, d.order)
		verdict := "reproduced from the seed and the join order"
		if !ok {
			verdict = "DOES NOT MATCH the seed and the join order"
			bad = append(bad, sku)
		}
		fmt.Fprintf(w, "draw of %s: %d customers, seed %x: %s\n", sku, d.size, d.seed, verdict)
	}
	if len(bad) > 0 {
		return fmt.Errorf("the draws of %v do not match their seeds", bad)
	}
	return nil
}

// exportRooms writes the room log (of o.sku, or every SKU) in o's format and checks
// every draw in it.
func (c *ExportCommand) exportRooms(ctx context.Context, o exportOptions, out io.Writer) error {
	read, done, err := openRoomLogs(ctx, o)
	if err != nil {
		return err
	}
	defer done()
	check := newDrawCheck()
	n := 0
	var write func(revguard.RoomRecord) error
	var flush func() error
	if o.format == "jsonl" {
		enc := json.NewEncoder(out)
		write = func(r revguard.RoomRecord) error { return enc.Encode(roomLineOf(r)) }
		flush = func() error { return nil }
	} else {
		cw := csv.NewWriter(out)
		if err := cw.Write(roomColumns); err != nil {
			return err
		}
		write = func(r revguard.RoomRecord) error { return cw.Write(roomRowOf(r)) }
		flush = func() error { cw.Flush(); return cw.Error() }
	}
	err = read(func(r revguard.RoomRecord) error {
		check.add(r)
		n++
		return write(r)
	})
	if err != nil {
		return err
	}
	if err := flush(); err != nil {
		return err
	}
	if err := check.report(c.Stderr); err != nil {
		return err
	}
	fmt.Fprintf(c.Stderr, "exported %d waiting room records\n", n)
	return nil
}

// openRoomLogs returns a reader of the room logs that o names (of o.sku, or of every
// room): the embedded ledger's room_log, or in distributed mode the PostgreSQL
// ledger's copy of the rooms' Redis streams followed by what is not copied yet.
func openRoomLogs(ctx context.Context, o exportOptions) (read func(fn func(revguard.RoomRecord) error) error, done func(), err error) {
	if !o.stores.distributed() {
		db, err := openLedgerReadOnly(ctx, o.dataDir)
		if err != nil {
			return nil, nil, err
		}
		read = func(fn func(revguard.RoomRecord) error) error {
			return sqlite.NewRoomLog(db).ReadRoomRecords(ctx, o.sku, fn)
		}
		return read, func() { db.Close() }, nil
	}
	redis.SetLogger(slog.New(slog.DiscardHandler)) // the command says what failed, once
	client, err := redis.Dial(ctx, o.stores.redisURL)
	if err != nil {
		return nil, nil, err
	}
	inv := redis.NewInventory(client)
	inv.Namespace = o.stores.namespace
	inv.Logger = slog.New(slog.DiscardHandler)
	inv.ReadOnly = true // no sweeper, nothing stored
	if err := inv.Open(ctx); err != nil {
		client.Close()
		return nil, nil, fmt.Errorf("open the Redis inventory: %w", err)
	}
	db, err := openPostgresLedger(ctx, o.stores)
	if err != nil {
		client.Close()
		return nil, nil, err
	}
	room, ledger := redis.NewWaitingRoom(inv), postgres.NewRoomLog(db)
	// Each room's records from the ledger, then those the nodes have not copied yet
	// from its Redis stream.
	read = func(fn func(revguard.RoomRecord) error) error {
		skus := []string{o.sku}
		if o.sku == "" {
			if skus, err = room.Rooms(ctx); err != nil {
				return err
			}
		}
		for _, sku := range skus {
			var last int64
			emit := func(r revguard.RoomRecord) error {
				last = r.Seq
				return fn(r)
			}
			if err := ledger.ReadRoomRecords(ctx, sku, emit); err != nil {
				return err
			}
			// Then the stream, after the ledger's last. A node may copy records into
			// the ledger and trim them from the stream meanwhile, but always in that
			// order: whatever lies between the last record read and the first the
			// stream still has is in the ledger by then.
			for {
				recs, err := room.ReadRoomRecordsAfter(ctx, sku, last, 1000)
				if err != nil {
					return err
				}
				var before int64
				if len(recs) > 0 {
					before = recs[0].Seq
				}
				if err := ledger.ReadRoomRecordsBetween(ctx, sku, last, before, emit); err != nil {
					return err
				}
				for _, r := range recs {
					if err := emit(r); err != nil {
						return err
					}
				}
				if len(recs) < 1000 {
					break
				}
			}
		}
		return nil
	}
	return read, func() { db.Close(); client.Close() }, nil
}

func roomTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func roomRowOf(r revguard.RoomRecord) []string {
	row := []string{strconv.FormatInt(r.Seq, 10), spreadsheetText(r.SKU), r.Type.String(), roomTime(r.Time), spreadsheetText(r.CustomerID), "", roomTime(r.Until),
		hex.EncodeToString(r.Seed), "", "", ""}
	if r.Ticket != 0 || r.Type == revguard.RoomJoined || r.Type == revguard.RoomDrawn {
		row[5] = strconv.FormatInt(r.Ticket, 10)
	}
	if r.Type == revguard.RoomPut {
		row[8] = strconv.FormatInt(r.Settings.PreQueueSeconds, 10)
		row[9] = strconv.FormatInt(r.Settings.AdmitPerSecond, 10)
		if r.Settings.AdmissionSeconds > 0 {
			row[10] = strconv.FormatInt(r.Settings.AdmissionSeconds, 10)
		}
	}
	return row
}

func roomLineOf(r revguard.RoomRecord) roomLine {
	l := roomLine{Seq: r.Seq, SKU: r.SKU, Type: r.Type.String(), Time: roomTime(r.Time)}
	if r.CustomerID != "" {
		l.CustomerID = &r.CustomerID
	}
	if r.Ticket != 0 || r.Type == revguard.RoomJoined || r.Type == revguard.RoomDrawn {
		l.Ticket = &r.Ticket
	}
	if !r.Until.IsZero() {
		u := roomTime(r.Until)
		l.Until = &u
	}
	if r.Seed != nil {
		s := hex.EncodeToString(r.Seed)
		l.Seed = &s
	}
	if r.Type == revguard.RoomPut {
		s := r.Settings
		l.PreQueueSeconds, l.AdmitPerSecond = &s.PreQueueSeconds, &s.AdmitPerSecond
		if s.AdmissionSeconds > 0 {
			l.AdmissionSeconds = &s.AdmissionSeconds
		}
	}
	return l
}
