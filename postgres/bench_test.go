package postgres_test

import (
	"fmt"
	"hash/crc32"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/postgres"
)

// eventGen makes batches of a realistic event mix: half of each batch creates holds,
// the other half ends those of the previous batch (60% confirmed, 20% released, 20%
// expired), on 100 SKUs and customers spread over the customer index. With outbox set,
// the events are the Redis outbox's: seqs shardSeq<<8 | shard, and every reservation
// event carries CreatedAt and ExpiresAt; otherwise the embedded journal's.
type eventGen struct {
	outbox bool
	seq    uint64
	n      int
	t      time.Time
}

func (g *eventGen) next(ev revguard.Event) revguard.Event {
	g.seq++
	ev.Seq, ev.Time = g.seq, g.t.Add(time.Duration(g.seq)*time.Microsecond)
	if g.outbox {
		ev.Seq = g.seq<<8 | uint64(crc32.ChecksumIEEE([]byte(ev.SKU))%16)
		ev.ExpiresAt = g.t.Add(10 * time.Minute)
		ev.CreatedAt = g.t // the generator does not keep each hold's creation time
	}
	return ev
}

func (g *eventGen) batch(dst []revguard.Event, size int) []revguard.Event {
	dst = dst[:0]
	half := size / 2
	prev := g.n - half // the first hold of the previous batch, less one
	reserve := func(n int) revguard.Event {
		return g.next(revguard.Event{Type: revguard.EventReserved, SKU: fmt.Sprintf("sku-%d", n%100),
			ReservationID: benchID(n), CustomerID: fmt.Sprintf("cust-%d", n*7919%1000003), Quantity: 1,
			ExpiresAt: g.t.Add(10 * time.Minute), IdempotencyKey: "k"})
	}
	for range half {
		g.n++
		dst = append(dst, reserve(g.n))
	}
	for i := range size - half {
		n := prev + 1 + i
		if n < 1 { // the first batch: nothing to end yet, more holds instead
			g.n++
			dst = append(dst, reserve(g.n))
			continue
		}
		ev := revguard.Event{SKU: fmt.Sprintf("sku-%d", n%100), ReservationID: benchID(n),
			CustomerID: fmt.Sprintf("cust-%d", n*7919%1000003), Quantity: 1}
		switch n % 5 {
		case 0, 1, 2:
			ev.Type, ev.OrderRef = revguard.EventConfirmed, "order"
		case 3:
			ev.Type = revguard.EventReleased
		default:
			ev.Type = revguard.EventExpired
		}
		dst = append(dst, g.next(ev))
	}
	return dst
}

// benchID returns the n-th reservation id: fixed width, so that ids sort in creation
// order as the real ones do.
func benchID(n int) string { return fmt.Sprintf("01BENCH%019d", n) }

// BenchmarkApplyEvents measures the ledger's apply throughput, one transaction per
// batch, committed with the server's synchronous_commit (durable on return). Compare it
// with BenchmarkCopy in the same run: the machine and the server are shared.
func BenchmarkApplyEvents(b *testing.B) {
	for _, style := range []string{"outbox", "journal"} {
		for _, size := range []int{256, 1024, 8192} {
			b.Run(fmt.Sprintf("events=%s/batch=%d", style, size), func(b *testing.B) {
				l := postgres.NewLedger(MustOpenDB(b))
				g := eventGen{outbox: style == "outbox", t: time.Now()}
				buf := make([]revguard.Event, 0, size)
				b.ReportAllocs()
				for b.Loop() {
					buf = g.batch(buf, size)
					if err := l.ApplyEvents(b.Context(), buf); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "events/s")
			})
		}
	}
}

// BenchmarkCopy is the yardstick of ApplyEvents: plain COPY of new reservation rows,
// 8,192 per transaction, into a table of the same columns, without indexes ("plain"),
// and with the ledger's primary key and two indexes ("indexed"). It is the fastest way
// into PostgreSQL, and does less than ApplyEvents: no update of earlier rows, no check
// of seqs.
func BenchmarkCopy(b *testing.B) {
	for _, indexed := range []bool{false, true} {
		name := "plain"
		if indexed {
			name = "indexed"
		}
		b.Run(name, func(b *testing.B) {
			schema := MustCreateSchema(b)
			MustOpenDBIn(b, schema) // creates the schema
			conn := MustConnect(b, schema)
			ddl := `CREATE TABLE t (LIKE reservations)`
			if indexed {
				ddl = `CREATE TABLE t (LIKE reservations INCLUDING ALL)`
			}
			if _, err := conn.Exec(b.Context(), ddl); err != nil {
				b.Fatal(err)
			}
			const rows = 8192
			cols := []string{"id", "sku", "customer_id", "quantity", "status", "created_at", "expires_at",
				"confirmed_at", "released_at", "order_ref", "seq"}
			t0 := time.Now().UnixNano()
			n := 0
			buf := make([][]any, rows)
			for b.Loop() {
				for i := range buf {
					n++
					buf[i] = []any{benchID(n), fmt.Sprintf("sku-%d", n%100), fmt.Sprintf("cust-%d", n*7919%1000003),
						int64(1), "held", t0 + int64(n), t0 + int64(n), nil, nil, nil, int64(n)}
				}
				tx, err := conn.Begin(b.Context())
				if err != nil {
					b.Fatal(err)
				}
				if _, err := tx.CopyFrom(b.Context(), pgx.Identifier{"t"}, cols, pgx.CopyFromRows(buf)); err != nil {
					b.Fatal(err)
				}
				if err := tx.Commit(b.Context()); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*rows)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
