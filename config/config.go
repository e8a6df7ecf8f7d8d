// Package config reads meridian's TOML configuration, fills its defaults and
// validates it. A Config is immutable once Load returns it: every other
// package reads it and none changes it. A reload builds a new Config.
package config

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/miekg/dns"
)

// Config is one node's whole configuration.
type Config struct {
	Node     Node              `toml:"node"`
	DNS      DNS               `toml:"dns"`
	HTTP     HTTP              `toml:"http"`
	Gossip   Gossip            `toml:"gossip"`
	TLS      TLSFiles          `toml:"tls"`
	Regions  map[string]Region `toml:"regions"`
	GeoIP    GeoIP             `toml:"geoip"`
	Checks   map[string]Check  `toml:"checks"`
	Skew     Skew              `toml:"skew"`
	Zones    []Zone            `toml:"zones"`
	Services []Service         `toml:"services"`

	// File is the path the configuration was read from ("" when parsed from memory).
	File string `toml:"-"`
	// Warnings lists problems that do not stop the node from serving.
	Warnings []Problem `toml:"-"`
}

// Node names this node and places it in a region.
type Node struct {
	Name   string `toml:"name"`
	Region string `toml:"region"`
}

// DNS configures the authoritative server.
type DNS struct {
	Listen     []string `toml:"listen"`
	NSID       bool     `toml:"nsid"`
	UDPSize    int      `toml:"udp_size"`
	UDPSockets int      `toml:"udp_sockets"`
	RRL        RRL      `toml:"rrl"`
}

// RRL configures response rate limiting per client network.
type RRL struct {
	Rate int `toml:"rate"`
	Slip int `toml:"slip"`
}

// HTTP configures the admin listener (/metrics, /healthz, /api/v1/*, /ui).
type HTTP struct {
	Listen   string `toml:"listen"`
	TLSCert  string `toml:"tls_cert"`
	TLSKey   string `toml:"tls_key"`
	ClientCA string `toml:"client_ca"`
	Insecure bool   `toml:"insecure"`
}

// Gossip configures the memberlist cluster. Enabled is false when the
// [gossip] table is absent: the node then decides from its own probes.
type Gossip struct {
	Enabled    bool     `toml:"-"`
	Bind       string   `toml:"bind"`
	Advertise  string   `toml:"advertise"`
	Join       []string `toml:"join"`
	Profile    string   `toml:"profile"`
	Cluster    string   `toml:"cluster"`
	Keyring    string   `toml:"keyring"`
	Transport  string   `toml:"transport"`
	StaleAfter Duration `toml:"stale_after"`
	TLSFiles
}

// TLSFiles names a CA bundle and a certificate with its key.
type TLSFiles struct {
	CA   string `toml:"ca"`
	Cert string `toml:"cert"`
	Key  string `toml:"key"`
}

// Region describes one region: where it is and which client networks belong to it.
type Region struct {
	Location []float64 `toml:"location"`
	Networks []string  `toml:"networks"`

	// Prefixes holds Networks parsed.
	Prefixes []netip.Prefix `toml:"-"`
}

// HasLocation reports whether the region's coordinates were given.
func (r Region) HasLocation() bool { return len(r.Location) == 2 }

// GeoIP names an optional MaxMind City database used to place clients.
type GeoIP struct {
	Database string `toml:"database"`
}

// Check describes how to probe an endpoint.
type Check struct {
	Type               string            `toml:"type"`
	Port               int               `toml:"port"`
	Path               string            `toml:"path"`
	Host               string            `toml:"host"`
	Headers            map[string]string `toml:"headers"`
	Interval           Duration          `toml:"interval"`
	Timeout            Duration          `toml:"timeout"`
	Rise               int               `toml:"rise"`
	Fall               int               `toml:"fall"`
	ExpectStatus       []int             `toml:"expect_status"`
	ExpectBody         string            `toml:"expect_body"`
	ServerName         string            `toml:"server_name"`
	InsecureSkipVerify bool              `toml:"insecure_skip_verify"`
	GRPCService        string            `toml:"grpc_service"`
	QueryName          string            `toml:"query_name"`
	QueryType          string            `toml:"query_type"`
	Protocol           string            `toml:"protocol"`
	ExpectRcode        string            `toml:"expect_rcode"`
	TLSFiles
}

// Skew configures client-skew recording.
type Skew struct {
	// Enabled is nil when the file leaves it out: recording is on.
	Enabled        *bool `toml:"enabled"`
	TopK           int   `toml:"top_k"`
	LowDiscrepancy bool  `toml:"low_discrepancy"`
	// ExchangeInterval is how often a node sends its recorded state to
	// every peer (with [gossip]), so each can report for the cluster.
	ExchangeInterval Duration `toml:"exchange_interval"`
}

// Recording reports whether the node records its answers for the skew
// report (skew.enabled, default true).
func (s Skew) Recording() bool { return s.Enabled == nil || *s.Enabled }

// Zone is one authoritative zone.
type Zone struct {
	Origin     string   `toml:"origin"`
	TTL        uint32   `toml:"ttl"`
	NS         []string `toml:"ns"`
	Hostmaster string   `toml:"hostmaster"`
	Records    string   `toml:"records"`
	Serial     uint32   `toml:"serial"`

	// RRs holds the static records read from Records.
	RRs []dns.RR `toml:"-"`
}

// Service is a steered name answered by policy over its endpoints.
type Service struct {
	Name             string     `toml:"name"`
	Policy           string     `toml:"policy"`
	TTL              uint32     `toml:"ttl"`
	MaxAnswers       int        `toml:"max_answers"`
	Check            string     `toml:"check"`
	Quorum           string     `toml:"quorum"`
	LatencyTolerance string     `toml:"latency_tolerance"`
	FailOpen         *bool      `toml:"fail_open"`
	Endpoints        []Endpoint `toml:"endpoints"`

	// Zone is the index in Config.Zones of the zone holding Name.
	Zone int `toml:"-"`
	// Tolerance is LatencyTolerance parsed.
	Tolerance Tolerance `toml:"-"`
	// QuorumRule is Quorum parsed.
	QuorumRule Quorum `toml:"-"`
}

// FailsOpen reports whether the service answers all endpoints when none is up.
func (s Service) FailsOpen() bool { return s.FailOpen == nil || *s.FailOpen }

// Endpoint is one answer a service may give.
type Endpoint struct {
	Name         string   `toml:"name"`
	Region       string   `toml:"region"`
	Address      string   `toml:"address"`
	CNAME        string   `toml:"cname"`
	Weight       *int     `toml:"weight"`
	Priority     int      `toml:"priority"`
	Check        string   `toml:"check"`
	ProbeAddress string   `toml:"probe_address"`
	Capacity     *float64 `toml:"capacity"`

	// Addr is Address parsed (invalid for CNAME endpoints).
	Addr netip.Addr `toml:"-"`
}

// EffectiveWeight is the endpoint's weight (default 1).
func (e Endpoint) EffectiveWeight() int {
	if e.Weight == nil {
		return 1
	}
	return *e.Weight
}

// EffectiveCapacity is the share the skew report holds the endpoint to (default: its weight).
func (e Endpoint) EffectiveCapacity() float64 {
	if e.Capacity == nil {
		return float64(e.EffectiveWeight())
	}
	return *e.Capacity
}

// MaxEndpoints is the most endpoints one service may have.
const MaxEndpoints = 64

// Policies lists the answer policies a service may use.
var Policies = []string{"latency", "weighted", "failover", "multivalue"}

// CheckTypes lists the probe types a check may use.
var CheckTypes = []string{"tcp", "tls", "https", "grpc", "postgres", "dns"}

// Duration is a time.Duration written as a string such as "2s".
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration such as \"2s\" or \"500ms\"", b)
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }
