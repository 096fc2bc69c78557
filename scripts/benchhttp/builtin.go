package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"
)

// measureBuiltin is the generator used where wrk is not installed, and for -rate:
// conns goroutines, each with one keep-alive connection, sending t's request and
// reading its answer in a loop for o.duration.
//
// With o.rate set, the loop is open: connection i sends its k-th request at the
// scheduled instant began + (k·conns + i) / rate, or as soon as its previous answer is
// in when that is later, and each latency counts from the scheduled instant. A server
// that stalls then shows the stall in the latencies of every request that was due
// meanwhile, as a client population would see it, instead of the closed loop's single
// slow answer (the coordinated omission wrk2 corrects). Requests still due when the
// run ends, behind an answer that had not come, are not counted; the generator's own
// lateness in waking for a scheduled instant (up to about a millisecond when the
// machine idles) is.
func measureBuiltin(ctx context.Context, o options, t target, conns int) (result, error) {
	u, err := url.Parse(t.url)
	if err != nil {
		return result{}, err
	}
	req := "POST " + t.path + " HTTP/1.1\r\nHost: " + u.Host + "\r\nContent-Type: application/json\r\n"
	for k, v := range t.headers {
		req += k + ": " + v + "\r\n"
	}
	req += "Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	raw := []byte(req)

	ctx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	type tally struct {
		lat            []time.Duration
		non2xx, errors int64
	}
	tallies := make([]tally, conns)
	var wg sync.WaitGroup
	began := time.Now()
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tl := &tallies[i]
			c, err := net.Dial("tcp", u.Host)
			if err != nil {
				tl.errors++
				return
			}
			defer c.Close()
			br := bufio.NewReader(c)
			var interval time.Duration
			next := began
			if o.rate > 0 {
				interval = time.Duration(float64(conns) / o.rate * float64(time.Second))
				next = began.Add(interval * time.Duration(i) / time.Duration(conns))
			}
			for ctx.Err() == nil {
				start := time.Now()
				if interval > 0 {
					if wait := time.Until(next); wait > 0 {
						select {
						case <-ctx.Done():
							return
						case <-time.After(wait):
						}
					}
					start, next = next, next.Add(interval)
				}
				if _, err := c.Write(raw); err != nil {
					tl.errors++
					return
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					tl.errors++
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				tl.lat = append(tl.lat, time.Since(start))
				if resp.StatusCode < 200 || resp.StatusCode > 299 {
					tl.non2xx++
				}
			}
		}()
	}
	wg.Wait()
	took := time.Since(began)
	var r result
	var all []time.Duration
	for _, tl := range tallies {
		all = append(all, tl.lat...)
		r.non2xx += tl.non2xx
		r.errors += tl.errors
	}
	return r, r.summarize(all, took)
}

// summarize sets r's count, rate and percentiles from the latencies of the answers
// received in took; it fails when there were none.
func (r *result) summarize(lat []time.Duration, took time.Duration) error {
	if len(lat) == 0 {
		return fmt.Errorf("no answers")
	}
	slices.Sort(lat)
	r.requests = int64(len(lat))
	r.rate = float64(len(lat)) / took.Seconds()
	r.p50, r.p99 = lat[len(lat)/2], lat[len(lat)*99/100]
	return nil
}
