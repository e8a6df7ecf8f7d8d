package config

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// maxSteeredTTL is the TTL above which a steered name reacts too slowly to
// failover to be sensible; it is a warning, not an error.
const maxSteeredTTL = 60

// validator collects every problem of one configuration.
type validator struct {
	cfg   *Config
	dir   string
	errs  []Problem
	warns []Problem
}

func (v *validator) errorf(key, format string, args ...any) {
	v.errs = append(v.errs, Problem{Key: key, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) warnf(key, format string, args ...any) {
	v.warns = append(v.warns, Problem{Key: key, Msg: fmt.Sprintf(format, args...)})
}

// path resolves a file name relative to the configuration file's folder.
func (v *validator) path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(v.dir, p)
}

func (v *validator) validate() {
	v.regions()
	v.node()
	v.dns()
	v.http()
	v.gossip()
	v.tlsFiles("tls", &v.cfg.TLS)
	v.cfg.GeoIP.Database = v.path(v.cfg.GeoIP.Database)
	v.checks()
	v.skew()
	v.zones()
	v.services()
}

func (v *validator) node() {
	n := v.cfg.Node
	switch {
	case n.Name == "":
		v.errorf("node.name", "is empty and the host name is unknown")
	case n.Region == "":
		v.errorf("node.region", "is required")
	case !v.hasRegion(n.Region):
		v.errorf("node.region", "%q is not a region in [regions] (have %s)", n.Region, v.regionNames())
	}
}

func (v *validator) hasRegion(name string) bool {
	_, ok := v.cfg.Regions[name]
	return ok
}

func (v *validator) regionNames() string {
	names := sortedKeys(v.cfg.Regions)
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

func (v *validator) regions() {
	for _, name := range sortedKeys(v.cfg.Regions) {
		r := v.cfg.Regions[name]
		key := "regions." + name
		v.location(key+".location", r.Location)
		r.Prefixes = nil
		for i, n := range r.Networks {
			p, err := netip.ParsePrefix(n)
			if err != nil {
				v.errorf(fmt.Sprintf("%s.networks[%d]", key, i), "%q is not a network in CIDR form", n)
				continue
			}
			if p.Masked() != p {
				v.warnf(fmt.Sprintf("%s.networks[%d]", key, i), "%q has host bits set; using %s", n, p.Masked())
			}
			r.Prefixes = append(r.Prefixes, p.Masked())
		}
		v.cfg.Regions[name] = r
	}
}

func (v *validator) location(key string, loc []float64) {
	switch {
	case len(loc) == 0:
	case len(loc) != 2:
		v.errorf(key, "must be [latitude, longitude]: 2 numbers, not %d", len(loc))
	case !(loc[0] >= -90 && loc[0] <= 90): // also rejects NaN
		v.errorf(key, "latitude %g is outside -90..90", loc[0])
	case !(loc[1] >= -180 && loc[1] <= 180):
		v.errorf(key, "longitude %g is outside -180..180", loc[1])
	}
}

func (v *validator) dns() {
	d := v.cfg.DNS
	for i, l := range d.Listen {
		v.hostPort(fmt.Sprintf("dns.listen[%d]", i), l, true)
	}
	if d.UDPSize < 512 || d.UDPSize > 65535 {
		v.errorf("dns.udp_size", "%d is outside 512..65535", d.UDPSize)
	}
	if d.UDPSockets < 1 || d.UDPSockets > 64 {
		v.errorf("dns.udp_sockets", "%d is outside 1..64", d.UDPSockets)
	}
	if d.RRL.Rate < 0 {
		v.errorf("dns.rrl.rate", "%d is negative", d.RRL.Rate)
	}
	if d.RRL.Rate > 0 {
		v.warnf("dns.rrl.rate", "response rate limiting is not enforced yet: responses are not limited")
	}
	if d.RRL.Slip < 0 || d.RRL.Slip > 10 {
		v.errorf("dns.rrl.slip", "%d is outside 0..10", d.RRL.Slip)
	}
}

// hostPort checks a "host:port" listen or join address. A listen address
// must have an IP literal host (or none, meaning every address).
func (v *validator) hostPort(key, addr string, listen bool) (host string, ok bool) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		v.errorf(key, "%q is not host:port", addr)
		return "", false
	}
	if port, err := net.LookupPort("tcp", p); err != nil || port == 0 && !listen {
		v.errorf(key, "%q has a bad port %q", addr, p)
		return "", false
	}
	if listen && h != "" {
		if _, err := netip.ParseAddr(h); err != nil {
			v.errorf(key, "%q: listen host must be an IP address", addr)
			return "", false
		}
	}
	return h, true
}

// isLoopback reports whether a listen host only reaches this machine.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

func (v *validator) http() {
	h := &v.cfg.HTTP
	host, ok := v.hostPort("http.listen", h.Listen, true)
	h.TLSCert, h.TLSKey, h.ClientCA = v.path(h.TLSCert), v.path(h.TLSKey), v.path(h.ClientCA)
	v.pair("http", "tls_cert", h.TLSCert, "tls_key", h.TLSKey)
	if h.ClientCA != "" && h.TLSCert == "" {
		v.errorf("http.client_ca", "needs tls_cert and tls_key")
	}
	switch {
	case !ok || isLoopback(host) || h.TLSCert != "":
	case h.Insecure:
		v.warnf("http.insecure", "the admin API listens on %q in plain HTTP: anyone who reaches it can read the status and trigger reloads", h.Listen)
	default:
		v.errorf("http.listen", "%q is not a loopback address: configure tls_cert and tls_key, or set insecure = true", h.Listen)
	}
}

func (v *validator) gossip() {
	g := &v.cfg.Gossip
	if !g.Enabled {
		return
	}
	host, ok := v.hostPort("gossip.bind", g.Bind, true)
	for i, j := range g.Join {
		v.hostPort(fmt.Sprintf("gossip.join[%d]", i), j, false)
	}
	if g.Advertise != "" {
		v.hostPort("gossip.advertise", g.Advertise, true)
	}
	if !slices.Contains([]string{"wan", "lan", "local"}, g.Profile) {
		v.errorf("gossip.profile", "%q is not wan, lan or local", g.Profile)
	}
	if g.StaleAfter.Duration <= 0 {
		v.errorf("gossip.stale_after", "%s is not positive", g.StaleAfter)
	}
	g.Keyring = v.path(g.Keyring)
	v.tlsFiles("gossip", &g.TLSFiles)
	v.gossipSecurity(g, ok, ok && isLoopback(host))
}

// gossipSecurity requires encryption off loopback. bindOK is false when
// gossip.bind was already reported, so its host says nothing.
func (v *validator) gossipSecurity(g *Gossip, bindOK, loopback bool) {
	switch g.Transport {
	case "udp":
		if g.Keyring == "" && bindOK && !loopback {
			v.errorf("gossip.keyring", "is required when gossip.bind %q is not a loopback address", g.Bind)
		}
		if g.Keyring == "" && loopback {
			v.warnf("gossip.keyring", "gossip is not encrypted (allowed only because it is bound to loopback)")
		}
	case "tls":
		for _, f := range []struct{ key, val string }{{"ca", g.CA}, {"cert", g.Cert}, {"key", g.Key}} {
			if f.val == "" {
				v.errorf("gossip."+f.key, "is required with transport \"tls\"")
			}
		}
	default:
		v.errorf("gossip.transport", "%q is not udp or tls", g.Transport)
	}
}

func (v *validator) tlsFiles(key string, f *TLSFiles) {
	f.CA, f.Cert, f.Key = v.path(f.CA), v.path(f.Cert), v.path(f.Key)
	v.pair(key, "cert", f.Cert, "key", f.Key)
}

// pair reports the missing half of a certificate and its key.
func (v *validator) pair(key, certKey, cert, keyKey, priv string) {
	switch {
	case cert != "" && priv == "":
		v.errorf(key+"."+keyKey, "is required with %s", certKey)
	case cert == "" && priv != "":
		v.errorf(key+"."+certKey, "is required with %s", keyKey)
	}
}

func (v *validator) skew() {
	if v.cfg.Skew.TopK < 16 || v.cfg.Skew.TopK > 10_000_000 {
		v.errorf("skew.top_k", "%d is outside 16..10000000", v.cfg.Skew.TopK)
	}
	if d := v.cfg.Skew.ExchangeInterval.Duration; d < time.Second || d > 10*time.Minute {
		v.errorf("skew.exchange_interval", "%s is outside 1s..10m", d)
	}
}

func (v *validator) checks() {
	for _, n := range sortedKeys(v.cfg.Checks) {
		ch := v.cfg.Checks[n]
		v.check("checks."+n, &ch)
		v.cfg.Checks[n] = ch
	}
}

func (v *validator) check(key string, ch *Check) {
	if !slices.Contains(CheckTypes, ch.Type) {
		v.errorf(key+".type", "%q is not one of %s", ch.Type, strings.Join(CheckTypes, ", "))
	}
	switch {
	case ch.Port == 0: // only types without a default port get here
		v.errorf(key+".port", "is required")
	case ch.Port < 1 || ch.Port > 65535:
		v.errorf(key+".port", "%d is outside 1..65535", ch.Port)
	}
	if ch.Interval.Duration <= 0 {
		v.errorf(key+".interval", "%s is not positive", ch.Interval)
	}
	switch {
	case ch.Timeout.Duration <= 0:
		v.errorf(key+".timeout", "%s is not positive", ch.Timeout)
	case ch.Interval.Duration > 0 && ch.Timeout.Duration > ch.Interval.Duration:
		v.errorf(key+".timeout", "%s is longer than the interval %s", ch.Timeout, ch.Interval)
	}
	if ch.Rise < 1 {
		v.errorf(key+".rise", "%d is below 1", ch.Rise)
	}
	if ch.Fall < 1 {
		v.errorf(key+".fall", "%d is below 1", ch.Fall)
	}
	v.tlsFiles(key, &ch.TLSFiles)
	if ch.InsecureSkipVerify {
		v.warnf(key+".insecure_skip_verify", "server certificates are not verified")
	}
	v.httpCheck(key, ch)
	if ch.Type == "dns" {
		v.dnsCheck(key, ch)
	}
}

func (v *validator) httpCheck(key string, ch *Check) {
	for i, s := range ch.ExpectStatus {
		if s < 100 || s > 599 {
			v.errorf(fmt.Sprintf("%s.expect_status[%d]", key, i), "%d is not an HTTP status", s)
		}
	}
	if _, err := regexp.Compile(ch.ExpectBody); err != nil {
		v.errorf(key+".expect_body", "bad regexp: %v", err)
	}
	if ch.Type != "https" {
		set := map[string]bool{"path": ch.Path != "", "host": ch.Host != "", "headers": len(ch.Headers) > 0,
			"expect_status": len(ch.ExpectStatus) > 0, "expect_body": ch.ExpectBody != ""}
		for _, k := range []string{"path", "host", "headers", "expect_status", "expect_body"} {
			if set[k] {
				v.errorf(key+"."+k, "applies only to https checks, not %q", ch.Type)
			}
		}
	}
	if ch.Path != "" && !strings.HasPrefix(ch.Path, "/") {
		v.errorf(key+".path", "%q must start with /", ch.Path)
	}
}

func (v *validator) dnsCheck(key string, ch *Check) {
	if _, ok := dns.StringToType[strings.ToUpper(ch.QueryType)]; !ok {
		v.errorf(key+".query_type", "%q is not a DNS type", ch.QueryType)
	}
	if _, ok := dns.StringToRcode[strings.ToUpper(ch.ExpectRcode)]; !ok {
		v.errorf(key+".expect_rcode", "%q is not a DNS rcode", ch.ExpectRcode)
	}
	if ch.Protocol != "udp" && ch.Protocol != "tcp" {
		v.errorf(key+".protocol", "%q is not udp or tcp", ch.Protocol)
	}
	if _, ok := dns.IsDomainName(ch.QueryName); !ok {
		v.errorf(key+".query_name", "%q is not a domain name", ch.QueryName)
	}
}

// domainName checks that s is a valid fully qualified name.
func (v *validator) domainName(key, s string) bool {
	if s == "" {
		v.errorf(key, "is required")
		return false
	}
	if _, ok := dns.IsDomainName(s); !ok {
		v.errorf(key, "%q is not a domain name", s)
		return false
	}
	return true
}

func (v *validator) ttl(key string, ttl uint32) {
	if ttl < 1 || ttl > 86400 {
		v.errorf(key, "%d is outside 1..86400", ttl)
	}
}

// sortedKeys returns a map's keys in order, so problems are reported in the
// same order on every run.
func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
