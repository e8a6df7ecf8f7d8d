package skew

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestHLL checks the estimate's error against its standard error (6.5 %)
// and that a merge equals the sketch of the union, register by register.
func TestHLL(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 1))
	for _, n := range []int{10, 100, 1000, 10000, 100000} {
		var h HLL
		for i := 0; i < n; i++ {
			h.add(mix64(rnd.Uint64()))
		}
		if got := h.Count(); math.Abs(got-float64(n)) > 4*0.065*float64(n)+2 {
			t.Errorf("HLL of %d distinct hashes estimates %.0f", n, got)
		}
	}
	var a, b, union HLL
	for i := 0; i < 5000; i++ {
		x := mix64(uint64(i))
		union.add(x)
		if i%3 == 0 {
			a.add(x)
		} else {
			b.add(x)
		}
		if i%7 == 0 { // in both
			a.add(x)
			b.add(x)
		}
	}
	a.Merge(&b)
	if a != union {
		t.Error("merged HyperLogLog differs from the sketch of the union")
	}
	var empty HLL
	if !empty.empty() || empty.Count() != 0 {
		t.Errorf("empty sketch counts %.1f", empty.Count())
	}
}

// TestCountMinConservative checks that estimates never undercount and that
// conservative update keeps a colliding heavy key from inflating a light
// one beyond what plain Count-Min would.
func TestCountMinConservative(t *testing.T) {
	c := newCountMin(64, 7)
	truth := map[uint64]int{}
	rnd := rand.New(rand.NewPCG(2, 2))
	for i := 0; i < 2000; i++ {
		k := uint64(rnd.IntN(300))
		ix := c.cells(k)
		c.update(&ix)
		truth[k]++
	}
	over := 0
	for k, n := range truth {
		ix := c.cells(k)
		got := int(c.query(&ix))
		if got < n {
			t.Fatalf("key %d counted %d times, estimated %d: Count-Min never undercounts", k, n, got)
		}
		over += got - n
	}
	// With 300 keys in 64 cells per row plain Count-Min overcounts each key
	// by about 2000/64 ≈ 31; conservative update by far less.
	if avg := float64(over) / float64(len(truth)); avg > 15 {
		t.Errorf("average overcount %.1f, want conservative update to stay well below plain Count-Min's ~31", avg)
	}
}

// TestDoorkeeperHorizon checks that a sighting is remembered for the
// horizon's periods and forgotten after.
func TestDoorkeeperHorizon(t *testing.T) {
	d := newDoorkeeper(1024, 3)
	if d.sight(42) {
		t.Fatal("a key never seen is reported seen")
	}
	if !d.sight(42) {
		t.Fatal("a key sighted once is not reported seen the second time")
	}
	d2 := newDoorkeeper(1024, 3)
	d2.sight(7)
	d2.advance(0, doorPeriod*(doorSketches-1)) // still within the horizon
	if !d2.sight(7) {
		t.Error("a sighting three periods ago is forgotten")
	}
	d3 := newDoorkeeper(1024, 3)
	d3.sight(7)
	d3.advance(0, doorPeriod*doorSketches)
	if d3.sight(7) {
		t.Error("a sighting older than the horizon is still remembered")
	}
}

// TestTopKSpaceSaving checks Space-Saving's guarantees on a skewed stream:
// every key whose weight exceeds total/k is held, and each held count
// overestimates the truth by at most its recorded error.
func TestTopKSpaceSaving(t *testing.T) {
	const k = 50
	top := newTopK(k)
	truth := map[uint64]float64{}
	rnd := rand.New(rand.NewPCG(4, 4))
	var total float64
	for i := 0; i < 50000; i++ {
		key := uint64(math.Floor(math.Exp(rnd.Float64() * math.Log(5000)))) // log-uniform: heavy head
		w := float64(1 + rnd.IntN(30))
		truth[key] += w
		total += w
		if j := top.find(key); j >= 0 {
			top.add(j, w)
		} else {
			top.admit(key, 0, w)
		}
		if i%997 == 0 {
			checkHeap(t, &top)
		}
	}
	for key, n := range truth {
		j := top.find(key)
		if n > total/k && j < 0 {
			t.Errorf("key %d with weight %.0f > total/k = %.0f is not held", key, n, total/k)
		}
		if j >= 0 {
			e := top.e[j]
			if e.count < n-1e-9 || e.count-e.err > n+1e-9 {
				t.Errorf("key %d: count %.0f error %.0f, true %.0f", key, e.count, e.err, n)
			}
		}
	}
	top.resize(10)
	if len(top.e) != 10 || len(top.pos) != 10 {
		t.Errorf("after resize to 10: %d entries, %d indexed", len(top.e), len(top.pos))
	}
	checkHeap(t, &top)
}

func checkHeap(t *testing.T, top *topK) {
	t.Helper()
	for i := range top.e {
		if p := (i - 1) / 2; i > 0 && top.e[p].count > top.e[i].count {
			t.Fatalf("heap order broken at %d", i)
		}
		if int(top.pos[top.e[i].key]) != i {
			t.Fatalf("index of key %d is %d, entry is at %d", top.e[i].key, top.pos[top.e[i].key], i)
		}
	}
}

// TestRing checks the hand-off: order within a ring, capacity, and that a
// full ring refuses instead of blocking.
func TestRing(t *testing.T) {
	q := newRing()
	for i := 0; i < ringSize; i++ {
		if !q.push(&rec{at: int64(i)}) {
			t.Fatalf("push %d refused before the ring is full", i)
		}
	}
	if q.push(&rec{at: -1}) {
		t.Fatal("a full ring accepted a record")
	}
	var r rec
	for i := 0; i < ringSize; i++ {
		if !q.pop(&r) || r.at != int64(i) {
			t.Fatalf("pop %d: got %d", i, r.at)
		}
	}
	if q.pop(&r) {
		t.Fatal("an empty ring gave a record")
	}
	if !q.push(&rec{at: 7}) || !q.pop(&r) || r.at != 7 {
		t.Fatal("the ring does not wrap around")
	}
}
