package turnstile_test

import (
	"log/slog"
	"testing"

	"github.com/revenueguard/revguard/turnstile"
	"github.com/revenueguard/revguard/turnstile/turnstiletest"
)

// BenchmarkVerify measures one check of a fresh token against the fake verifier, in
// process (the client's cost: encoding, the fake's handler, decoding the answer) and
// over loopback TCP (plus HTTP/1.1 on a kept-alive connection). Issuing the token is
// part of each iteration. The checks run in parallel (-short: one at a time).
func BenchmarkVerify(b *testing.B) {
	for _, mode := range []string{"InProcess", "Loopback"} {
		b.Run(mode, func(b *testing.B) {
			fake := turnstiletest.New()
			b.Cleanup(fake.Close)
			c := turnstile.NewBotChecker(turnstiletest.DefaultSecret)
			c.Logger = slog.New(slog.DiscardHandler)
			if mode == "InProcess" {
				c.URL, c.Client = "http://fake"+turnstiletest.Path, fake.Client()
			} else {
				if err := fake.Start(); err != nil {
					b.Fatal(err)
				}
				c.URL = fake.URL()
			}
			b.ReportAllocs()
			if testing.Short() {
				for b.Loop() {
					if err := c.Verify(b.Context(), fake.Token(), "203.0.113.7"); err != nil {
						b.Fatal(err)
					}
				}
				return
			}
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := c.Verify(b.Context(), fake.Token(), "203.0.113.7"); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
