package config_test

import (
	"errors"
	"path/filepath"
	"slices"
	"testing"

	"meridian/config"
)

// invalidConfigs maps each testdata/invalid-*.toml file to the exact error
// Load returns for it: one `FILE: KEY: MESSAGE` line per problem. Each file
// holds one mistake (unless its name says otherwise), so a message that
// changes or a problem that disappears shows up here.
var invalidConfigs = []struct {
	file string
	want string
}{
	// Decoding: unknown keys, syntax and types.
	{"invalid-unknown-key.toml", `testdata/invalid-unknown-key.toml: colour: unknown key`},
	{"invalid-unknown-nested-key.toml", `testdata/invalid-unknown-nested-key.toml: services[0].polcy: unknown key`},
	{"invalid-unknown-endpoint-key.toml", `testdata/invalid-unknown-endpoint-key.toml: services[0].endpoints[0].wieght: unknown key`},
	{"invalid-unknown-key-in-array.toml", `testdata/invalid-unknown-key-in-array.toml: zones[1].ttl_seconds: unknown key
testdata/invalid-unknown-key-in-array.toml: services[1].endpoints[2].wieght: unknown key
testdata/invalid-unknown-key-in-array.toml: services[2].endpoints[1].wieght: unknown key
testdata/invalid-unknown-key-in-array.toml: services[2].polcy: unknown key
testdata/invalid-unknown-key-in-array.toml: checks.api.intervall: unknown key`},
	{"invalid-syntax.toml", `testdata/invalid-syntax.toml: dns.listen: line 10, column 1: expected a comma (',') or array terminator (']'), but got 'u'`},
	{"invalid-syntax-bare-value.toml", `testdata/invalid-syntax-bare-value.toml: node.region: line 3, column 10: expected value but found "us" instead`},
	{"invalid-type.toml", `testdata/invalid-type.toml: dns.udp_size: line 9: incompatible types: TOML value has type string; destination has type integer`},
	{"invalid-ttl-negative.toml", `testdata/invalid-ttl-negative.toml: services.ttl: line 13, column 8: -20 is out of range for uint32`},
	{"invalid-duration.toml", `testdata/invalid-duration.toml: checks.api.interval: line 11, column 13: "2 seconds" is not a duration such as "2s" or "500ms"`},

	// [node] and [regions].
	{"invalid-node-region-missing.toml", `testdata/invalid-node-region-missing.toml: node.region: is required`},
	{"invalid-node-region-unknown.toml", `testdata/invalid-node-region-unknown.toml: node.region: "eu-west" is not a region in [regions] (have ap-south, us-east)`},
	{"invalid-region-network.toml", `testdata/invalid-region-network.toml: regions.eu-west.networks[1]: "198.51.100.0/33" is not a network in CIDR form`},
	{"invalid-region-location.toml", `testdata/invalid-region-location.toml: regions.eu-west.location: longitude -186.26 is outside -180..180`},
	{"invalid-region-location-count.toml", `testdata/invalid-region-location-count.toml: regions.eu-west.location: must be [latitude, longitude]: 2 numbers, not 1`},

	// [dns], [http], [gossip], [skew].
	{"invalid-dns-listen-hostname.toml", `testdata/invalid-dns-listen-hostname.toml: dns.listen[1]: "localhost:5353": listen host must be an IP address`},
	{"invalid-dns-listen-port.toml", `testdata/invalid-dns-listen-port.toml: dns.listen[0]: "127.0.0.1" is not host:port`},
	{"invalid-udp-size.toml", `testdata/invalid-udp-size.toml: dns.udp_size: 100000 is outside 512..65535`},
	{"invalid-udp-sockets.toml", `testdata/invalid-udp-sockets.toml: dns.udp_sockets: 65 is outside 1..64`},
	{"invalid-rrl.toml", `testdata/invalid-rrl.toml: dns.rrl.rate: -1 is negative
testdata/invalid-rrl.toml: dns.rrl.slip: 11 is outside 0..10`},
	{"invalid-http-no-tls.toml", `testdata/invalid-http-no-tls.toml: http.listen: "0.0.0.0:9153" is not a loopback address: configure tls_cert and tls_key, or set insecure = true`},
	{"invalid-http-cert-no-key.toml", `testdata/invalid-http-cert-no-key.toml: http.tls_key: is required with tls_cert`},
	{"invalid-http-client-ca.toml", `testdata/invalid-http-client-ca.toml: http.client_ca: needs tls_cert and tls_key`},
	{"invalid-gossip-bind.toml", `testdata/invalid-gossip-bind.toml: gossip.bind: "gossip.example.test:7946": listen host must be an IP address`},
	{"invalid-gossip-no-keyring.toml", `testdata/invalid-gossip-no-keyring.toml: gossip.keyring: is required when gossip.bind "0.0.0.0:7946" is not a loopback address`},
	{"invalid-gossip-profile.toml", `testdata/invalid-gossip-profile.toml: gossip.profile: "internet" is not wan, lan or local`},
	{"invalid-gossip-transport.toml", `testdata/invalid-gossip-transport.toml: gossip.transport: "quic" is not udp or tls`},
	{"invalid-gossip-tls-files.toml", `testdata/invalid-gossip-tls-files.toml: gossip.cert: is required with transport "tls"
testdata/invalid-gossip-tls-files.toml: gossip.key: is required with transport "tls"`},
	{"invalid-gossip-join.toml", `testdata/invalid-gossip-join.toml: gossip.join[0]: "node2.example.test" is not host:port
testdata/invalid-gossip-join.toml: gossip.join[1]: "node3.example.test:0" has a bad port "0"`},
	{"invalid-gossip-stale-after.toml", `testdata/invalid-gossip-stale-after.toml: gossip.stale_after: -30s is not positive`},
	{"invalid-skew-top-k.toml", `testdata/invalid-skew-top-k.toml: skew.top_k: 10 is outside 16..10000000`},
	{"invalid-skew-exchange-interval.toml", `testdata/invalid-skew-exchange-interval.toml: skew.exchange_interval: 500ms is outside 1s..10m`},

	// [checks].
	{"invalid-check-type.toml", `testdata/invalid-check-type.toml: checks.api.type: "icmp" is not one of tcp, tls, https, grpc, postgres, dns`},
	{"invalid-check-port-missing.toml", `testdata/invalid-check-port-missing.toml: checks.db.port: is required`},
	{"invalid-check-port-range.toml", `testdata/invalid-check-port-range.toml: checks.api.port: 70000 is outside 1..65535`},
	{"invalid-check-interval.toml", `testdata/invalid-check-interval.toml: checks.api.interval: -2s is not positive`},
	{"invalid-check-timeout.toml", `testdata/invalid-check-timeout.toml: checks.api.timeout: 3s is longer than the interval 2s`},
	{"invalid-check-rise.toml", `testdata/invalid-check-rise.toml: checks.api.rise: -1 is below 1`},
	{"invalid-check-tls-files.toml", `testdata/invalid-check-tls-files.toml: checks.api.key: is required with cert`},
	{"invalid-check-expect-status.toml", `testdata/invalid-check-expect-status.toml: checks.api.expect_status[1]: 700 is not an HTTP status`},
	{"invalid-check-expect-body.toml", "testdata/invalid-check-expect-body.toml: checks.api.expect_body: bad regexp: error parsing regexp: missing closing ): `ok(`"},
	{"invalid-check-path.toml", `testdata/invalid-check-path.toml: checks.api.path: "healthz" must start with /`},
	{"invalid-tcp-check-https-keys.toml", `testdata/invalid-tcp-check-https-keys.toml: checks.db.path: applies only to https checks, not "tcp"
testdata/invalid-tcp-check-https-keys.toml: checks.db.expect_status: applies only to https checks, not "tcp"`},
	{"invalid-dns-check-query-type.toml", `testdata/invalid-dns-check-query-type.toml: checks.ns.query_type: "AAAAA" is not a DNS type`},
	{"invalid-dns-check-rcode.toml", `testdata/invalid-dns-check-rcode.toml: checks.ns.expect_rcode: "OK" is not a DNS rcode`},
	{"invalid-dns-check-protocol.toml", `testdata/invalid-dns-check-protocol.toml: checks.ns.protocol: "quic" is not udp or tcp`},

	// [[zones]] and their zone files.
	{"invalid-zone-origin-missing.toml", `testdata/invalid-zone-origin-missing.toml: zones[0].origin: is required`},
	{"invalid-duplicate-zone.toml", `testdata/invalid-duplicate-zone.toml: zones[1].origin: "gslb.example.test." is already the origin of zones[0]`},
	{"invalid-nested-zones.toml", `testdata/invalid-nested-zones.toml: zones[1].origin: "eu.gslb.example.test." lies inside zones[0] "gslb.example.test.": nested zones are not supported`},
	{"invalid-zone-no-ns.toml", `testdata/invalid-zone-no-ns.toml: zones[0].ns: needs at least one name server`},
	{"invalid-zone-ttl-zero.toml", `testdata/invalid-zone-ttl-zero.toml: zones[0].ttl: 0 is outside 1..86400`},
	{"invalid-zone-file-missing.toml", `testdata/invalid-zone-file-missing.toml: zones[0].records: open testdata/zones/missing.zone: no such file or directory`},
	{"invalid-zone-file-syntax.toml", `testdata/invalid-zone-file-syntax.toml: zones[0].records: testdata/zones/syntax.zone:4:22: bad A A: "192.0.2.300"`},
	{"invalid-zone-file-outside.toml", `testdata/invalid-zone-file-outside.toml: zones[0].records: testdata/zones/outside.zone: www.example.org. is outside the zone gslb.example.test.`},
	{"invalid-zone-file-soa-ns.toml", `testdata/invalid-zone-file-soa-ns.toml: zones[0].records: testdata/zones/soa-ns.zone: gslb.example.test. SOA: SOA and NS come from the [[zones]] table
testdata/invalid-zone-file-soa-ns.toml: zones[0].records: testdata/zones/soa-ns.zone: gslb.example.test. NS: SOA and NS come from the [[zones]] table`},
	{"invalid-zone-file-delegation.toml", `testdata/invalid-zone-file-delegation.toml: zones[0].records: testdata/zones/delegation.zone: api.gslb.example.test. TXT lies in the delegation of gslb.example.test.: only NS and DS at the cut and glue (A, AAAA) may be there
testdata/invalid-zone-file-delegation.toml: services[0].name: "api.gslb.example.test." lies in the delegation of gslb.example.test. in testdata/zones/delegation.zone: the zone refers it to other servers`},
	{"invalid-zone-file-class.toml", `testdata/invalid-zone-file-class.toml: zones[0].records: testdata/zones/class.zone: www.gslb.example.test.: only class IN is served`},

	// [[services]].
	{"invalid-service-name-missing.toml", `testdata/invalid-service-name-missing.toml: services[0].name: is required`},
	{"invalid-service-outside-zone.toml", `testdata/invalid-service-outside-zone.toml: services[0].name: "api.example.org." is not inside any zone`},
	{"invalid-duplicate-service.toml", `testdata/invalid-duplicate-service.toml: services[1].name: "api.gslb.example.test." is already the name of services[0]`},
	{"invalid-static-at-service.toml", `testdata/invalid-static-at-service.toml: services[0].name: "api.gslb.example.test." also has static records in testdata/zones/static.zone`},
	{"invalid-policy.toml", `testdata/invalid-policy.toml: services[0].policy: "roundrobin" is not one of latency, weighted, failover, multivalue`},
	{"invalid-ttl-zero.toml", `testdata/invalid-ttl-zero.toml: services[0].ttl: 0 is outside 1..86400`},
	{"invalid-ttl-too-long.toml", `testdata/invalid-ttl-too-long.toml: services[0].ttl: 86401 is outside 1..86400`},
	{"invalid-max-answers-zero.toml", `testdata/invalid-max-answers-zero.toml: services[0].max_answers: 0 is outside 1..64`},
	{"invalid-max-answers-too-many.toml", `testdata/invalid-max-answers-too-many.toml: services[0].max_answers: 65 is outside 1..64`},
	{"invalid-check-reference.toml", `testdata/invalid-check-reference.toml: services[0].check: "apl" is not a check in [checks]`},
	{"invalid-quorum.toml", `testdata/invalid-quorum.toml: services[0].quorum: "most" is not any, majority, all or a region count ≥ 1`},
	{"invalid-quorum-zero.toml", `testdata/invalid-quorum-zero.toml: services[0].quorum: "0" is not any, majority, all or a region count ≥ 1`},
	{"invalid-latency-tolerance.toml", `testdata/invalid-latency-tolerance.toml: services[0].latency_tolerance: "fast" is not a duration ("10ms") or a percentage ("20%")`},
	{"invalid-latency-tolerance-percent.toml", `testdata/invalid-latency-tolerance-percent.toml: services[0].latency_tolerance: "NaN%" is not a percentage between 0% and 1000%`},
	{"invalid-no-endpoints.toml", `testdata/invalid-no-endpoints.toml: services[0].endpoints: has 0 endpoints: a service needs 1..64`},
	{"invalid-too-many-endpoints.toml", `testdata/invalid-too-many-endpoints.toml: services[0].endpoints: has 65 endpoints: a service needs 1..64`},

	// Endpoints.
	{"invalid-endpoint-name-missing.toml", `testdata/invalid-endpoint-name-missing.toml: services[0].endpoints[0].name: is required`},
	{"invalid-duplicate-endpoint.toml", `testdata/invalid-duplicate-endpoint.toml: services[0].endpoints[1].name: "use1" is used twice in this service`},
	{"invalid-endpoint-region.toml", `testdata/invalid-endpoint-region.toml: services[0].endpoints[0].region: "eu-west" is not a region in [regions] (have us-east)`},
	{"invalid-endpoint-region-missing.toml", `testdata/invalid-endpoint-region-missing.toml: services[0].endpoints[0].region: is required`},
	{"invalid-endpoint-address.toml", `testdata/invalid-endpoint-address.toml: services[0].endpoints[0].address: "203.0.113.300" is not an IP address`},
	{"invalid-endpoint-no-target.toml", `testdata/invalid-endpoint-no-target.toml: services[0].endpoints[0]: needs an address or a cname`},
	{"invalid-endpoint-address-and-cname.toml", `testdata/invalid-endpoint-address-and-cname.toml: services[0].endpoints[0]: has both address and cname`},
	{"invalid-endpoint-check-reference.toml", `testdata/invalid-endpoint-check-reference.toml: services[0].endpoints[0].check: "web" is not a check in [checks]`},
	{"invalid-weights-zero.toml", `testdata/invalid-weights-zero.toml: services[0].endpoints: at least one endpoint needs a weight above 0`},
	{"invalid-weight-negative.toml", `testdata/invalid-weight-negative.toml: services[0].endpoints[1].weight: -1 is negative`},
	{"invalid-priority-negative.toml", `testdata/invalid-priority-negative.toml: services[0].endpoints[0].priority: -1 is negative`},
	{"invalid-capacity.toml", `testdata/invalid-capacity.toml: services[0].endpoints[0].capacity: NaN is not a finite number ≥ 0`},
	{"invalid-probe-address.toml", `testdata/invalid-probe-address.toml: services[0].endpoints[0].probe_address: "probe.example.net" is not an IP address`},
	{"invalid-mixed-cname-address.toml", `testdata/invalid-mixed-cname-address.toml: services[0].endpoints: mixes address and cname endpoints`},
	{"invalid-cname-max-answers.toml", `testdata/invalid-cname-max-answers.toml: services[0].max_answers: must be 1 for cname endpoints`},
	{"invalid-cname-apex.toml", `testdata/invalid-cname-apex.toml: services[0].name: a zone apex cannot be answered by CNAME`},
	{"invalid-cname-check-no-probe.toml", `testdata/invalid-cname-check-no-probe.toml: services[0].endpoints[0].probe_address: is required: a cname endpoint has no address for check "api" to probe`},

	// Several problems at once (see also TestAllProblemsAtOnce).
	{"invalid-several.toml", `testdata/invalid-several.toml: regions.us-east.networks[0]: "not-a-network" is not a network in CIDR form
testdata/invalid-several.toml: node.region: "us-west" is not a region in [regions] (have us-east)
testdata/invalid-several.toml: dns.udp_size: 100 is outside 512..65535
testdata/invalid-several.toml: checks.api.type: "smtp" is not one of tcp, tls, https, grpc, postgres, dns
testdata/invalid-several.toml: services[0].ttl: 90000 is outside 1..86400
testdata/invalid-several.toml: services[0].quorum: "most" is not any, majority, all or a region count ≥ 1
testdata/invalid-several.toml: services[0].endpoints[0].address: "192.0.2.256" is not an IP address`},
}

func TestInvalidConfigs(t *testing.T) {
	for _, tc := range invalidConfigs {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join("testdata", tc.file)
			c, err := config.Load(path)
			if err == nil {
				t.Fatalf("Load(%q) = %+v, nil; want error %q", path, c, tc.want)
			}
			if got := err.Error(); got != tc.want {
				t.Errorf("Load(%q) error:\n got: %s\nwant: %s", path, got, tc.want)
			}
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Errorf("Load(%q) error is %T, want *config.Error", path, err)
			} else if ce.File != path {
				t.Errorf("Error.File = %q, want %q", ce.File, path)
			}
		})
	}
}

// TestInvalidConfigsListed keeps the table and testdata in step: a new
// invalid-*.toml file needs its expected message.
func TestInvalidConfigsListed(t *testing.T) {
	files, err := filepath.Glob("testdata/invalid-*.toml")
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, tc := range invalidConfigs {
		if listed[tc.file] {
			t.Errorf("%s is listed twice in invalidConfigs", tc.file)
		}
		listed[tc.file] = true
	}
	for _, f := range files {
		if !listed[filepath.Base(f)] {
			t.Errorf("%s has no entry in invalidConfigs", f)
		}
		delete(listed, filepath.Base(f))
	}
	for f := range listed {
		t.Errorf("invalidConfigs lists %s, which is not in testdata", f)
	}
}

// TestAllProblemsAtOnce checks that validation does not stop at the first
// problem: an operator fixes a file in one pass.
func TestAllProblemsAtOnce(t *testing.T) {
	_, err := config.Load("testdata/invalid-several.toml")
	var ce *config.Error
	if !errors.As(err, &ce) {
		t.Fatalf("Load error = %v (%T), want *config.Error", err, err)
	}
	var keys []string
	for _, p := range ce.Problems {
		keys = append(keys, p.Key)
	}
	want := []string{
		"regions.us-east.networks[0]",
		"node.region",
		"dns.udp_size",
		"checks.api.type",
		"services[0].ttl",
		"services[0].quorum",
		"services[0].endpoints[0].address",
	}
	if !slices.Equal(keys, want) {
		t.Errorf("problem keys = %q, want %q", keys, want)
	}
	if len(ce.Problems) != 7 {
		t.Errorf("got %d problems, want 7", len(ce.Problems))
	}
}

// TestUnknownKeysWithOtherProblems checks that unknown keys do not hide
// validation problems, nor the other way round.
func TestUnknownKeysWithOtherProblems(t *testing.T) {
	const text = `
typo = 1

[node]
name   = "n1"
region = "nowhere"

[dns]
udp_sise = 1232
`
	_, err := config.Parse([]byte(text), "mem.toml")
	want := `mem.toml: typo: unknown key
mem.toml: dns.udp_sise: unknown key
mem.toml: node.region: "nowhere" is not a region in [regions] (have none)`
	if err == nil || err.Error() != want {
		t.Errorf("Parse error:\n got: %v\nwant: %s", err, want)
	}
}

// TestUnknownKeyCase: a key BurntSushi matches to a field regardless of
// case is decoded, not reported as unknown; a misspelt one is, with its
// index.
func TestUnknownKeyCase(t *testing.T) {
	const text = `
[node]
Name   = "n1"
region = "r1"

[regions.r1]
location = [0, 0]

[[zones]]
origin = "a.example.test."
ns     = ["ns1.a.example.test."]

[[services]]
Name = "api.a.example.test."
endpoints = [{ name = "e1", region = "r1", address = "192.0.2.1", Weight = 2, wieght = 3 }]
`
	cfg, err := config.Parse([]byte(text), "mem.toml")
	want := `mem.toml: services[0].endpoints[0].wieght: unknown key`
	if err == nil || err.Error() != want {
		t.Fatalf("Parse error:\n got: %v\nwant: %s (cfg %+v)", err, want, cfg)
	}
}
