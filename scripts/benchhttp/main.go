// Command benchhttp measures the durable reserve over HTTP against a bare net/http
// handler, in one run, on one machine (make bench-http).
//
// It starts the release binary (`revguard serve`: bot check and rate limits off, a
// fresh data directory, fsync on), a bare handler in a process of its own (it decodes
// {"quantity":1} and writes a small JSON 201), and drives both with the same load
// generator: wrk when it is installed, else a built-in keep-alive HTTP/1.1 generator.
// The variants run interleaved, round after round, so that the machine's drift hits
// all of them alike, and the report gives each one's median rate and latency and its
// ratio to the bare handler of the same round:
//
//   - bare: the yardstick;
//
//   - barefast (only when named in -variants): the same handler on fasthttp instead of
//     net/http, which shows what the HTTP server core costs;
//
//   - floor: the bare handler with the engine behind it, each 201 a real hold made
//     durable by the journal (fsync on) before the answer, written with the API's own
//     encoder, and nothing else of the gateway: about the most a gateway on net/http
//     can do per hold here (floor.go); floorfast (only when named in -variants) is the
//     same on fasthttp;
//
//   - reserve: POST /v1/skus/hot/reservations, 201, stock to spare (every 201 waits for
//     its fsync);
//
//   - soldout: the same request on a sold-out SKU, refused 409 on the fast path;
//
//   - botcheck (-botcheck): reserve with the bot check on, against a fake siteverify on
//     loopback that passes every token (Cloudflare's always-pass test secret);
//
//   - dist1, dist3 and lua, with a Redis and a PostgreSQL (-redis-url, -postgres-url):
//     the distributed mode through one node and through three, against the bare Lua
//     script (dist.go).
//
//     go run ./scripts/benchhttp -bin bin/revguard -conns 64,256 -duration 10s -rounds 3
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/revenueguard/revguard/turnstile/turnstiletest"
)

func main() {
	if len(os.Args) == 3 && (os.Args[1] == "-bare-serve" || os.Args[1] == "-bare-fast-serve") {
		serveYardstick(os.Args[2], os.Args[1] == "-bare-fast-serve", benchHold)
		return
	}
	if len(os.Args) == 4 && (os.Args[1] == "-floor-serve" || os.Args[1] == "-floor-fast-serve") {
		serveFloor(os.Args[2], os.Args[3], os.Args[1] == "-floor-fast-serve")
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "benchhttp:", err)
		os.Exit(1)
	}
}

type options struct {
	bin      string
	conns    []int
	duration time.Duration
	rounds   int
	gen      string
	botcheck bool
	threads  int
	variants []string
	args     []string // extra flags for revguard serve
	keep     bool
	settle   bool
	rate     float64 // requests per second on a fixed schedule (built-in generator); 0: closed loop

	redisURL, postgresURL string // the distributed variants' stores
}

func run(ctx context.Context, args []string, out io.Writer) error {
	var o options
	fs := flag.NewFlagSet("benchhttp", flag.ContinueOnError)
	fs.StringVar(&o.bin, "bin", "bin/revguard", "the revguard binary to measure")
	connsFlag := fs.String("conns", "64,256", "keep-alive connections, a comma-separated list")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "length of one measurement")
	fs.IntVar(&o.rounds, "rounds", 3, "rounds of interleaved measurements")
	fs.StringVar(&o.gen, "gen", "auto", "load generator: wrk, builtin, or auto (wrk when installed)")
	fs.Float64Var(&o.rate, "rate", 0, "requests per second in all, sent on a fixed schedule by the built-in generator, each latency counted from the request's scheduled time (an open loop, as wrk2 measures; the lua variant stays a closed loop); 0: each connection sends its next request once the answer is in (a closed loop, at the server's top speed)")
	fs.BoolVar(&o.botcheck, "botcheck", true, "also measure reserve with the bot check on (fake siteverify on loopback)")
	fs.IntVar(&o.threads, "threads", 2, "wrk threads")
	variantsFlag := fs.String("variants", "bare,floor,reserve,soldout,botcheck", "variants to run (also barefast, floorfast, and dist1, dist3, lua with the distributed stores)")
	serveArgs := fs.String("serve-args", "", "extra flags for revguard serve, space-separated")
	fs.BoolVar(&o.keep, "keep", false, "keep the data directory")
	fs.BoolVar(&o.settle, "settle", true, "before each measurement, wait until every server's ledger and change log have caught up, so that no measurement pays for an earlier one's backlog")
	fs.StringVar(&o.redisURL, "redis-url", os.Getenv("REVGUARD_TEST_REDIS_URL"), "Redis of the distributed variants (env REVGUARD_TEST_REDIS_URL)")
	fs.StringVar(&o.postgresURL, "postgres-url", os.Getenv("REVGUARD_TEST_POSTGRES_URL"), "PostgreSQL of the distributed variants (env REVGUARD_TEST_POSTGRES_URL)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	variantsGiven := false
	fs.Visit(func(f *flag.Flag) { variantsGiven = variantsGiven || f.Name == "variants" })
	for _, c := range strings.Split(*connsFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n < 1 {
			return fmt.Errorf("-conns: %q is not a positive number", c)
		}
		o.conns = append(o.conns, n)
	}
	o.variants = strings.Split(*variantsFlag, ",")
	distributed := o.redisURL != "" && o.postgresURL != ""
	if !variantsGiven && distributed {
		o.variants = append(o.variants, distVariants...)
	}
	if !distributed && slices.ContainsFunc(o.variants, func(v string) bool { return slices.Contains(distVariants, v) }) {
		return fmt.Errorf("-variants %s need -redis-url and -postgres-url", strings.Join(distVariants, ", "))
	}
	if !o.botcheck {
		o.variants = slices.DeleteFunc(o.variants, func(v string) bool { return v == "botcheck" })
	}
	o.args = strings.Fields(*serveArgs)
	if math.IsNaN(o.rate) || o.rate < 0 || o.rate > maxRate {
		return fmt.Errorf("-rate: want up to %d requests a second, or 0 for a closed loop", maxRate)
	}
	switch o.gen {
	case "auto":
		o.gen = "builtin"
		if _, err := exec.LookPath("wrk"); err == nil {
			o.gen = "wrk"
		}
	case "wrk", "builtin":
	default:
		return fmt.Errorf("-gen: want wrk, builtin or auto")
	}
	return bench(ctx, o, out)
}

// target is one variant's endpoint and request.
type target struct {
	name    string
	url     string // base URL
	path    string
	headers map[string]string
	status  int
	spread  []string // base URLs to drive at once instead of url (dist3)
	lua     *fleet   // the bare script loop instead of HTTP (lua)
	route   string   // the revguard route pattern of path, whose server-side latency is read from url's /metrics

	// fresh, when set, is the server that issues a new customer's session before each
	// measurement: one customer's holds of the hot SKU stop at the per-customer limit
	// (1,000,000 at most), which a few rounds at full speed reach.
	fresh string
}

func bench(ctx context.Context, o options, out io.Writer) error {
	dir, err := os.MkdirTemp("", "benchhttp-")
	if err != nil {
		return err
	}
	if !o.keep {
		defer os.RemoveAll(dir)
	}

	self, err := os.Executable()
	if err != nil {
		return err
	}
	// launch starts bin as a server process on a free loopback address, its output in
	// name.log, with the arguments args gives for that address; it returns the base URL.
	launch := func(name, bin string, args func(addr string) []string) (string, error) {
		addr, err := freeAddr()
		if err != nil {
			return "", err
		}
		p, err := startProcess(ctx, filepath.Join(dir, name+".log"), bin, args(addr)...)
		if err != nil {
			return "", err
		}
		stops = append(stops, p.stop)
		serverPIDs["http://"+addr] = p.cmd.Process.Pid
		return "http://" + addr, nil
	}
	defer func() {
		for _, s := range stops {
			s()
		}
	}()
	// startBare starts this program as a yardstick server (mode is its flag).
	startBare := func(mode, name string) (string, error) {
		return launch(name, self, func(addr string) []string { return []string{mode, addr} })
	}
	bareURL, err := startBare("-bare-serve", "bare")
	if err != nil {
		return err
	}
	bases := []string{bareURL}
	var fastURL string
	if slices.Contains(o.variants, "barefast") {
		if fastURL, err = startBare("-bare-fast-serve", "barefast"); err != nil {
			return err
		}
		bases = append(bases, fastURL)
	}
	floorURLs := map[string]string{}
	for _, f := range []struct{ variant, mode string }{{"floor", "-floor-serve"}, {"floorfast", "-floor-fast-serve"}} {
		if !slices.Contains(o.variants, f.variant) {
			continue
		}
		u, err := launch(f.variant, self, func(addr string) []string { return []string{f.mode, addr, filepath.Join(dir, f.variant)} })
		if err != nil {
			return err
		}
		floorURLs[f.variant] = u
		bases = append(bases, u)
	}

	var verifier *turnstiletest.Server
	if slices.Contains(o.variants, "botcheck") {
		verifier = turnstiletest.New()
		if err := verifier.Start(); err != nil {
			return fmt.Errorf("fake siteverify: %w", err)
		}
		defer verifier.Close()
	}

	const admin = "benchhttp-admin-token-0123456789abcdef"
	servers := map[string]string{} // variant group → base URL
	var fleetNodes []string        // base URLs of the distributed nodes, when started
	start := func(name string, extra ...string) error {
		u, err := launch(name, o.bin, func(addr string) []string {
			args := append([]string{"serve", "--addr", addr, "--data-dir", filepath.Join(dir, name),
				"--admin-token", admin, "--rate-limit-customer", "off", "--rate-limit-ip", "off", "--log-level", "warn"}, extra...)
			return append(args, o.args...)
		})
		if err != nil {
			return err
		}
		servers[name] = u
		return nil
	}
	if err := start("api"); err != nil {
		return err
	}
	if verifier != nil {
		if err := start("bot", "--turnstile-secret", turnstiletest.PassSecret, "--turnstile-url", verifier.URL()); err != nil {
			return err
		}
	}
	for _, u := range append(bases, mapValues(servers)...) {
		if err := waitReady(ctx, u); err != nil {
			return err
		}
	}
	tokens := map[string]string{}
	for name, u := range servers {
		if err := setup(ctx, u, admin); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		tok, err := session(ctx, u, admin, "bench")
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		tokens[name] = tok
	}

	const reserveRoute = "POST /v1/skus/{sku}/reservations"
	all := map[string]target{
		"bare":      {name: "bare", url: bareURL, path: "/reserve", status: 201},
		"barefast":  {name: "barefast", url: fastURL, path: "/reserve", status: 201},
		"floor":     {name: "floor", url: floorURLs["floor"], path: "/reserve", status: 201},
		"floorfast": {name: "floorfast", url: floorURLs["floorfast"], path: "/reserve", status: 201},
		"reserve":   {name: "reserve", url: servers["api"], path: "/v1/skus/hot/reservations", status: 201, headers: map[string]string{"Authorization": "Bearer " + tokens["api"]}, fresh: servers["api"], route: reserveRoute},
		"soldout":   {name: "soldout", url: servers["api"], path: "/v1/skus/gone/reservations", status: 409, headers: map[string]string{"Authorization": "Bearer " + tokens["api"]}, route: reserveRoute},
	}
	if verifier != nil {
		all["botcheck"] = target{name: "botcheck", url: servers["bot"], path: "/v1/skus/hot/reservations", status: 201,
			headers: map[string]string{"Authorization": "Bearer " + tokens["bot"], "CF-Turnstile-Response": turnstiletest.DummyToken}, fresh: servers["bot"], route: reserveRoute}
	}
	if slices.ContainsFunc(o.variants, func(v string) bool { return slices.Contains(distVariants, v) }) {
		f, err := startFleet(ctx, o, dir, admin)
		if err != nil {
			return fmt.Errorf("distributed fleet: %w", err)
		}
		defer f.close()
		if err := setup(ctx, f.nodes[0], admin); err != nil {
			return fmt.Errorf("fleet: %w", err)
		}
		tok, err := session(ctx, f.nodes[0], admin, "bench")
		if err != nil {
			return fmt.Errorf("fleet: %w", err)
		}
		hdr := map[string]string{"Authorization": "Bearer " + tok}
		all["dist1"] = target{name: "dist1", url: f.nodes[0], path: "/v1/skus/hot/reservations", status: 201, headers: hdr, fresh: f.nodes[0], route: reserveRoute}
		all["dist3"] = target{name: "dist3", spread: f.nodes, path: "/v1/skus/hot/reservations", status: 201, headers: hdr, fresh: f.nodes[0]}
		all["lua"] = target{name: "lua", lua: f, status: 201}
		fleetNodes = f.nodes
		for i := range f.nodes {
			defer warnErrors(out, dir, fmt.Sprintf("node%d", i+1))
		}
	}
	var targets []target
	for _, v := range o.variants {
		t, ok := all[v]
		if !ok {
			return fmt.Errorf("-variants: unknown variant %q", v)
		}
		targets = append(targets, t)
	}

	gen := o.gen
	if o.rate > 0 {
		gen = fmt.Sprintf("builtin at %.0f requests/s on a fixed schedule (latency from each request's scheduled time)", o.rate)
	}
	fmt.Fprintf(out, "benchhttp: %s, generator %s, %v per measurement, %d rounds, GOMAXPROCS of the machine: %d cores\n",
		o.bin, gen, o.duration, o.rounds, numCPU())
	customers := 0
	for _, conns := range o.conns {
		results := map[string][]result{}
		for round := range o.rounds {
			for _, t := range targets {
				if t.fresh != "" {
					customers++
					tok, err := session(ctx, t.fresh, admin, fmt.Sprintf("bench-%d", customers))
					if err != nil {
						return fmt.Errorf("%s: %w", t.name, err)
					}
					t.headers = maps.Clone(t.headers)
					t.headers["Authorization"] = "Bearer " + tok
				}
				if o.settle {
					if err := waitIdle(ctx, slices.Concat(mapValues(servers), fleetNodes)); err != nil {
						return err
					}
				}
				cpu0, cpuKnown := serverCPU(t)
				var stats0 serverStats
				if t.route != "" {
					if stats0, err = scrapeStats(ctx, t.url, t.route, t.status); err != nil {
						return err
					}
				}
				r, err := measure(ctx, o, t, conns)
				if err != nil {
					return fmt.Errorf("%s, %d connections: %w", t.name, conns, err)
				}
				if cpu1, ok := serverCPU(t); ok && cpuKnown && r.requests > 0 {
					r.cpu = (cpu1 - cpu0) / time.Duration(r.requests)
				}
				if t.route != "" {
					stats1, err := scrapeStats(ctx, t.url, t.route, t.status)
					if err != nil {
						return err
					}
					r.server = serverStats{latency: stats1.latency.minus(stats0.latency), fsync: stats1.fsync.minus(stats0.fsync)}
				}
				r.round = round
				results[t.name] = append(results[t.name], r)
				p99, fsync := statsText(r.server)
				fmt.Fprintf(out, "  round %d  %-9s %4d conns  %9.0f req/s  p50 %7.2f ms  p99 %7.2f ms  server CPU %s  server p99 %s ms  fsync %s ms  errors %d\n",
					round+1, t.name, conns, r.rate, r.p50.Seconds()*1e3, r.p99.Seconds()*1e3, cpuText(r.cpu), p99, fsync, r.errors)
				if bad := r.wrong(t.status); bad > 0 {
					fmt.Fprintf(out, "  WARNING: %d of %d answers of %s were not %d: its rate is not the endpoint's\n", bad, r.requests, t.name, t.status)
				}
			}
		}
		report(out, conns, targets, results)
	}
	for name := range servers {
		warnErrors(out, dir, name)
	}
	for name := range floorURLs {
		warnErrors(out, dir, name)
	}
	return nil
}

// warnErrors prints the last lines of the server name's log if it logged errors.
func warnErrors(out io.Writer, dir, name string) {
	if b, err := os.ReadFile(filepath.Join(dir, name+".log")); err == nil && bytes.Contains(b, []byte("level=ERROR")) {
		fmt.Fprintf(out, "WARNING: the %s server logged errors:\n%s\n", name, lastLines(b, 10))
	}
}

var stops []func()

type result struct {
	round    int
	rate     float64
	p50, p99 time.Duration
	errors   int64         // socket errors and timeouts
	requests int64         // answers received
	non2xx   int64         // answers that were not 2xx (all of the sold-out variant's)
	cpu      time.Duration // CPU time of the serving processes per answer; 0 if unknown
	server   serverStats   // the server's own figures for the measurement (targets with a route)
}

// serverPIDs maps the base URL of each server process the benchmark started to its pid.
var serverPIDs = map[string]int{}

// serverCPU returns the CPU time (user and system) that the processes serving t have
// used so far, from /proc: false where that is not available (not Linux, or the lua
// variant, whose server is Redis).
func serverCPU(t target) (time.Duration, bool) {
	if t.lua != nil {
		return 0, false
	}
	urls := t.spread
	if len(urls) == 0 {
		urls = []string{t.url}
	}
	var total time.Duration
	for _, u := range urls {
		pid, ok := serverPIDs[u]
		if !ok {
			return 0, false
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return 0, false
		}
		// After the command name, in parentheses, field 14 (utime) and 15 (stime) in
		// clock ticks, which are 1/100 s on Linux.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) < 13 {
			return 0, false
		}
		utime, err1 := strconv.ParseInt(f[11], 10, 64)
		stime, err2 := strconv.ParseInt(f[12], 10, 64)
		if err1 != nil || err2 != nil {
			return 0, false
		}
		total += time.Duration(utime+stime) * 10 * time.Millisecond
	}
	return total, true
}

// cpuText formats a CPU time per answer in microseconds, "—" when unknown.
func cpuText(d time.Duration) string {
	if d == 0 {
		return "     —"
	}
	return fmt.Sprintf("%4.1f µs", float64(d)/1e3)
}

// wrong returns how many answers did not have the status want.
func (r result) wrong(want int) int64 {
	if want >= 200 && want < 300 {
		return r.non2xx
	}
	return r.requests - r.non2xx
}

// report prints, per variant, the median rate and latencies and the medians of the
// per-round ratios to the bare handler, to the floor (the bare handler with the engine
// behind it) when it ran, and, with the distributed variants, to the bare Lua script.
func report(out io.Writer, conns int, targets []target, results map[string][]result) {
	_, withLua := results["lua"]
	_, withFloor := results["floor"]
	fmt.Fprintf(out, "\n%d connections (median of %d rounds)\n", conns, len(results[targets[0].name]))
	fmt.Fprintf(out, "  %-9s  %10s  %8s  %8s  %10s  %10s  %8s  %8s", "variant", "req/s", "p50 ms", "p99 ms", "CPU/answer", "srv p99 ms", "fsync ms", "÷ bare")
	if withFloor {
		fmt.Fprintf(out, "  %8s", "÷ floor")
	}
	if withLua {
		fmt.Fprintf(out, "  %8s", "÷ lua")
	}
	fmt.Fprintln(out)
	// ratio is the median of the per-round ratios of rs to base, "—" without base.
	ratio := func(rs, base []result) string {
		var ratios []float64
		for i, r := range rs {
			if i < len(base) && base[i].rate > 0 {
				ratios = append(ratios, r.rate/base[i].rate)
			}
		}
		if len(ratios) == 0 {
			return "       —"
		}
		return fmt.Sprintf("%8.2f", median(ratios))
	}
	for _, t := range targets {
		rs := results[t.name]
		var rates, p50s, p99s, cpus []float64
		for _, r := range rs {
			rates = append(rates, r.rate)
			p50s = append(p50s, r.p50.Seconds()*1e3)
			p99s = append(p99s, r.p99.Seconds()*1e3)
			if r.cpu > 0 {
				cpus = append(cpus, float64(r.cpu))
			}
		}
		srvP99, fsync := statsText(medianStats(rs))
		fmt.Fprintf(out, "  %-9s  %10.0f  %8.2f  %8.2f  %10s  %10s  %8s  %s", t.name, median(rates), median(p50s), median(p99s),
			cpuText(time.Duration(median(cpus))), srvP99, fsync, ratio(rs, results["bare"]))
		if withFloor {
			if t.name == "bare" || t.name == "barefast" {
				fmt.Fprint(out, "         —") // a yardstick without the engine
			} else {
				fmt.Fprintf(out, "  %s", ratio(rs, results["floor"]))
			}
		}
		if withLua {
			fmt.Fprintf(out, "  %s", ratio(rs, results["lua"]))
		}
		fmt.Fprintln(out)
	}
	fmt.Fprintln(out)
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// measure drives t with conns connections for o.duration.
func measure(ctx context.Context, o options, t target, conns int) (result, error) {
	switch {
	case t.lua != nil:
		return measureLua(ctx, o, t.lua, conns)
	case len(t.spread) > 0:
		urls := t.spread
		t.spread = nil
		return measureSpread(ctx, o, t, urls, conns)
	}
	if o.gen == "wrk" && o.rate == 0 {
		return measureWrk(ctx, o, t, conns)
	}
	return measureBuiltin(ctx, o, t, conns)
}

const body = `{"quantity":1}`

// maxRate bounds -rate: far above what one machine answers, and a per-connection
// interval that a time.Duration still holds to the nanosecond.
const maxRate = 10_000_000

// measureWrk runs wrk with a Lua script that sends t's request and counts answers of
// another status as errors.
func measureWrk(ctx context.Context, o options, t target, conns int) (result, error) {
	var lua strings.Builder
	lua.WriteString("wrk.method = \"POST\"\nwrk.body = '" + body + "'\n")
	lua.WriteString("wrk.headers[\"Content-Type\"] = \"application/json\"\n")
	for k, v := range t.headers {
		fmt.Fprintf(&lua, "wrk.headers[%q] = %q\n", k, v)
	}
	fmt.Fprintf(&lua, `local bad = 0
response = function(status, headers, body)
  if status ~= %d then bad = bad + 1 end
end
done = function(summary, latency, requests)
  io.write(string.format("BENCH p50=%%d p99=%%d\n", latency:percentile(50), latency:percentile(99)))
end
`, t.status)
	f, err := os.CreateTemp("", "benchhttp-*.lua")
	if err != nil {
		return result{}, err
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(lua.String()); err != nil {
		return result{}, err
	}
	f.Close()
	threads := min(o.threads, conns)
	cmd := exec.CommandContext(ctx, "wrk", "-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns),
		"-d", strconv.Itoa(int(o.duration.Seconds()))+"s", "--timeout", "10s", "-s", f.Name(), t.url+t.path)
	outb, err := cmd.CombinedOutput()
	if err != nil {
		return result{}, fmt.Errorf("wrk: %v: %s", err, outb)
	}
	return parseWrk(string(outb))
}

var (
	wrkRate   = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkLat    = regexp.MustCompile(`BENCH p50=(\d+) p99=(\d+)`)
	wrkNon2xx = regexp.MustCompile(`Non-2xx or 3xx responses:\s+(\d+)`)
	wrkCount  = regexp.MustCompile(`(\d+) requests in`)
	wrkSock   = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

func parseWrk(s string) (result, error) {
	m := wrkRate.FindStringSubmatch(s)
	l := wrkLat.FindStringSubmatch(s)
	if m == nil || l == nil {
		return result{}, fmt.Errorf("wrk: unexpected output:\n%s", s)
	}
	var r result
	r.rate, _ = strconv.ParseFloat(m[1], 64)
	p50, _ := strconv.ParseInt(l[1], 10, 64)
	p99, _ := strconv.ParseInt(l[2], 10, 64)
	r.p50, r.p99 = time.Duration(p50)*time.Microsecond, time.Duration(p99)*time.Microsecond
	if e := wrkSock.FindStringSubmatch(s); e != nil {
		for _, x := range e[1:] {
			n, _ := strconv.ParseInt(x, 10, 64)
			r.errors += n
		}
	}
	if n := wrkNon2xx.FindStringSubmatch(s); n != nil {
		r.non2xx, _ = strconv.ParseInt(n[1], 10, 64)
	}
	if n := wrkCount.FindStringSubmatch(s); n != nil {
		r.requests, _ = strconv.ParseInt(n[1], 10, 64)
	}
	return r, nil
}

// setup creates the hot SKU (stock to spare, the highest per-customer limit, and a new
// customer for each measurement: see target.fresh) and the sold-out one.
func setup(ctx context.Context, base, admin string) error {
	for path, b := range map[string]string{
		"/v1/skus/hot":  `{"stock":100000000,"per_customer_limit":1000000,"hold_seconds":86400}`,
		"/v1/skus/gone": `{"stock":0}`,
	} {
		if _, err := call(ctx, http.MethodPut, base+path, admin, b, 201); err != nil {
			return err
		}
	}
	return nil
}

func session(ctx context.Context, base, admin, customer string) (string, error) {
	b, err := call(ctx, http.MethodPost, base+"/v1/sessions", admin, `{"customer_id":"`+customer+`","ttl_seconds":86400}`, 201)
	if err != nil {
		return "", err
	}
	var s struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(b, &s); err != nil || s.Token == "" {
		return "", fmt.Errorf("session: unexpected answer %s", b)
	}
	return s.Token, nil
}

func call(ctx context.Context, method, u, token, b string, want int) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, strings.NewReader(b))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		return nil, fmt.Errorf("%s %s: %d %s", method, u, resp.StatusCode, rb)
	}
	return rb, nil
}

func waitReady(ctx context.Context, base string) error {
	return poll(ctx, 30*time.Second, 50*time.Millisecond, func() (bool, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false, nil // not listening yet
		}
		resp.Body.Close()
		return resp.StatusCode == 200, nil
	}, func() error { return fmt.Errorf("%s did not become ready", base) })
}

// poll calls done every interval until it reports true or fails, the context ends, or
// timeout passes (then it returns the error of late).
func poll(ctx context.Context, timeout, interval time.Duration, done func() (bool, error), late func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := done()
		if ok || err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return late()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}

// backlogMetrics are the gauges of work a server does after the hot path: the ledger's
// and the change log's events not yet applied.
var backlogMetrics = regexp.MustCompile(`(?m)^revguard_(?:ledger|changes)_lag_events(?:\{[^}]*\})? ([0-9.e+]+)$`)

// waitIdle waits until every server in bases reports no ledger or change log backlog
// on /metrics. The writers defer their work while a sale peaks, so without this wait a
// measurement would run while the previous one's backlog is being applied, and pay for it.
func waitIdle(ctx context.Context, bases []string) error {
	deadline := time.Now().Add(5 * time.Minute)
	for _, base := range bases {
		var backlog float64
		err := poll(ctx, time.Until(deadline), 100*time.Millisecond, func() (bool, error) {
			var err error
			backlog, err = backlogOf(ctx, base)
			return backlog == 0, err
		}, func() error {
			return fmt.Errorf("%s still has a backlog of %.0f events after 5 minutes", base, backlog)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// backlogOf sums the backlog gauges that base's /metrics shows.
func backlogOf(ctx context.Context, base string) (float64, error) {
	b, err := fetchMetrics(ctx, base)
	if err != nil {
		return 0, err
	}
	matches := backlogMetrics.FindAllSubmatch(b, -1)
	if len(matches) == 0 {
		return 0, fmt.Errorf("%s/metrics shows no revguard_ledger_lag_events: cannot tell when it is idle (-settle=false to measure anyway)", base)
	}
	var sum float64
	for _, m := range matches {
		v, err := strconv.ParseFloat(string(m[1]), 64)
		if err != nil {
			return 0, fmt.Errorf("%s/metrics: %q: %w", base, m[0], err)
		}
		sum += v
	}
	return sum, nil
}

// process is a child process whose output goes to a log file.
type process struct {
	cmd *exec.Cmd
	log *os.File
}

func startProcess(ctx context.Context, logPath, bin string, args ...string) (*process, error) {
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	return &process{cmd: cmd, log: log}, nil
}

func (p *process) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
	p.log.Close()
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func mapValues(m map[string]string) []string {
	var vs []string
	for _, v := range m {
		vs = append(vs, v)
	}
	return vs
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func numCPU() int {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "processor") {
			n++
		}
	}
	return n
}
