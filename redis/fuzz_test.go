package redis_test

import (
	"strings"
	"testing"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/redis"
)

// FuzzDecodeEvent feeds DecodeEvent outbox entries as the scripts write them, with
// fields given as "name=value" lines: it must never panic, and what it accepts must
// be a well-formed event.
func FuzzDecodeEvent(f *testing.F) {
	for _, seed := range []string{
		// A SKU put.
		"seq=4352\ntype=1\ntime=1795773600000000000\nsku=s-1\nstock=10\nlimit=2\nhold=60\nopens=0000000000000000000",
		// A reservation created with a key, then one confirmed after a revive.
		"seq=513\ntype=2\ntime=1795773600000000000\nsku=s-1\nid=01KBXNS0000000000000000G\ncust=c1\nqty=2\n" +
			"created=1795773600000000000\nexpires=1795773660000000000\nidem=k-1\nref=\nrevived=0",
		"seq=1025\ntype=3\ntime=1795773700000000000\nsku=s-1\nid=01KBXNS0000000000000000G\ncust=c1\nqty=2\n" +
			"created=1795773600000000000\nexpires=1795773660000000000\nidem=\nref=o-1\nrevived=1",
		// Broken: no seq, a type out of range, a short time, a revived release.
		"type=1\ntime=1795773600000000000\nsku=s", "seq=1\ntype=9\ntime=1795773600000000000\nsku=s",
		"seq=1\ntype=1\ntime=179577360\nsku=s\nstock=1\nlimit=1\nhold=1\nopens=0",
		"seq=1\ntype=4\ntime=1795773600000000000\nsku=s\nid=01KBXNS0000000000000000G\ncust=c\nqty=1\n" +
			"created=1795773600000000000\nexpires=1795773660000000000\nidem=\nref=\nrevived=1",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, entry string) {
		fields := make(map[string]any)
		for _, line := range strings.Split(entry, "\n") {
			if k, v, ok := strings.Cut(line, "="); ok {
				fields[k] = v
			}
		}
		e, err := redis.DecodeEvent(fields)
		if err != nil {
			return
		}
		if e.Seq == 0 || e.Time.IsZero() || !revguard.ValidSKUID(e.SKU) || e.Type.String() == "unknown" {
			t.Fatalf("accepted a malformed event %+v from %q", e, entry)
		}
		if e.Type != revguard.EventSKUPut {
			if _, ok := redis.ParseID(e.ReservationID, redis.MaxShards); !ok || e.Quantity < 1 || e.CreatedAt.IsZero() || e.ExpiresAt.IsZero() {
				t.Fatalf("accepted a malformed reservation event %+v from %q", e, entry)
			}
		}
	})
}

// FuzzParseID checks that ParseID never panics, accepts only canonical 24-character
// ids, and reports a shard in range.
func FuzzParseID(f *testing.F) {
	for _, seed := range []string{"01KBXNS0000000000000000G", "01KBXNS0F00000000000000G", "", "nope",
		"../../etc/passwd", "01kbxns0000000000000000g", "ZZZZZZZZZZZZZZZZZZZZZZZZ", "01KBXNS00U000000000000G0"} {
		f.Add(seed, 16)
	}
	f.Fuzz(func(t *testing.T, id string, shards int) {
		shard, ok := redis.ParseID(id, shards)
		if !ok {
			return
		}
		if len(id) != redis.IDLen || shard < 0 || shard >= shards || strings.ToUpper(id) != id {
			t.Fatalf("ParseID(%q, %d) = %d, true", id, shards, shard)
		}
		for _, c := range id {
			if !strings.ContainsRune("0123456789ABCDEFGHJKMNPQRSTVWXYZ", c) {
				t.Fatalf("ParseID(%q) accepted %q", id, c)
			}
		}
	})
}
