package main

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
)

// histogram is a Prometheus histogram summed over the series a measurement reads:
// cumulative counts per upper bound, in the order /metrics lists them.
type histogram struct {
	bounds []float64
	counts []float64
	sum    float64
	count  float64
}

var histLine = regexp.MustCompile(`(?m)^([a-z_]+)_(bucket|sum|count)(?:\{(.*)\})? ([0-9.e+-]+|NaN)$`) // label values may hold braces: {sku}
var leLabel = regexp.MustCompile(`(?:^|,)le="([^"]+)"`)

// parseHistogram sums the series of the histogram name in a /metrics text whose labels
// contain every one of labels (such as `status="201"`).
func parseHistogram(text []byte, name string, labels ...string) (histogram, error) {
	var h histogram
	index := map[float64]int{}
	for _, m := range histLine.FindAllSubmatch(text, -1) {
		if string(m[1]) != name {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && bytes.Contains(m[3], []byte(l))
		}
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(string(m[4]), 64)
		if err != nil {
			return h, fmt.Errorf("%s: %q: %w", name, m[0], err)
		}
		switch string(m[2]) {
		case "sum":
			h.sum += v
		case "count":
			h.count += v
		case "bucket":
			le := leLabel.FindSubmatch(m[3])
			if le == nil {
				return h, fmt.Errorf("%s: bucket without le: %q", name, m[0])
			}
			bound, err := strconv.ParseFloat(string(le[1]), 64) // "+Inf" parses as +Inf
			if err != nil {
				return h, fmt.Errorf("%s: %q: %w", name, m[0], err)
			}
			i, seen := index[bound]
			if !seen {
				i = len(h.bounds)
				index[bound] = i
				h.bounds = append(h.bounds, bound)
				h.counts = append(h.counts, 0)
			}
			h.counts[i] += v
		}
	}
	return h, nil
}

// minus returns the observations of h made since old, a reading of the same series.
func (h histogram) minus(old histogram) histogram {
	d := histogram{bounds: h.bounds, counts: make([]float64, len(h.counts)), sum: h.sum - old.sum, count: h.count - old.count}
	for i := range h.counts {
		d.counts[i] = h.counts[i]
		if i < len(old.counts) {
			d.counts[i] -= old.counts[i]
		}
	}
	return d
}

// quantile returns the upper bound of the bucket that holds the q-quantile, and false
// when h has no observation or the quantile is past the last finite bound.
func (h histogram) quantile(q float64) (float64, bool) {
	if h.count <= 0 {
		return 0, false
	}
	for i, c := range h.counts {
		if c >= q*h.count {
			return h.bounds[i], h.bounds[i] < 1e300
		}
	}
	return 0, false
}

// serverStats is what the servers' own metrics say about one measurement: the latency
// of the measured route's answers from the server's side (wrk's adds its own queueing
// on the shared cores), and the journal's fsyncs.
type serverStats struct {
	latency histogram // revguard_http_request_duration_seconds of the answers wanted
	fsync   histogram // revguard_journal_fsync_seconds
}

// scrapeStats reads base's histograms for answers of status to route.
func scrapeStats(ctx context.Context, base, route string, status int) (serverStats, error) {
	b, err := fetchMetrics(ctx, base)
	if err != nil {
		return serverStats{}, err
	}
	var st serverStats
	st.latency, err = parseHistogram(b, "revguard_http_request_duration_seconds",
		`route="`+route+`"`, `status="`+strconv.Itoa(status)+`"`)
	if err != nil {
		return st, err
	}
	st.fsync, err = parseHistogram(b, "revguard_journal_fsync_seconds")
	return st, err
}

// fetchMetrics returns the text of base's /metrics.
func fetchMetrics(ctx context.Context, base string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s/metrics: %w", base, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s/metrics: status %d, %v", base, resp.StatusCode, err)
	}
	return b, nil
}

// statsText formats a measurement's server-side p99 (the bucket bound it is under) and
// mean fsync time, "—" for what the server did not show.
func statsText(d serverStats) (p99, fsync string) {
	p99, fsync = "—", "—"
	if q, ok := d.latency.quantile(0.99); ok {
		p99 = "≤" + strconv.FormatFloat(q*1e3, 'g', 3, 64)
	}
	if d.fsync.count > 0 {
		fsync = strconv.FormatFloat(d.fsync.sum/d.fsync.count*1e3, 'f', 2, 64)
	}
	return p99, fsync
}

// medianStats returns the server figures of the round whose server-side p99 is the
// median (the lower of the two middle ones), so that statsText prints one round's
// p99 and fsync time; the zero value when no round has them.
func medianStats(rs []result) serverStats {
	var with []serverStats
	for _, r := range rs {
		if _, ok := r.server.latency.quantile(0.99); ok {
			with = append(with, r.server)
		}
	}
	if len(with) == 0 {
		return serverStats{}
	}
	slices.SortStableFunc(with, func(a, b serverStats) int {
		qa, _ := a.latency.quantile(0.99)
		qb, _ := b.latency.quantile(0.99)
		return cmp.Compare(qa, qb)
	})
	return with[(len(with)-1)/2]
}
