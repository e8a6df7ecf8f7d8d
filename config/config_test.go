package config_test

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"meridian/config"
)

// parse parses text as if read from dir/config.toml and fails the test on error.
func parse(t *testing.T, text string) *config.Config {
	t.Helper()
	c, err := config.Parse([]byte(text), filepath.Join(t.TempDir(), "config.toml"))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return c
}

func TestLoadRepoConfig(t *testing.T) {
	c, err := config.Load("../config.toml")
	if err != nil {
		t.Fatalf("the repository's config.toml must load: %v", err)
	}
	if c.Node.Name != "local-1" || c.Node.Region != "us-east" {
		t.Errorf("node = %+v, want local-1 in us-east", c.Node)
	}
	if !slices.Equal(c.DNS.Listen, []string{"127.0.0.1:5353"}) || c.DNS.UDPSize != 1232 || !c.DNS.NSID {
		t.Errorf("dns = %+v, want listen 127.0.0.1:5353, udp_size 1232, nsid", c.DNS)
	}
	if c.HTTP.Listen != "127.0.0.1:9153" {
		t.Errorf("http.listen = %q, want 127.0.0.1:9153", c.HTTP.Listen)
	}
	if c.Gossip.Enabled {
		t.Error("gossip is enabled; the ready default runs alone")
	}
	for _, r := range []string{"us-east", "eu-west", "ap-south"} {
		if !c.Regions[r].HasLocation() {
			t.Errorf("regions.%s has no location", r)
		}
	}
	if p := c.Regions["us-east"].Prefixes; !slices.Equal(p, []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}) {
		t.Errorf("regions.us-east prefixes = %v, want [127.0.0.0/8]", p)
	}

	if len(c.Zones) != 1 {
		t.Fatalf("got %d zones, want 1", len(c.Zones))
	}
	z := c.Zones[0]
	if z.Origin != "gslb.example.test." || z.TTL != 30 || len(z.NS) != 2 {
		t.Errorf("zone = %s ttl %d ns %v, want gslb.example.test. ttl 30 with 2 ns", z.Origin, z.TTL, z.NS)
	}
	if want := filepath.Join("..", "zones", "gslb.example.test.zone"); z.Records != want {
		t.Errorf("zone records = %q, want %q (relative to config.toml)", z.Records, want)
	}
	if len(z.RRs) == 0 {
		t.Error("the zone file's static records were not read")
	}

	if len(c.Services) != 1 {
		t.Fatalf("got %d services, want 1", len(c.Services))
	}
	s := c.Services[0]
	if s.Name != "api.gslb.example.test." || s.Policy != "weighted" || s.TTL != 20 || s.MaxAnswers != 1 || s.Zone != 0 {
		t.Errorf("service = %s %s ttl %d max_answers %d zone %d", s.Name, s.Policy, s.TTL, s.MaxAnswers, s.Zone)
	}
	want := []struct {
		name, region, addr string
		weight             int
	}{
		{"use1", "us-east", "192.0.2.10", 100},
		{"euw1", "eu-west", "192.0.2.20", 100},
		{"aps1", "ap-south", "192.0.2.30", 50},
	}
	if len(s.Endpoints) != len(want) {
		t.Fatalf("got %d endpoints, want %d", len(s.Endpoints), len(want))
	}
	for i, w := range want {
		e := s.Endpoints[i]
		if e.Name != w.name || e.Region != w.region || e.Addr != netip.MustParseAddr(w.addr) || e.EffectiveWeight() != w.weight {
			t.Errorf("endpoint %d = %s %s %v weight %d, want %+v", i, e.Name, e.Region, e.Addr, e.EffectiveWeight(), w)
		}
	}
	if len(c.Warnings) != 0 {
		t.Errorf("the ready default has warnings: %v", c.Warnings)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := config.Load("testdata/no-such-file.toml")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load of a missing file: %v, want fs.ErrNotExist", err)
	}
}

func TestDefaults(t *testing.T) {
	c := parse(t, `
[node]
name   = "n1"
region = "us-east"

[regions.us-east]

[checks.web]
type = "https"

[checks.ns]
type = "dns"

[[zones]]
origin = "GSLB.Example.TEST"
ns     = ["NS1.gslb.example.test"]

[[services]]
name  = "Api.GSLB.example.test"
check = "web"
endpoints = [
  { name = "a", region = "us-east", address = "192.0.2.1" },
  { name = "b", region = "us-east", address = "2001:db8::1", check = "ns" },
]

[[services]]
name   = "all.gslb.example.test."
policy = "multivalue"
endpoints = [{ name = "a", region = "us-east", address = "::ffff:192.0.2.1" }]

[[services]]
name  = "www.gslb.example.test."
check = "web"
endpoints = [{ name = "cdn", region = "us-east", cname = "Edge.CDN.example.NET", probe_address = "192.0.2.9" }]
`)
	if !slices.Equal(c.DNS.Listen, []string{config.DefaultDNSListen}) || c.DNS.Listen[0] != "127.0.0.1:5353" {
		t.Errorf("dns.listen = %v, want [127.0.0.1:5353]", c.DNS.Listen)
	}
	if c.DNS.UDPSize != 1232 {
		t.Errorf("dns.udp_size = %d, want 1232", c.DNS.UDPSize)
	}
	if c.DNS.UDPSockets < 1 || c.DNS.UDPSockets > 8 {
		t.Errorf("dns.udp_sockets = %d, want 1..8", c.DNS.UDPSockets)
	}
	if c.DNS.RRL != (config.RRL{Rate: 0, Slip: 2}) {
		t.Errorf("dns.rrl = %+v, want off with slip 2", c.DNS.RRL)
	}
	if c.HTTP.Listen != "127.0.0.1:9153" {
		t.Errorf("http.listen = %q, want 127.0.0.1:9153", c.HTTP.Listen)
	}
	if c.Gossip.Enabled {
		t.Error("gossip enabled without a [gossip] table")
	}
	if c.Skew.TopK != 100000 {
		t.Errorf("skew.top_k = %d, want 100000", c.Skew.TopK)
	}

	web := c.Checks["web"]
	if web.Port != 443 || web.Path != "/" || !slices.Equal(web.ExpectStatus, []int{200}) {
		t.Errorf("https check = port %d path %q expect_status %v, want 443 / [200]", web.Port, web.Path, web.ExpectStatus)
	}
	if web.Rise != 2 || web.Fall != 2 || web.Interval.Duration != 2*time.Second || web.Timeout.Duration != time.Second {
		t.Errorf("check rise %d fall %d interval %s timeout %s, want 2 2 2s 1s", web.Rise, web.Fall, web.Interval, web.Timeout)
	}
	ns := c.Checks["ns"]
	if ns.Port != 53 || ns.QueryName != "." || ns.QueryType != "SOA" || ns.Protocol != "udp" || ns.ExpectRcode != "NOERROR" {
		t.Errorf("dns check = %+v, want port 53, . SOA over udp expecting NOERROR", ns)
	}
	if ns.Path != "" || ns.ExpectStatus != nil {
		t.Errorf("dns check got https defaults: path %q expect_status %v", ns.Path, ns.ExpectStatus)
	}

	z := c.Zones[0]
	if z.Origin != "gslb.example.test." || z.TTL != 30 || z.Hostmaster != "hostmaster.gslb.example.test." {
		t.Errorf("zone = %s ttl %d hostmaster %s, want gslb.example.test. 30 hostmaster.gslb.example.test.", z.Origin, z.TTL, z.Hostmaster)
	}
	if !slices.Equal(z.NS, []string{"ns1.gslb.example.test."}) {
		t.Errorf("zone ns = %v, want lower-cased and fully qualified", z.NS)
	}

	api := c.Services[0]
	if api.Name != "api.gslb.example.test." || api.Zone != 0 {
		t.Errorf("service name %q zone %d, want api.gslb.example.test. in zone 0", api.Name, api.Zone)
	}
	if api.Policy != "weighted" || api.TTL != 30 || api.MaxAnswers != 1 || !api.FailsOpen() {
		t.Errorf("service = policy %s ttl %d max_answers %d fails open %v, want weighted 30 1 true", api.Policy, api.TTL, api.MaxAnswers, api.FailsOpen())
	}
	if api.Quorum != "majority" || api.QuorumRule != (config.Quorum{Kind: config.QuorumMajority}) {
		t.Errorf("quorum = %q %+v, want majority", api.Quorum, api.QuorumRule)
	}
	if api.LatencyTolerance != "10ms" || api.Tolerance != (config.Tolerance{Abs: 10 * time.Millisecond}) {
		t.Errorf("latency_tolerance = %q %+v, want 10ms", api.LatencyTolerance, api.Tolerance)
	}
	a, b := api.Endpoints[0], api.Endpoints[1]
	if a.Weight != nil || a.EffectiveWeight() != 1 || a.EffectiveCapacity() != 1 {
		t.Errorf("endpoint weight %d capacity %g, want 1 and 1", a.EffectiveWeight(), a.EffectiveCapacity())
	}
	if a.Check != "web" || b.Check != "ns" {
		t.Errorf("endpoint checks = %q, %q; want web inherited from the service and ns kept", a.Check, b.Check)
	}
	if a.Addr != netip.MustParseAddr("192.0.2.1") || b.Addr != netip.MustParseAddr("2001:db8::1") {
		t.Errorf("endpoint addresses = %v, %v", a.Addr, b.Addr)
	}

	all := c.Services[1]
	if all.MaxAnswers != 8 {
		t.Errorf("multivalue max_answers = %d, want 8", all.MaxAnswers)
	}
	if got := all.Endpoints[0].Addr; got != netip.MustParseAddr("192.0.2.1") {
		t.Errorf("IPv4-mapped address parsed as %v, want 192.0.2.1", got)
	}
	if cn := c.Services[2].Endpoints[0]; cn.CNAME != "edge.cdn.example.net." || cn.Addr.IsValid() {
		t.Errorf("cname endpoint = %q addr %v, want edge.cdn.example.net. and no address", cn.CNAME, cn.Addr)
	}
}

func TestDefaultNodeName(t *testing.T) {
	host, err := os.Hostname()
	if err != nil || host == "" {
		t.Skip("no host name")
	}
	c := parse(t, "[node]\nregion = \"r\"\n[regions.r]\n")
	if c.Node.Name != host {
		t.Errorf("node.name = %q, want the host name %q", c.Node.Name, host)
	}
}

// TestExplicitValues checks that values the file gives are not replaced by defaults.
func TestExplicitValues(t *testing.T) {
	c := parse(t, `
[node]
name   = "n1"
region = "r"

[regions.r]

[checks.api]
type     = "https"
port     = 8443
interval = "500ms"
rise     = 1
fall     = 3

[[zones]]
origin     = "example.test."
ttl        = 300
ns         = ["ns1.example.test."]
hostmaster = "Ops.Example.TEST"

[[services]]
name        = "api.example.test."
policy      = "latency"
ttl         = 5
max_answers = 2
quorum      = "2"
fail_open   = false
latency_tolerance = "25%"
endpoints = [{ name = "a", region = "r", address = "192.0.2.1", weight = 0, capacity = 3.5 },
             { name = "b", region = "r", address = "192.0.2.2", weight = 7 }]
`)
	ch := c.Checks["api"]
	if ch.Port != 8443 || ch.Interval.Duration != 500*time.Millisecond || ch.Timeout.Duration != 500*time.Millisecond || ch.Rise != 1 || ch.Fall != 3 {
		t.Errorf("check = port %d interval %s timeout %s rise %d fall %d; want 8443 500ms 500ms (at most the interval) 1 3",
			ch.Port, ch.Interval, ch.Timeout, ch.Rise, ch.Fall)
	}
	if z := c.Zones[0]; z.TTL != 300 || z.Hostmaster != "ops.example.test." {
		t.Errorf("zone ttl %d hostmaster %q, want 300 ops.example.test.", z.TTL, z.Hostmaster)
	}
	s := c.Services[0]
	if s.TTL != 5 || s.MaxAnswers != 2 || s.FailsOpen() {
		t.Errorf("service ttl %d max_answers %d fails open %v, want 5 2 false", s.TTL, s.MaxAnswers, s.FailsOpen())
	}
	if s.QuorumRule != (config.Quorum{Kind: config.QuorumCount, N: 2}) || s.Tolerance != (config.Tolerance{Fraction: 0.25}) {
		t.Errorf("quorum %+v tolerance %+v, want 2 regions and 25%%", s.QuorumRule, s.Tolerance)
	}
	if a := s.Endpoints[0]; a.EffectiveWeight() != 0 || a.EffectiveCapacity() != 3.5 {
		t.Errorf("endpoint weight %d capacity %g, want an explicit 0 kept and 3.5", a.EffectiveWeight(), a.EffectiveCapacity())
	}
	if b := s.Endpoints[1]; b.EffectiveCapacity() != 7 {
		t.Errorf("capacity = %g, want the weight 7", b.EffectiveCapacity())
	}
}

func TestRelativePaths(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "zones"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "zones", "example.test.zone"), []byte("www IN A 192.0.2.80\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	abs := filepath.Join(t.TempDir(), "ca.pem")
	text := `
[node]
name   = "n1"
region = "r"

[regions.r]

[http]
listen    = "192.0.2.1:9153"
tls_cert  = "certs/admin.pem"
tls_key   = "certs/admin.key"
client_ca = "` + abs + `"

[gossip]
bind    = "192.0.2.1:7946"
keyring = "secrets/keyring"

[tls]
ca   = "certs/ca.pem"
cert = "certs/probe.pem"
key  = "certs/probe.key"

[geoip]
database = "GeoLite2-City.mmdb"

[checks.api]
type = "tls"
ca   = "../shared/ca.pem"

[[zones]]
origin  = "example.test."
ns      = ["ns1.example.test."]
records = "zones/example.test.zone"
`
	path := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	in := func(p string) string { return filepath.Join(dir, p) }
	for _, tc := range []struct{ key, got, want string }{
		{"http.tls_cert", c.HTTP.TLSCert, in("certs/admin.pem")},
		{"http.tls_key", c.HTTP.TLSKey, in("certs/admin.key")},
		{"http.client_ca", c.HTTP.ClientCA, abs},
		{"gossip.keyring", c.Gossip.Keyring, in("secrets/keyring")},
		{"tls.ca", c.TLS.CA, in("certs/ca.pem")},
		{"tls.cert", c.TLS.Cert, in("certs/probe.pem")},
		{"tls.key", c.TLS.Key, in("certs/probe.key")},
		{"geoip.database", c.GeoIP.Database, in("GeoLite2-City.mmdb")},
		{"checks.api.ca", c.Checks["api"].CA, filepath.Join(filepath.Dir(dir), "shared", "ca.pem")},
		{"zones[0].records", c.Zones[0].Records, in("zones/example.test.zone")},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %q, want %q", tc.key, tc.got, tc.want)
		}
	}
	if len(c.Zones[0].RRs) != 1 || c.Zones[0].RRs[0].Header().Name != "www.example.test." {
		t.Errorf("zone records = %v, want www.example.test. A", c.Zones[0].RRs)
	}
}

func TestWarnings(t *testing.T) {
	c := parse(t, `
[node]
name   = "n1"
region = "r"

[regions.r]
networks = ["198.51.100.7/24"]

[gossip]
bind = "127.0.0.1:7946"

[checks.api]
type = "tls"
insecure_skip_verify = true

[[zones]]
origin = "example.test."
ns     = ["ns1.example.test."]

[[services]]
name = "api.example.test."
ttl  = 300
endpoints = [{ name = "a", region = "r", address = "192.0.2.1" }]
`)
	want := []config.Problem{
		{Key: "regions.r.networks[0]", Msg: `"198.51.100.7/24" has host bits set; using 198.51.100.0/24`},
		{Key: "gossip.keyring", Msg: "gossip is not encrypted (allowed only because it is bound to loopback)"},
		{Key: "checks.api.insecure_skip_verify", Msg: "server certificates are not verified"},
		{Key: "services[0].ttl", Msg: "300 s is long for a steered name: resolvers keep a failed endpoint that long"},
	}
	if !slices.Equal(c.Warnings, want) {
		t.Errorf("warnings:\n got: %q\nwant: %q", c.Warnings, want)
	}
	if p := c.Regions["r"].Prefixes; !slices.Equal(p, []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}) {
		t.Errorf("prefixes = %v, want the network masked", p)
	}
}

func TestNoWarningsForSafeConfig(t *testing.T) {
	c := parse(t, `
[node]
name   = "n1"
region = "r"

[regions.r]

[gossip]
bind    = "192.0.2.1:7946"
keyring = "keyring"

[[zones]]
origin = "example.test."
ns     = ["ns1.example.test."]

[[services]]
name = "api.example.test."
ttl  = 60
endpoints = [{ name = "a", region = "r", address = "192.0.2.1" }]
`)
	if len(c.Warnings) != 0 {
		t.Errorf("warnings = %q, want none", c.Warnings)
	}
}

// TestInsecureHTTPWarning: http.insecure is allowed to serve the admin API
// in plain HTTP off loopback, with a warning; on loopback, or over TLS, it
// warns about nothing.
func TestInsecureHTTPWarning(t *testing.T) {
	const base = `
[node]
name   = "n1"
region = "r"

[regions.r]

[[zones]]
origin = "example.test."
ns     = ["ns1.example.test."]

[[services]]
name = "api.example.test."
endpoints = [{ name = "a", region = "r", address = "192.0.2.1" }]
`
	want := []config.Problem{{Key: "http.insecure",
		Msg: `the admin API listens on "0.0.0.0:9153" in plain HTTP: anyone who reaches it can read the status and trigger reloads`}}
	if c := parse(t, base+"[http]\nlisten = \"0.0.0.0:9153\"\ninsecure = true\n"); !slices.Equal(c.Warnings, want) {
		t.Errorf("off loopback: warnings %q, want %q", c.Warnings, want)
	}
	for _, http := range []string{
		"[http]\nlisten = \"127.0.0.1:9153\"\ninsecure = true\n",
		"[http]\nlisten = \"0.0.0.0:9153\"\ninsecure = true\ntls_cert = \"c.pem\"\ntls_key = \"c.key\"\n",
	} {
		if c := parse(t, base+http); len(c.Warnings) != 0 {
			t.Errorf("%q: warnings %q, want none", http, c.Warnings)
		}
	}
}

func TestErrorFormat(t *testing.T) {
	e := &config.Error{File: "c.toml", Problems: []config.Problem{
		{Key: "dns.udp_size", Msg: "100 is outside 512..65535"},
		{Msg: "no key"},
	}}
	want := "c.toml: dns.udp_size: 100 is outside 512..65535\nc.toml: no key"
	if e.Error() != want {
		t.Errorf("Error() = %q, want %q", e.Error(), want)
	}
}

// TestRRLNotEnforcedWarning: dns.rrl is parsed and validated but not
// enforced yet, so a configuration that asks for a rate is told so rather
// than believing it is protected; rate 0 (off, the default) says nothing.
func TestRRLNotEnforcedWarning(t *testing.T) {
	const base = `
[node]
name   = "n1"
region = "r"

[regions.r]

[[zones]]
origin = "example.test."
ns     = ["ns1.example.test."]

[[services]]
name = "api.example.test."
endpoints = [{ name = "a", region = "r", address = "192.0.2.1" }]
`
	want := []config.Problem{{Key: "dns.rrl.rate", Msg: "response rate limiting is not enforced yet: responses are not limited"}}
	if c := parse(t, base+"[dns.rrl]\nrate = 100\n"); !slices.Equal(c.Warnings, want) {
		t.Errorf("rate 100: warnings %q, want %q", c.Warnings, want)
	}
	if c := parse(t, base+"[dns.rrl]\nrate = 0\n"); len(c.Warnings) != 0 {
		t.Errorf("rate 0: warnings %q, want none", c.Warnings)
	}
}
