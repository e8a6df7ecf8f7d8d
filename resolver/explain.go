package resolver

import (
	"fmt"
	"math"
	"net/netip"
	"strings"
	"time"

	"meridian/config"
)

// Explanation says how the server answers a name for a client: where it
// placed the client, what each endpoint looked like from there, and which
// endpoints the answer is drawn from. It is the JSON of /api/v1/explain.
type Explanation struct {
	Name       string      `json:"name"`
	Policy     string      `json:"policy"`
	Client     string      `json:"client"`
	Placement  *Placement  `json:"placement,omitempty"`
	Candidates []Candidate `json:"candidates"`
	Answers    []string    `json:"answers"` // the endpoints the answer is drawn from
	Reason     string      `json:"reason"`
}

// Placement is where a latency service placed the client, and by which rule.
type Placement struct {
	Region  string `json:"region"`
	Rule    string `json:"rule"`
	Network string `json:"network,omitempty"`
	Scope   uint8  `json:"ecs_scope"`
}

// Candidate is one endpoint as the policy saw it.
type Candidate struct {
	Endpoint  string  `json:"endpoint"`
	Region    string  `json:"region"`
	Address   string  `json:"address"`
	Up        bool    `json:"up"`
	Weight    int     `json:"weight"`
	Priority  int     `json:"priority"`
	RTTms     float64 `json:"rtt_ms,omitempty"`
	RTTSource string  `json:"rtt_source,omitempty"` // measured | distance | unknown
	InAnswer  bool    `json:"in_answer"`
}

// Explain explains the A (or, for IPv6-only services, AAAA) answer for
// name to a client at client (an ECS subnet's address, or a resolver's).
func (s *Server) Explain(name string, client netip.Addr) (*Explanation, error) {
	s.mu.Lock()
	cfg, h := s.cfg, s.health
	s.mu.Unlock()
	t := s.table.Load()
	name = strings.ToLower(name)
	if !strings.HasSuffix(name, ".") {
		name += "."
	}
	n := t.names[name]
	if n == nil || n.service == nil {
		return nil, fmt.Errorf("explain: %s is not a steered name", name)
	}
	svc := findService(cfg, name)
	ex := &Explanation{Name: name, Policy: svc.Policy, Client: client.String()}
	region, _ := t.place(n.service, client)
	if n.service.latency() {
		pl := t.placer.Place(client)
		ex.Placement = &Placement{Region: pl.Region, Rule: pl.Rule.String(), Scope: pl.Scope}
		if pl.Network.IsValid() {
			ex.Placement.Network = pl.Network.String()
		}
	}
	qtype := uint16(1) // A
	if _, ok := n.service.familyFor(qtype); !ok || n.service.poolFor(qtype, region) == nil {
		qtype = 28 // AAAA
	}
	p := n.service.poolFor(qtype, region)
	in := map[string]bool{}
	if p != nil {
		for _, e := range p.ends {
			in[e.name] = true
			ex.Answers = append(ex.Answers, e.name)
		}
	}
	ex.Candidates = candidates(cfg, svc, h, ex.Placement, in)
	ex.Reason = reason(svc, p, ex)
	return ex, nil
}

func findService(cfg *config.Config, name string) *config.Service {
	for i := range cfg.Services {
		if cfg.Services[i].Name == name {
			return &cfg.Services[i]
		}
	}
	return &config.Service{}
}

func candidates(cfg *config.Config, svc *config.Service, h Health, pl *Placement, in map[string]bool) []Candidate {
	var out []Candidate
	for _, e := range svc.Endpoints {
		c := Candidate{Endpoint: e.Name, Region: e.Region, Address: e.Address + e.CNAME, Up: h.Up(svc.Name, e.Name),
			Weight: e.EffectiveWeight(), Priority: e.Priority, InAnswer: in[e.Name]}
		if pl != nil {
			c.RTTms, c.RTTSource = explainRTT(cfg, svc, h, e, pl.Region)
		}
		out = append(out, c)
	}
	return out
}

// explainRTT reports the RTT the latency policy used for e from region.
func explainRTT(cfg *config.Config, svc *config.Service, h Health, e config.Endpoint, region string) (float64, string) {
	if d, ok := h.RTT(svc.Name, e.Name, region); ok {
		return ms(d), "measured"
	}
	c := &compiler{svc: svc, health: AllUp{}, locate: locator(cfg)}
	if d := c.rtt(e, region, math.MaxInt64); d != math.MaxInt64 {
		return ms(d), "distance"
	}
	return 0, "unknown"
}

func ms(d time.Duration) float64 { return math.Round(float64(d.Microseconds())) / 1000 }

func reason(svc *config.Service, p *pool, ex *Explanation) string {
	switch {
	case p == nil || len(p.ends) == 0:
		return "no endpoint is up and fail_open is false: NODATA"
	case p.failOpen:
		return "no endpoint is up: failing open, every endpoint is answered"
	case svc.Policy == "latency":
		return fmt.Sprintf("client placed in %s by %s; answered from the endpoints within %s of the lowest RTT from there, by weight",
			ex.Placement.Region, ex.Placement.Rule, svc.LatencyTolerance)
	case svc.Policy == "failover":
		return "the lowest priority with an up endpoint, by weight"
	case svc.Policy == "multivalue":
		return fmt.Sprintf("every up endpoint, shuffled, at most %d", svc.MaxAnswers)
	}
	return fmt.Sprintf("%d endpoint(s) drawn by weight from the up ones", svc.MaxAnswers)
}
