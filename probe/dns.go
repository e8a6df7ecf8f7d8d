package probe

import (
	"context"
	"fmt"

	"github.com/miekg/dns"
)

// probeDNS sends query_name/query_type over udp or tcp: up when an answer
// comes back with expect_rcode. Over UDP, which has no connect, RTT is the
// query's round trip.
func probeDNS(ctx context.Context, t Target, s *Spec) Result {
	r := begin()
	q := s.query
	conn, err := connect(ctx, q.net, t, &r)
	if err != nil {
		return r.fail(err)
	}
	defer conn.Close()
	msg := new(dns.Msg).SetQuestion(q.name, q.qtype)
	client := &dns.Client{Net: q.net}
	resp, rtt, err := client.ExchangeWithConnContext(ctx, msg, &dns.Conn{Conn: conn})
	if err != nil {
		return r.fail(during(stageQuery, ReasonDNSError, err))
	}
	r.Phases.FirstByte = rtt
	if q.net == "udp" {
		r.RTT = rtt
	}
	if resp.Rcode != q.rcode {
		return r.down(ReasonDNSRcode, fmt.Sprintf("dns rcode %s, want %s", rcodeName(resp.Rcode), rcodeName(q.rcode)))
	}
	return r.up()
}

// rcodeName names an rcode, e.g. "SERVFAIL".
func rcodeName(rc int) string {
	if s, ok := dns.RcodeToString[rc]; ok {
		return s
	}
	return fmt.Sprintf("RCODE%d", rc)
}
