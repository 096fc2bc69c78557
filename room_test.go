package revguard_test

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"testing"

	"github.com/revenueguard/revguard"
)

func customers(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("c-%d", i)
	}
	return out
}

// testSeed is the i-th seed of the statistical tests: fixed, so that they never flake,
// and unrelated to one another (SHA-256 of the counter).
func testSeed(i int) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(i))
	s := sha256.Sum256(b[:])
	return s[:]
}

func TestDrawOrder_Reproducible(t *testing.T) {
	joined := customers(100)
	seed := testSeed(1)
	a := revguard.DrawOrder(seed, joined)
	b := revguard.DrawOrder(seed, joined)
	if !slices.Equal(a, b) {
		t.Fatal("the same seed and join order gave two orders")
	}
	if slices.Equal(a, joined) {
		t.Fatal("the draw left 100 customers in join order")
	}
	sorted := slices.Clone(a)
	slices.Sort(sorted)
	want := slices.Clone(joined)
	slices.Sort(want)
	if !slices.Equal(sorted, want) {
		t.Fatal("the draw is not a permutation of the pre-queue")
	}
	if c := revguard.DrawOrder(testSeed(2), joined); slices.Equal(a, c) {
		t.Fatal("two seeds gave the same order")
	}
	if joined[0] != "c-0" {
		t.Fatal("DrawOrder changed its argument")
	}
	for _, n := range []int{0, 1} {
		if got := revguard.DrawOrder(seed, customers(n)); !slices.Equal(got, customers(n)) {
			t.Fatalf("DrawOrder of %d customers = %v", n, got)
		}
	}
}

// TestDrawOrder_Golden pins the algorithm: an auditor reproducing a recorded draw with
// a later build must get the same order.
func TestDrawOrder_Golden(t *testing.T) {
	got := revguard.DrawOrder(make([]byte, revguard.DrawSeedLen), customers(8))
	want := []string{"c-2", "c-5", "c-0", "c-6", "c-4", "c-3", "c-7", "c-1"}
	if !slices.Equal(got, want) {
		t.Fatalf("DrawOrder(zero seed, c-0..c-7) = %q, want %q", got, want)
	}
}

// chiSquare is Pearson's statistic of counts against a uniform expectation.
func chiSquare(counts []int, total int) float64 {
	exp := float64(total) / float64(len(counts))
	var x float64
	for _, c := range counts {
		d := float64(c) - exp
		x += d * d / exp
	}
	return x
}

// Critical values of the chi-square distribution at p = 0.001.
const (
	chi2df9  = 27.877 // 9 degrees of freedom (first position among 10)
	chi2df23 = 49.728 // 23 degrees of freedom (permutations of 4)
)

// firstPositions counts, over draws draws of 10 customers, who comes first.
func firstPositions(draws int, shuffle func(seed []byte, joined []string) []string) []int {
	joined := customers(10)
	counts := make([]int, 10)
	for i := range draws {
		first := shuffle(testSeed(i), joined)[0]
		counts[slices.Index(joined, first)]++
	}
	return counts
}

// TestDrawOrder_FirstPositionUniform is the chi-square test of the draw: over 20,000
// draws of 10 customers, each joiner comes first equally often (p = 0.001). The same
// test refuses a draw that favours the early joiners only slightly.
func TestDrawOrder_FirstPositionUniform(t *testing.T) {
	const draws = 20_000
	counts := firstPositions(draws, revguard.DrawOrder)
	if x := chiSquare(counts, draws); x > chi2df9 {
		t.Fatalf("first positions %v: chi-square %.1f > %.1f, the draw is biased", counts, x, chi2df9)
	} else {
		t.Logf("first positions %v: chi-square %.2f (critical %.2f)", counts, x, chi2df9)
	}

	// A biased draw: one time in 20, the first joiner is put first.
	biased := func(seed []byte, joined []string) []string {
		out := revguard.DrawOrder(seed, joined)
		if seed[0] < 13 {
			i := slices.Index(out, joined[0])
			out[0], out[i] = out[i], out[0]
		}
		return out
	}
	counts = firstPositions(draws, biased)
	if x := chiSquare(counts, draws); x <= chi2df9 {
		t.Fatalf("biased first positions %v: chi-square %.1f <= %.1f, the test cannot see the bias", counts, x, chi2df9)
	}
}

// TestDrawOrder_PermutationsUniform checks every permutation of 4 customers equally
// likely, and that the test refuses the classic naive shuffle (swap each with any).
func TestDrawOrder_PermutationsUniform(t *testing.T) {
	const draws = 24_000
	joined := customers(4)
	count := func(shuffle func(seed []byte, joined []string) []string) []int {
		idx := map[string]int{}
		counts := make([]int, 24)
		for i := range draws {
			key := fmt.Sprint(shuffle(testSeed(i), joined))
			if _, ok := idx[key]; !ok {
				idx[key] = len(idx)
			}
			counts[idx[key]]++
		}
		return counts
	}
	if x := chiSquare(count(revguard.DrawOrder), draws); x > chi2df23 {
		t.Fatalf("permutations: chi-square %.1f > %.1f, the draw is biased", x, chi2df23)
	}
	naive := func(seed []byte, joined []string) []string {
		r := mrand.New(mrand.NewChaCha8([32]byte(seed)))
		out := slices.Clone(joined)
		for i := range out {
			j := r.IntN(len(out))
			out[i], out[j] = out[j], out[i]
		}
		return out
	}
	if x := chiSquare(count(naive), draws); x <= chi2df23 {
		t.Fatalf("naive shuffle: chi-square %.1f <= %.1f, the test cannot see its bias", x, chi2df23)
	}
}

func TestRoomSettings_Validate(t *testing.T) {
	tests := []struct {
		s    revguard.RoomSettings
		want bool
	}{
		{revguard.RoomSettings{AdmitPerSecond: 1}, true},
		{revguard.RoomSettings{PreQueueSeconds: revguard.MaxPreQueueSeconds, AdmitPerSecond: revguard.MaxAdmitPerSecond, AdmissionSeconds: 60}, true},
		{revguard.RoomSettings{AdmitPerSecond: 0}, false},
		{revguard.RoomSettings{AdmitPerSecond: revguard.MaxAdmitPerSecond + 1}, false},
		{revguard.RoomSettings{AdmitPerSecond: 1, PreQueueSeconds: -1}, false},
		{revguard.RoomSettings{AdmitPerSecond: 1, PreQueueSeconds: revguard.MaxPreQueueSeconds + 1}, false},
		{revguard.RoomSettings{AdmitPerSecond: 1, AdmissionSeconds: -1}, false},
		{revguard.RoomSettings{AdmitPerSecond: 1, AdmissionSeconds: revguard.MaxAdmissionSeconds + 1}, false},
	}
	for _, tt := range tests {
		err := tt.s.Validate()
		if (err == nil) != tt.want || (err != nil && revguard.ErrorCode(err) != revguard.CodeInvalidRequest) {
			t.Errorf("Validate(%+v) = %v, want ok %v", tt.s, err, tt.want)
		}
	}
}
