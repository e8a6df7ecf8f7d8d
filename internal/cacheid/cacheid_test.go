package cacheid

import (
	"net/netip"
	"testing"
)

func TestHash(t *testing.T) {
	v4 := netip.MustParseAddr("198.51.100.7")
	mapped := netip.MustParseAddr("::ffff:198.51.100.7")
	ecs := netip.MustParsePrefix("203.0.113.0/24")
	base := Hash(v4, 1, netip.Prefix{})
	if Hash(mapped, 1, netip.Prefix{}) != base {
		t.Error("an IPv4-mapped address hashes apart from its IPv4 form")
	}
	if Hash(v4, 1, netip.Prefix{}) != base {
		t.Error("the hash is not deterministic")
	}
	others := map[string]uint64{
		"other source":  Hash(netip.MustParseAddr("198.51.100.8"), 1, netip.Prefix{}),
		"other service": Hash(v4, 2, netip.Prefix{}),
		"with ECS":      Hash(v4, 1, ecs),
		"ECS /25":       Hash(v4, 1, netip.MustParsePrefix("203.0.113.0/25")),
		"ECS at /0":     Hash(v4, 1, netip.MustParsePrefix("0.0.0.0/0")),
	}
	seen := map[uint64]string{base: "base"}
	for what, h := range others {
		if prev, ok := seen[h]; ok {
			t.Errorf("%s hashes like %s", what, prev)
		}
		seen[h] = what
	}
	if n := testing.AllocsPerRun(100, func() { Hash(v4, 1, ecs) }); n != 0 {
		t.Errorf("Hash allocates %.0f times", n)
	}
}

func TestMix64IsABijectionOnASample(t *testing.T) {
	seen := map[uint64]bool{}
	for x := range uint64(1 << 16) {
		y := Mix64(x)
		if seen[y] {
			t.Fatalf("Mix64(%d) repeats an earlier output", x)
		}
		seen[y] = true
	}
}
