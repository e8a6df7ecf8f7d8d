package placement

/*
Longest-prefix match by binary search on ranges.

Networks either nest or are disjoint, so n networks cut an address family
into at most 2n+1 ranges, and every address in a range has the same longest
matching network (or none). The table stores, per family, the start of each
range with that network's length and region, sorted by start; a lookup is a
binary search for the last range that starts at or below the address, and
the network is the address masked to the stored length. This is the "binary
search on prefix ranges" of Lampson, Srinivasan and Varghese, "IP Lookups
Using Multiway and Multicolumn Search" (IEEE/ACM Transactions on Networking
7(3), 1999).

For 100,000 networks that is about 18 probes into one contiguous slice of
8-byte (IPv4) or 24-byte (IPv6) ranges, with no allocation and no pointer
chasing — a binary trie would follow up to 32 (IPv4) or 128 (IPv6) node
pointers. The price is that the table cannot be updated in place; it is
built once per Placer, in O(n log n).

Building: sort the networks by first address, containing networks before
the networks they contain, and sweep with a stack of the networks that are
open. Before a network starts, every open network that ended earlier is
closed; the address after its end starts a range that belongs to the
network below it on the stack. Then the network itself starts a range. When
several ranges start at the same address the last one written wins, and
neighbouring ranges with the same length and region are merged (masking
still finds each address's own network).
*/

import (
	"cmp"
	"math"
	"net/netip"
	"slices"
)

// netEntry is a configured network and the region it belongs to.
type netEntry struct {
	prefix netip.Prefix
	region string
}

// netTable is an immutable longest-prefix-match table.
type netTable struct {
	regions []string // by match.region - 1
	v4      []range4 // sorted by start; empty when no IPv4 network is configured
	v6      []range6 // sorted by start; empty when no IPv6 network is configured
}

// match is the longest network of a range: its length and its region's
// number, regions index + 1; region 0 means no network.
type match struct {
	region uint16
	bits   uint8
}

// range4 is a run of IPv4 addresses, from start to the next range's start,
// that all have the same longest match.
type range4 struct {
	start uint32
	match
}

// range6 is range4 for IPv6.
type range6 struct {
	start u128
	match
}

// maxRegions is the most regions a netTable can number.
const maxRegions = 1<<16 - 1

// u128 is an IPv6 address as a number.
type u128 struct{ hi, lo uint64 }

func (a u128) cmp(b u128) int {
	if c := cmp.Compare(a.hi, b.hi); c != 0 {
		return c
	}
	return cmp.Compare(a.lo, b.lo)
}

func (a u128) less(b u128) bool { return a.hi < b.hi || a.hi == b.hi && a.lo < b.lo }

func (a u128) addOne() u128 {
	lo := a.lo + 1
	if lo == 0 {
		return u128{a.hi + 1, 0}
	}
	return u128{a.hi, lo}
}

func (a u128) or(b u128) u128 { return u128{a.hi | b.hi, a.lo | b.lo} }

// hostMask returns the value with the low n bits set (0 <= n <= 128).
func hostMask(n int) u128 {
	switch {
	case n == 0:
		return u128{}
	case n < 64:
		return u128{0, 1<<n - 1}
	case n < 128:
		return u128{1<<(n-64) - 1, math.MaxUint64}
	}
	return u128{math.MaxUint64, math.MaxUint64}
}

func addr4(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func addr6(a netip.Addr) u128 {
	b := a.As16()
	var v u128
	for i := range 8 {
		v.hi = v.hi<<8 | uint64(b[i])
		v.lo = v.lo<<8 | uint64(b[8+i])
	}
	return v
}

// lookup returns the longest network containing a and its region; ok is
// false when none does. a must already be unmapped; an invalid address
// matches nothing.
func (t *netTable) lookup(a netip.Addr) (network netip.Prefix, region string, ok bool) {
	var m match
	switch {
	case a.Is4():
		m = search4(t.v4, addr4(a))
	case a.Is6():
		m = search6(t.v6, addr6(a))
	}
	if m.region == 0 {
		return netip.Prefix{}, "", false
	}
	network, _ = a.Prefix(int(m.bits)) // drops any zone
	return network, t.regions[m.region-1], true
}

// search4 returns the match of the last range starting at or below a. The
// first range starts at 0, so there is always one; each step halves the
// candidates, with no early exit, so the loop runs ⌈log2 n⌉ times.
func search4(rs []range4, a uint32) match {
	if len(rs) == 0 {
		return match{}
	}
	base, n := 0, len(rs)
	for n > 1 {
		half := n >> 1
		if rs[base+half].start <= a {
			base += half
		}
		n -= half
	}
	return rs[base].match
}

// search6 is search4 for IPv6.
func search6(rs []range6, a u128) match {
	if len(rs) == 0 {
		return match{}
	}
	base, n := 0, len(rs)
	for n > 1 {
		half := n >> 1
		if !a.less(rs[base+half].start) {
			base += half
		}
		n -= half
	}
	return rs[base].match
}

// span is a network as its first and last address.
type span struct {
	first, last u128
	match
}

// buildNetTable builds the table for nets, which must be masked and
// unmapped, over at most maxRegions regions. Of several entries for one
// network the last wins.
func buildNetTable(nets []netEntry) netTable {
	var t netTable
	number := map[string]uint16{}
	index := make(map[netip.Prefix]int, len(nets))
	var spans4, spans6 []span
	for _, n := range nets {
		r, ok := number[n.region]
		if !ok {
			t.regions = append(t.regions, n.region)
			r = uint16(len(t.regions))
			number[n.region] = r
		}
		m := match{region: r, bits: uint8(n.prefix.Bits())}
		a := n.prefix.Addr()
		spans := &spans6
		first, last := addr6(a), hostMask(128-n.prefix.Bits())
		if a.Is4() {
			spans = &spans4
			first, last = u128{0, uint64(addr4(a))}, hostMask(32-n.prefix.Bits())
		}
		if i, ok := index[n.prefix]; ok {
			(*spans)[i].match = m
			continue
		}
		index[n.prefix] = len(*spans)
		*spans = append(*spans, span{first, first.or(last), m})
	}
	for _, r := range flatten(spans4, u128{0, math.MaxUint32}) {
		t.v4 = append(t.v4, range4{uint32(r.start.lo), r.match})
	}
	t.v6 = flatten(spans6, hostMask(128))
	return t
}

// flatten turns nested or disjoint spans into sorted ranges labelled with
// their longest match; max is the family's last address.
func flatten(spans []span, max u128) []range6 {
	if len(spans) == 0 {
		return nil
	}
	slices.SortFunc(spans, func(a, b span) int {
		if c := a.first.cmp(b.first); c != 0 {
			return c
		}
		return b.last.cmp(a.last) // the containing network first
	})
	out := []range6{{}}
	emit := func(start u128, m match) {
		if last := &out[len(out)-1]; last.start == start {
			last.match = m
			return
		}
		out = append(out, range6{start, m})
	}
	var open []span
	closeBefore := func(a u128, all bool) {
		for len(open) > 0 {
			top := open[len(open)-1]
			if !all && !top.last.less(a) {
				return // top contains a
			}
			open = open[:len(open)-1]
			if top.last == max {
				continue
			}
			var parent match
			if len(open) > 0 {
				parent = open[len(open)-1].match
			}
			emit(top.last.addOne(), parent)
		}
	}
	for _, s := range spans {
		closeBefore(s.first, false)
		emit(s.first, s.match)
		open = append(open, s)
	}
	closeBefore(max, true)
	merged := out[:1]
	for _, r := range out[1:] {
		if r.match != merged[len(merged)-1].match {
			merged = append(merged, r)
		}
	}
	return slices.Clip(merged)
}
