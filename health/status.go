package health

import (
	"time"

	"meridian/config"
)

// Status is the cluster's health as one node sees it: the JSON of
// /api/v1/status and what `meridian status` prints.
type Status struct {
	Node     string          `json:"node"`
	Region   string          `json:"region"`
	Time     time.Time       `json:"time"`
	Members  []Member        `json:"members"`
	Services []ServiceStatus `json:"services"`
}

// ServiceStatus is one steered name and its endpoints.
type ServiceStatus struct {
	Name      string           `json:"name"`
	Policy    string           `json:"policy"`
	Quorum    string           `json:"quorum"`
	Endpoints []EndpointStatus `json:"endpoints"`
}

// EndpointStatus is one endpoint's verdict with every region's vote and
// every node's observation behind it.
type EndpointStatus struct {
	Name      string         `json:"name"`
	Region    string         `json:"region"`
	Address   string         `json:"address"`
	State     string         `json:"state"` // up, down, unknown (not down), or unchecked
	Target    string         `json:"target,omitempty"`
	Votes     []VoteStatus   `json:"votes,omitempty"`
	Observers []ObserverJSON `json:"observers,omitempty"`
}

// VoteStatus is one region's vote on an endpoint.
type VoteStatus struct {
	Region string  `json:"region"`
	State  string  `json:"state"`
	Up     int     `json:"up"`
	Down   int     `json:"down"`
	RTTms  float64 `json:"rtt_ms,omitempty"`
}

// ObserverJSON is one node's observation of an endpoint's target.
type ObserverJSON struct {
	Node   string    `json:"node"`
	Region string    `json:"region"`
	Voting bool      `json:"voting"`
	State  string    `json:"state"`
	Since  time.Time `json:"since,omitzero"`
	RTTms  float64   `json:"rtt_ms,omitempty"`
	Reason string    `json:"reason,omitempty"`
	Detail string    `json:"detail,omitempty"`
}

// BuildStatus reports cfg's services as snap decided them, with the votes
// and observations of t behind each verdict.
func BuildStatus(cfg *config.Config, snap *Snapshot, t *Table, now time.Time) Status {
	st := Status{Node: cfg.Node.Name, Region: cfg.Node.Region, Time: now, Members: t.Members()}
	for _, s := range cfg.Services {
		ss := ServiceStatus{Name: s.Name, Policy: s.Policy, Quorum: s.Quorum}
		for _, e := range s.Endpoints {
			ss.Endpoints = append(ss.Endpoints, endpointStatus(s.Name, e, snap, t))
		}
		st.Services = append(st.Services, ss)
	}
	return st
}

func endpointStatus(service string, e config.Endpoint, snap *Snapshot, t *Table) EndpointStatus {
	h := snap.Endpoint(service, e.Name)
	es := EndpointStatus{Name: e.Name, Region: e.Region, Address: e.Address + e.CNAME, State: h.State.String()}
	if !h.Checked {
		es.State = "unchecked"
		return es
	}
	es.Target = h.Target.String()
	for _, v := range h.Regions {
		es.Votes = append(es.Votes, VoteStatus{Region: v.Region, State: v.State.String(), Up: v.Up, Down: v.Down, RTTms: ms(v.RTT)})
	}
	for _, o := range t.Observers(h.Target) {
		es.Observers = append(es.Observers, ObserverJSON{Node: o.Node, Region: o.Region, Voting: o.Voting,
			State: o.State.String(), Since: o.Since, RTTms: ms(o.RTT), Reason: string(o.Reason), Detail: o.Detail})
	}
	return es
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
