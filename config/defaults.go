package config

import (
	"os"
	"runtime"
	"time"

	"github.com/BurntSushi/toml"
)

// Defaults for keys the file leaves out.
const (
	DefaultDNSListen   = "127.0.0.1:5353"
	DefaultHTTPListen  = "127.0.0.1:9153"
	DefaultGossipBind  = "127.0.0.1:7946"
	DefaultUDPSize     = 1232
	DefaultZoneTTL     = 30
	DefaultServiceTTL  = 30
	DefaultTopK        = 100000
	DefaultExchange    = 15 * time.Second
	DefaultMultiValue  = 8
	DefaultRiseFall    = 2
	DefaultCluster     = "meridian"
	DefaultQuorum      = "majority"
	DefaultTolerance   = "10ms"
	DefaultStaleAfter  = 30 * time.Second
	DefaultInterval    = 2 * time.Second
	DefaultTimeout     = time.Second
	maxUDPSocketsAuto  = 8
	defaultHostmaster  = "hostmaster."
	defaultCheckPath   = "/"
	defaultDNSProtocol = "udp"
)

// defaultPorts are the ports a check type uses when the check names none.
var defaultPorts = map[string]int{"tls": 443, "https": 443, "grpc": 443, "postgres": 5432, "dns": 53}

// applyDefaults fills every key the file left out. It runs before validation,
// so validation sees the values the node will really use.
func applyDefaults(c *Config) {
	if c.Node.Name == "" {
		c.Node.Name, _ = os.Hostname()
	}
	defaultDNS(&c.DNS)
	if c.HTTP.Listen == "" {
		c.HTTP.Listen = DefaultHTTPListen
	}
	defaultGossip(&c.Gossip)
	for name, ch := range c.Checks {
		defaultCheck(&ch)
		c.Checks[name] = ch
	}
	if c.Skew.TopK == 0 {
		c.Skew.TopK = DefaultTopK
	}
	if c.Skew.ExchangeInterval.Duration == 0 {
		c.Skew.ExchangeInterval.Duration = DefaultExchange
	}
	for i := range c.Zones {
		defaultZone(&c.Zones[i])
	}
	for i := range c.Services {
		defaultService(&c.Services[i])
	}
}

func defaultDNS(d *DNS) {
	if len(d.Listen) == 0 {
		d.Listen = []string{DefaultDNSListen}
	}
	if d.UDPSize == 0 {
		d.UDPSize = DefaultUDPSize
	}
	if d.UDPSockets == 0 {
		d.UDPSockets = min(runtime.GOMAXPROCS(0), maxUDPSocketsAuto)
	}
	if d.RRL.Slip == 0 {
		d.RRL.Slip = 2
	}
}

func defaultGossip(g *Gossip) {
	if g.Bind == "" {
		g.Bind = DefaultGossipBind
	}
	if g.Profile == "" {
		g.Profile = "wan"
	}
	if g.Cluster == "" {
		g.Cluster = DefaultCluster
	}
	if g.Transport == "" {
		g.Transport = "udp"
	}
	if g.StaleAfter.Duration == 0 {
		g.StaleAfter.Duration = DefaultStaleAfter
	}
}

func defaultCheck(ch *Check) {
	if ch.Port == 0 {
		ch.Port = defaultPorts[ch.Type]
	}
	if ch.Interval.Duration == 0 {
		ch.Interval.Duration = DefaultInterval
	}
	if ch.Timeout.Duration == 0 {
		ch.Timeout.Duration = DefaultTimeout
		if ch.Interval.Duration > 0 { // a bad interval is reported, not copied
			ch.Timeout.Duration = min(DefaultTimeout, ch.Interval.Duration)
		}
	}
	if ch.Rise == 0 {
		ch.Rise = DefaultRiseFall
	}
	if ch.Fall == 0 {
		ch.Fall = DefaultRiseFall
	}
	switch ch.Type {
	case "https":
		if ch.Path == "" {
			ch.Path = defaultCheckPath
		}
		if len(ch.ExpectStatus) == 0 {
			ch.ExpectStatus = []int{200}
		}
	case "dns":
		defaultDNSCheck(ch)
	}
}

func defaultDNSCheck(ch *Check) {
	if ch.QueryType == "" {
		ch.QueryType = "SOA"
	}
	if ch.Protocol == "" {
		ch.Protocol = defaultDNSProtocol
	}
	if ch.ExpectRcode == "" {
		ch.ExpectRcode = "NOERROR"
	}
	if ch.QueryName == "" {
		ch.QueryName = "."
	}
}

func defaultZone(z *Zone) {
	z.Origin = canonicalName(z.Origin)
	if z.TTL == 0 {
		z.TTL = DefaultZoneTTL
	}
	if z.Hostmaster == "" && z.Origin != "" {
		z.Hostmaster = defaultHostmaster + z.Origin
	}
	for i := range z.NS {
		z.NS[i] = canonicalName(z.NS[i])
	}
	z.Hostmaster = canonicalName(z.Hostmaster)
}

func defaultService(s *Service) {
	s.Name = canonicalName(s.Name)
	if s.Policy == "" {
		s.Policy = "weighted"
	}
	if s.TTL == 0 {
		s.TTL = DefaultServiceTTL
	}
	if s.MaxAnswers == 0 {
		s.MaxAnswers = 1
		if s.Policy == "multivalue" {
			s.MaxAnswers = DefaultMultiValue
		}
	}
	if s.Quorum == "" {
		s.Quorum = DefaultQuorum
	}
	if s.LatencyTolerance == "" {
		s.LatencyTolerance = DefaultTolerance
	}
	for i := range s.Endpoints {
		e := &s.Endpoints[i]
		if e.Check == "" {
			e.Check = s.Check
		}
		if e.CNAME != "" {
			e.CNAME = canonicalName(e.CNAME)
		}
	}
}

// writtenZeros records the keys where 0 has a meaning of its own that the
// defaults must not paper over: a TTL of 0 asks resolvers not to cache, and
// max_answers = 0 would answer nothing. Left out they get their defaults;
// written as 0 they reach validation, which rejects them.
type writtenZeros struct {
	Zones []struct {
		TTL *uint32 `toml:"ttl"`
	} `toml:"zones"`
	Services []struct {
		TTL        *uint32 `toml:"ttl"`
		MaxAnswers *int    `toml:"max_answers"`
	} `toml:"services"`
}

// keepWrittenZeros undoes applyDefaults for the keys the file set to 0.
func keepWrittenZeros(c *Config, data []byte) {
	var w writtenZeros
	if _, err := toml.Decode(string(data), &w); err != nil {
		return // unreachable: data already decoded into c
	}
	for i, z := range w.Zones {
		if i < len(c.Zones) && z.TTL != nil && *z.TTL == 0 {
			c.Zones[i].TTL = 0
		}
	}
	for i, s := range w.Services {
		if i >= len(c.Services) {
			break
		}
		if s.TTL != nil && *s.TTL == 0 {
			c.Services[i].TTL = 0
		}
		if s.MaxAnswers != nil && *s.MaxAnswers == 0 {
			c.Services[i].MaxAnswers = 0
		}
	}
}
