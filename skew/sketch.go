package skew

// The bounded per-node sketches of SKEW.md:
//
//   - HLL: HyperLogLog (Flajolet, Fusy, Gandouet, Meunier 2007) with 2^8
//     registers (standard error 1.04/√256 ≈ 6.5 %), small-range linear
//     counting; merged by register max, so a merge equals the sketch of the
//     union exactly.
//   - countMin: the admission doorkeeper. A Count-Min sketch (Cormode and
//     Muthukrishnan 2005) with conservative update (Estan and Varghese
//     2002): an update raises each of the key's d cells only up to the
//     smallest of them plus one, which keeps collisions from inflating
//     counts. Each cell also keeps the time it was last touched, so the
//     admission rule "seen before, and the last sighting at least 0.5τ ago"
//     is answered from the same d cells: a key passes only when every one
//     of its cells has been quiet for 0.5τ, so a flood of random sources,
//     which keeps touching cells, closes the door instead of opening it.
//   - topK: Space-Saving (Metwally, Agrawal, El Abbadi 2005) over a binary
//     min-heap: a key not held replaces the smallest entry and inherits its
//     count as its error. Counts are occupancy-seconds (the TTL of each
//     answer), decayed at every window rotation so an identity that went
//     quiet an hour ago gives way.

import (
	"math"
	"math/bits"
)

const (
	hllP = 8
	hllM = 1 << hllP
)

// HLL is a HyperLogLog sketch of distinct 64-bit hashes. The zero value is
// empty. Merge takes register maxima, so merging the sketches of several
// nodes gives exactly the sketch of all their input.
type HLL [hllM]uint8

// add notes the hash x (which must be well mixed).
func (h *HLL) add(x uint64) {
	i := x >> (64 - hllP)
	w := x<<hllP | 1<<(hllP-1)
	r := uint8(bits.LeadingZeros64(w) + 1)
	if r > h[i] {
		h[i] = r
	}
}

// Merge folds o into h.
func (h *HLL) Merge(o *HLL) {
	for i, v := range o {
		if v > h[i] {
			h[i] = v
		}
	}
}

// Count estimates how many distinct hashes were added.
func (h *HLL) Count() float64 {
	const m = float64(hllM)
	alpha := 0.7213 / (1 + 1.079/m)
	sum, zeros := 0.0, 0
	for _, v := range h {
		sum += math.Ldexp(1, -int(v))
		if v == 0 {
			zeros++
		}
	}
	e := alpha * m * m / sum
	if e <= 2.5*m && zeros > 0 {
		e = m * math.Log(m/float64(zeros))
	}
	return e
}

// empty reports whether nothing was added.
func (h *HLL) empty() bool {
	for _, v := range h {
		if v != 0 {
			return false
		}
	}
	return true
}

// cmRows is the depth of the doorkeeper sketch.
const cmRows = 4

// countMin is one period's doorkeeper sketch: cmRows rows of w saturating
// 16-bit counts.
type countMin struct {
	mask  uint64
	seed  uint64
	count []uint16
}

func newCountMin(width int, seed uint64) *countMin {
	w := 1
	for w < width {
		w <<= 1
	}
	return &countMin{mask: uint64(w - 1), seed: seed, count: make([]uint16, cmRows*w)}
}

// cells returns the key's cell index in each row (Kirsch–Mitzenmacher
// double hashing from one mixed word).
func (c *countMin) cells(key uint64) [cmRows]uint64 {
	h := mix64(key ^ c.seed)
	a, b := h&0xffffffff, h>>32|1
	w := c.mask + 1
	var ix [cmRows]uint64
	for r := range ix {
		ix[r] = uint64(r)*w + (a+uint64(r)*b)&c.mask
	}
	return ix
}

// query returns the key's estimated count.
func (c *countMin) query(ix *[cmRows]uint64) uint16 {
	n := uint16(math.MaxUint16)
	for _, i := range ix {
		n = min(n, c.count[i])
	}
	return n
}

// update counts one sighting (conservative update: no cell is raised above
// the key's estimate plus one).
func (c *countMin) update(ix *[cmRows]uint64) {
	n := c.query(ix)
	if n < math.MaxUint16 {
		n++
	}
	for _, i := range ix {
		c.count[i] = max(c.count[i], n)
	}
}

// The doorkeeper remembers sightings for doorSketches periods of
// doorPeriod windows each: the current period and three before it, 30 to
// 40 minutes with 5-minute windows, so that a cache clamping the TTL to
// 600 s is seen twice within the horizon even when its queries are spread
// over three name servers.
const (
	doorSketches = 4
	doorPeriod   = 2
)

// doorkeeper counts sightings of identities not held over the last
// doorSketches periods.
type doorkeeper struct {
	s [doorSketches]*countMin // s[0] is the current period
}

func newDoorkeeper(width int, seed uint64) doorkeeper {
	var d doorkeeper
	for i := range d.s {
		d.s[i] = newCountMin(width, seed)
	}
	return d
}

// advance moves from window number from to window number to (later),
// starting a new sketch at each period boundary crossed.
func (d *doorkeeper) advance(from, to int64) {
	n := floorDiv(to, doorPeriod) - floorDiv(from, doorPeriod)
	for i := int64(0); i < min(n, doorSketches); i++ {
		last := d.s[doorSketches-1]
		copy(d.s[1:], d.s[:doorSketches-1])
		d.s[0] = last
		clear(last.count)
	}
}

// sight counts a sighting of key and reports whether the sketches had seen
// it before within the horizon.
func (d *doorkeeper) sight(key uint64) bool {
	ix := d.s[0].cells(key) // all sketches share geometry and seed
	seen := 0
	for _, c := range d.s {
		seen += int(c.query(&ix))
	}
	d.s[0].update(&ix)
	return seen >= 1
}

// horizon is how far back the doorkeeper remembers, in windows.
const doorHorizon = doorSketches * doorPeriod

// topEntry is one identity held by the top-k.
type topEntry struct {
	key   uint64
	count float64 // decayed occupancy-seconds, including err
	err   float64 // the count inherited on admission (Space-Saving's error)
	svc   int32   // service index in the current configuration
	fresh bool    // adopted from peers, nothing logged here yet
}

// topK is a Space-Saving summary of at most k identities, a min-heap on
// count with a key index.
type topK struct {
	k   int
	e   []topEntry
	pos map[uint64]int32
}

func newTopK(k int) topK {
	return topK{k: k, pos: make(map[uint64]int32, k)}
}

// find returns the heap index of key, or -1.
func (t *topK) find(key uint64) int {
	if i, ok := t.pos[key]; ok {
		return int(i)
	}
	return -1
}

// add adds w to entry i's count.
func (t *topK) add(i int, w float64) {
	t.e[i].count += w
	t.down(i)
}

// admit inserts key with weight w, evicting the smallest entry when full;
// it returns the evicted key.
func (t *topK) admit(key uint64, svc int32, w float64) (evicted uint64, ok bool) {
	if len(t.e) < t.k {
		t.e = append(t.e, topEntry{key: key, count: w, svc: svc})
		i := len(t.e) - 1
		t.pos[key] = int32(i)
		t.up(i)
		return 0, false
	}
	old := t.e[0]
	delete(t.pos, old.key)
	t.e[0] = topEntry{key: key, count: old.count + w, err: old.count, svc: svc}
	t.pos[key] = 0
	t.down(0)
	return old.key, true
}

// remove drops entry i.
func (t *topK) remove(i int) {
	last := len(t.e) - 1
	delete(t.pos, t.e[i].key)
	if i != last {
		t.e[i] = t.e[last]
		t.pos[t.e[i].key] = int32(i)
	}
	t.e = t.e[:last]
	if i != last {
		t.down(i)
		t.up(i)
	}
}

// decay multiplies every count by f (order is unchanged).
func (t *topK) decay(f float64) {
	for i := range t.e {
		t.e[i].count *= f
		t.e[i].err *= f
	}
}

// resize changes k, evicting the smallest entries when it shrinks.
func (t *topK) resize(k int) {
	t.k = k
	for len(t.e) > k {
		t.remove(0)
	}
}

func (t *topK) less(i, j int) bool { return t.e[i].count < t.e[j].count }

func (t *topK) swap(i, j int) {
	t.e[i], t.e[j] = t.e[j], t.e[i]
	t.pos[t.e[i].key] = int32(i)
	t.pos[t.e[j].key] = int32(j)
}

func (t *topK) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !t.less(i, p) {
			return
		}
		t.swap(i, p)
		i = p
	}
}

func (t *topK) down(i int) {
	n := len(t.e)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && t.less(r, l) {
			m = r
		}
		if !t.less(m, i) {
			return
		}
		t.swap(i, m)
		i = m
	}
}
