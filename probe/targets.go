package probe

import (
	"net/netip"
	"sort"

	"meridian/config"
)

// TargetOf returns the target that decides the health of endpoint e, or
// false when e has no check (it is then always up). The probe address is
// probe_address when set, else the endpoint's address; the port is the check's.
func TargetOf(cfg *config.Config, e config.Endpoint) (Target, bool) {
	ch, ok := cfg.Checks[e.Check]
	if e.Check == "" || !ok {
		return Target{}, false
	}
	addr := e.Addr
	if e.ProbeAddress != "" {
		addr, _ = netip.ParseAddr(e.ProbeAddress)
	}
	if !addr.IsValid() {
		return Target{}, false
	}
	return Target{Check: e.Check, Address: addr.Unmap(), Port: ch.Port}, true
}

// Targets returns every distinct target of cfg, sorted: each is probed once
// however many services and endpoints use it.
func Targets(cfg *config.Config) []Target {
	seen := map[Target]bool{}
	var out []Target
	for _, s := range cfg.Services {
		for _, e := range s.Endpoints {
			if t, ok := TargetOf(cfg, e); ok && !seen[t] {
				seen[t] = true
				out = append(out, t)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}
