package resolver_test

import (
	"testing"

	"github.com/miekg/dns"

	"meridian/internal/dnstest"
)

// parentConfig serves example.test., which delegates gslb.example.test. to
// two servers of its own (with glue) and ext.example.test. to a server
// elsewhere (no glue to give).
var parentConfig = `
[node]
name   = "parent-1"
region = "us-east"

[regions.us-east]

[[zones]]
origin     = "example.test."
ttl        = 3600
ns         = ["ns.example.test."]
hostmaster = "hostmaster.example.test."
serial     = 7
records    = "example.zone"

[[services]]
name      = "api.example.test."
ttl       = 20
endpoints = [{ name = "use1", region = "us-east", address = "192.0.2.10" }]
`

var parentZone = `$ORIGIN example.test.
ns         IN A      192.0.2.1
www        IN A      192.0.2.80
gslb       IN NS     ns1.gslb
gslb       IN NS     NS2.gslb
gslb       IN DS     12345 13 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF
ns1.gslb   IN A      127.0.0.2
ns2.gslb   IN A      127.0.0.3
ns2.gslb   IN AAAA   ::1
alias      IN CNAME  www.gslb
ext    600 IN NS     ns.example.net.
`

const (
	gslbNS1  = "gslb.example.test. 3600 IN NS ns1.gslb.example.test."
	gslbNS2  = "gslb.example.test. 3600 IN NS NS2.gslb.example.test."
	glue1    = "ns1.gslb.example.test. 3600 IN A 127.0.0.2"
	glue2    = "ns2.gslb.example.test. 3600 IN A 127.0.0.3"
	glue2v6  = "ns2.gslb.example.test. 3600 IN AAAA ::1"
	parentDS = "gslb.example.test. 3600 IN DS 12345 13 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF"
	soa7     = "example.test. 3600 IN SOA ns.example.test. hostmaster.example.test. 7 3600 600 86400 3600"
)

// TestDelegation checks RFC 1034 §4.3.2 at a zone cut: every query at or
// below it gets a referral (AA clear, the NS set in authority, glue in
// additional), on the wire fast path (UDP, with and without EDNS) and the
// general path (TCP, ANY, 0x20 case), while the rest of the zone is
// answered authoritatively as before.
func TestDelegation(t *testing.T) {
	t.Parallel()
	_, addr := dnstest.StartServerFiles(t, parentConfig, map[string]string{"example.zone": parentZone})
	referral := func(name string, q *dns.Msg) dnsCase {
		return dnsCase{name: name, q: q, flags: "qr rd", ns: []string{gslbNS1, gslbNS2}, extra: []string{glue1, glue2, glue2v6}}
	}
	cases := []dnsCase{
		referral("NS at the cut", q("gslb.example.test.", dns.TypeNS)),
		referral("NS at the cut with EDNS", q("gslb.example.test.", dns.TypeNS, dnstest.EDNS(1232))),
		referral("SOA at the cut", q("gslb.example.test.", dns.TypeSOA)),
		referral("ANY at the cut", q("gslb.example.test.", dns.TypeANY)),
		referral("a name below the cut", q("www.gslb.example.test.", dns.TypeA, dnstest.RD(true))),
		referral("a deep name below the cut, mixed case", q("A.b.GsLb.Example.TEST.", dns.TypeAAAA, dnstest.EDNS(1232))),
		referral("glue is not answered authoritatively", q("ns1.gslb.example.test.", dns.TypeA)),
		{name: "DS at the cut is the parent's", q: q("gslb.example.test.", dns.TypeDS),
			flags: "qr aa rd", answer: []string{parentDS}},
		{name: "a cut without glue", q: q("x.ext.example.test.", dns.TypeA),
			flags: "qr rd", ns: []string{"ext.example.test. 600 IN NS ns.example.net."}},
		{name: "DS missing at a cut is NODATA", q: q("ext.example.test.", dns.TypeDS),
			flags: "qr aa rd", ns: []string{soa7}},
		{name: "a CNAME into the delegation is not chased", q: q("alias.example.test.", dns.TypeA),
			flags: "qr aa rd", answer: []string{"alias.example.test. 3600 IN CNAME www.gslb.example.test."}},
		{name: "the zone above the cut", q: q("www.example.test.", dns.TypeA),
			flags: "qr aa rd", answer: []string{"www.example.test. 3600 IN A 192.0.2.80"}},
		{name: "a service beside the cut", q: q("api.example.test.", dns.TypeA),
			flags: "qr aa rd", answer: []string{"api.example.test. 20 IN A 192.0.2.10"}},
		{name: "a missing name beside the cut", q: q("nope.example.test.", dns.TypeA),
			rcode: dns.RcodeNameError, flags: "qr aa rd", ns: []string{soa7}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t, addr)
		})
	}
}
