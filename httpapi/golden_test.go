package httpapi_test

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// Volatile parts of response bodies, replaced before comparing with a golden file.
var normalizers = []struct {
	re   *regexp.Regexp
	repl string
}{
	{regexp.MustCompile(`"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"`), `"<time>"`},
	{regexp.MustCompile(`"id":"[^"]*"`), `"id":"<id>"`},
	{regexp.MustCompile(`"token":"[^"]*"`), `"token":"<token>"`},
	{regexp.MustCompile(`"request_id":"[^"]*"`), `"request_id":"<request-id>"`},
	{regexp.MustCompile(`"next_cursor":"[^"]*"`), `"next_cursor":"<cursor>"`},
}

// normalize replaces ids, times, tokens and cursors with placeholders.
func normalize(b []byte) []byte {
	for _, n := range normalizers {
		b = n.re.ReplaceAll(b, []byte(n.repl))
	}
	return b
}

// golden compares the normalized body with testdata/name.golden, or rewrites the file
// with -update.
func golden(tb testing.TB, name string, body []byte) {
	tb.Helper()
	path := filepath.Join("testdata", name+".golden")
	got := normalize(body)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			tb.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("%v (run go test ./httpapi -update to create it)", err)
	}
	if string(got) != string(want) {
		tb.Fatalf("body of %s differs from %s:\n got %s\nwant %s", name, path, got, want)
	}
}
