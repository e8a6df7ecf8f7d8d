package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// QuorumKind says how many voting regions must see an endpoint up.
type QuorumKind int

// The quorum kinds: any one region, a majority, all of them, or at least N.
const (
	QuorumMajority QuorumKind = iota
	QuorumAny
	QuorumAll
	QuorumCount
)

// Quorum is a parsed `quorum` value.
type Quorum struct {
	Kind QuorumKind
	N    int // for QuorumCount
}

// Needed returns how many of voters regions must say up (at least 1).
func (q Quorum) Needed(voters int) int {
	switch q.Kind {
	case QuorumAny:
		return 1
	case QuorumAll:
		return max(voters, 1)
	case QuorumCount:
		return min(q.N, max(voters, 1))
	default:
		return voters/2 + 1
	}
}

// ParseQuorum parses "any", "majority", "all" or a positive region count.
func ParseQuorum(s string) (Quorum, error) {
	switch s {
	case "any":
		return Quorum{Kind: QuorumAny}, nil
	case "majority":
		return Quorum{Kind: QuorumMajority}, nil
	case "all":
		return Quorum{Kind: QuorumAll}, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return Quorum{}, fmt.Errorf("%q is not any, majority, all or a region count ≥ 1", s)
	}
	return Quorum{Kind: QuorumCount, N: n}, nil
}

// Tolerance is a parsed `latency_tolerance`: an absolute duration or a
// fraction of the best RTT.
type Tolerance struct {
	Abs      time.Duration
	Fraction float64
}

// Within reports whether rtt is close enough to best to share its traffic.
func (t Tolerance) Within(rtt, best time.Duration) bool {
	if t.Fraction > 0 {
		return float64(rtt) <= float64(best)*(1+t.Fraction)
	}
	return rtt-best <= t.Abs
}

// ParseTolerance parses "10ms" or "20%".
func ParseTolerance(s string) (Tolerance, error) {
	if pct, ok := strings.CutSuffix(s, "%"); ok {
		f, err := strconv.ParseFloat(pct, 64)
		if err != nil || !(f >= 0 && f <= 1000) { // also rejects NaN
			return Tolerance{}, fmt.Errorf("%q is not a percentage between 0%% and 1000%%", s)
		}
		return Tolerance{Fraction: f / 100}, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return Tolerance{}, fmt.Errorf("%q is not a duration (\"10ms\") or a percentage (\"20%%\")", s)
	}
	return Tolerance{Abs: d}, nil
}

// canonicalName lower-cases a domain name and makes it fully qualified.
func canonicalName(s string) string {
	if s == "" {
		return s
	}
	return dns.Fqdn(strings.ToLower(s))
}

// InZone reports whether name equals origin or lies below it (both canonical).
func InZone(name, origin string) bool {
	return name == origin || origin == "." || strings.HasSuffix(name, "."+origin)
}
