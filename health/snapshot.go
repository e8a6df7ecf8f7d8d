package health

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"meridian/config"
	"meridian/probe"
)

// Decider decides a target's verdict under a quorum rule; Table implements it.
type Decider interface {
	Decide(t probe.Target, q config.Quorum) Decision
}

// endpointKey names an endpoint of a service.
type endpointKey struct{ service, endpoint string }

// EndpointHealth is one endpoint's verdict in a Snapshot.
type EndpointHealth struct {
	Target  probe.Target // zero when the endpoint has no check
	Checked bool
	State   State
	Regions []RegionVote // each region's vote and RTT, sorted by region
}

// RTT returns the median RTT from region's nodes to the endpoint.
func (e EndpointHealth) RTT(region string) (time.Duration, bool) {
	for _, v := range e.Regions {
		if v.Region == region && v.RTT > 0 {
			return v.RTT, true
		}
	}
	return 0, false
}

// Up reports whether the endpoint may be answered: unchecked, unknown or up.
func (e EndpointHealth) Up() bool { return e.State != Down }

// Snapshot is an immutable view of every endpoint's health, built when a
// verdict changes. It implements the resolver's Health interface.
type Snapshot struct {
	endpoints map[endpointKey]EndpointHealth
}

// NewSnapshot decides every endpoint of cfg with d, under its service's quorum.
func NewSnapshot(cfg *config.Config, d Decider) *Snapshot {
	s := &Snapshot{endpoints: map[endpointKey]EndpointHealth{}}
	for _, svc := range cfg.Services {
		for _, e := range svc.Endpoints {
			s.endpoints[endpointKey{svc.Name, e.Name}] = endpointHealth(cfg, svc.QuorumRule, e, d)
		}
	}
	return s
}

func endpointHealth(cfg *config.Config, q config.Quorum, e config.Endpoint, d Decider) EndpointHealth {
	t, ok := probe.TargetOf(cfg, e)
	if !ok {
		return EndpointHealth{State: Up}
	}
	dec := d.Decide(t, q)
	return EndpointHealth{Target: t, Checked: true, State: dec.State, Regions: dec.Regions}
}

// Endpoint returns the health of an endpoint; one the snapshot does not
// know (added since it was built) is Unknown.
func (s *Snapshot) Endpoint(service, endpoint string) EndpointHealth {
	return s.endpoints[endpointKey{service, endpoint}]
}

// Up reports whether the endpoint may be answered (resolver.Health).
func (s *Snapshot) Up(service, endpoint string) bool {
	return s.Endpoint(service, endpoint).Up()
}

// ExportUp sets g{service, endpoint} to 1 for every endpoint that may be
// answered and 0 for the others, dropping series of removed endpoints.
func (s *Snapshot) ExportUp(g *prometheus.GaugeVec) {
	g.Reset()
	for k, e := range s.endpoints {
		v := 0.0
		if e.Up() {
			v = 1
		}
		g.WithLabelValues(k.service, k.endpoint).Set(v)
	}
}

// RTT returns the median RTT measured from region's nodes to the endpoint
// (resolver.Health): what the latency policy ranks by.
func (s *Snapshot) RTT(service, endpoint, region string) (time.Duration, bool) {
	return s.Endpoint(service, endpoint).RTT(region)
}

// Change is an endpoint whose verdict differs between two snapshots, with
// the region votes behind the new verdict.
type Change struct {
	Service, Endpoint string
	From, To          State
	Regions           []RegionVote
}

// Changes returns the checked endpoints whose verdict differs from prev to
// cur, sorted by service and endpoint. Endpoints that only one of the two
// holds (a reload added or removed them) are not changes.
func Changes(prev, cur *Snapshot) []Change {
	var out []Change
	for k, e := range cur.endpoints {
		p, ok := prev.endpoints[k]
		if ok && e.Checked && p.State != e.State {
			out = append(out, Change{Service: k.service, Endpoint: k.endpoint, From: p.State, To: e.State, Regions: e.Regions})
		}
	}
	slices.SortFunc(out, func(a, b Change) int {
		return cmp.Or(strings.Compare(a.Service, b.Service), strings.Compare(a.Endpoint, b.Endpoint))
	})
	return out
}

// Votes renders the region votes as "region=up(2/0) ...", for logs.
func (c Change) Votes() string {
	var b strings.Builder
	for i, v := range c.Regions {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%s(%d up/%d down)", v.Region, v.State, v.Up, v.Down)
	}
	return b.String()
}

// ExportRegionUp sets g{service, endpoint, region} to 1 where the region
// votes the endpoint up and 0 where it votes down; regions that do not vote
// have no series.
func (s *Snapshot) ExportRegionUp(g *prometheus.GaugeVec) {
	g.Reset()
	for k, e := range s.endpoints {
		for _, v := range e.Regions {
			switch v.State {
			case Up:
				g.WithLabelValues(k.service, k.endpoint, v.Region).Set(1)
			case Down:
				g.WithLabelValues(k.service, k.endpoint, v.Region).Set(0)
			}
		}
	}
}
