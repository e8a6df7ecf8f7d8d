package delegation

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"meridian/internal/dnstest"
)

// parentTOML serves example.test. with the records of the zone file "zone".
const parentTOML = `
[node]
name   = "parent"
region = "lab"
[regions.lab]
[[zones]]
origin  = "example.test."
ttl     = 3600
serial  = 1
ns      = ["ns.example.test."]
records = "zone"
`

// startParent runs a meridian node serving example.test. with records on
// 127.0.0.1:0 and returns its address.
func startParent(t *testing.T, records string) string {
	t.Helper()
	_, addr := dnstest.StartServerFiles(t, parentTOML, map[string]string{"zone": "$ORIGIN example.test.\n" + records})
	return addr
}

// child is an authoritative server for gslb.example.test. written with
// miekg/dns, on UDP and TCP at one address, that can truncate every UDP
// answer; it counts the queries it gets by transport.
type child struct {
	truncateUDP bool
	notAA       bool // answer with AA clear, as a resolver would
	rcode       int  // answer every query with this rcode, if not 0
	udp, tcp    atomic.Int32
}

func (c *child) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = !c.notAA
	if c.rcode != 0 {
		m.Rcode = c.rcode
		w.WriteMsg(m)
		return
	}
	if w.LocalAddr().Network() == "udp" {
		c.udp.Add(1)
		if c.truncateUDP {
			m.Truncated = true
			w.WriteMsg(m)
			return
		}
	} else {
		c.tcp.Add(1)
	}
	switch q := req.Question[0]; {
	case !strings.EqualFold(q.Name, "gslb.example.test."):
		m.Rcode = dns.RcodeNameError
	case q.Qtype == dns.TypeSOA:
		m.Answer = append(m.Answer, mustRR("gslb.example.test. 60 IN SOA ns1.gslb.example.test. h.example.test. 42 3600 600 86400 60"))
	case q.Qtype == dns.TypeNS:
		m.Answer = append(m.Answer, mustRR("gslb.example.test. 3600 IN NS ns.elsewhere.test."))
	}
	w.WriteMsg(m)
}

func mustRR(s string) dns.RR {
	rr, err := dns.NewRR(s)
	if err != nil {
		panic(err)
	}
	return rr
}

// startChild serves h on UDP and TCP at ip, on one free port, and returns
// the port. The servers stop when the test ends.
func startChild(t *testing.T, ip string, h dns.Handler) uint16 {
	t.Helper()
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", l.Addr().String())
	if err != nil {
		l.Close()
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait) // after the shutdowns below: cleanups run last first
	for _, s := range []*dns.Server{{Listener: l, Handler: h}, {PacketConn: pc, Handler: h}} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		wg.Go(func() { s.ActivateAndServe() })
		select {
		case <-started:
		case <-time.After(5 * time.Second):
			t.Fatal("test server did not start")
		}
		t.Cleanup(func() { s.Shutdown() })
	}
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

// findings returns the report's findings as "severity check message".
func findings(r *Report) []string {
	var out []string
	for _, f := range r.Findings {
		out = append(out, fmt.Sprintf("%s %s %s", f.Severity, f.Check, f.Message))
	}
	return out
}

func wantFinding(t *testing.T, r *Report, want string) {
	t.Helper()
	if got := findings(r); !slices.Contains(got, want) {
		t.Errorf("findings lack %q:\n%s", want, strings.Join(got, "\n"))
	}
}

// TestTruncatedAnswerAskedOverTCP: a server whose UDP answers are all
// truncated is asked again over TCP, and its answers count. The delegation
// is to a server outside the zone, whose address comes from LookupHost.
func TestTruncatedAnswerAskedOverTCP(t *testing.T) {
	t.Parallel()
	h := &child{truncateUDP: true}
	port := startChild(t, "127.0.0.2", h)
	parent := startParent(t, "gslb IN NS ns.elsewhere.test.\n")
	var looked []string
	rep, err := Check(t.Context(), "gslb.example.test", Options{Parent: parent, Port: port, QueryTimeout: time.Second,
		LookupHost: func(_ context.Context, host string) ([]netip.Addr, error) {
			looked = append(looked, host)
			return []netip.Addr{netip.MustParseAddr("127.0.0.2")}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	wantFinding(t, rep, fmt.Sprintf("ok server ns.elsewhere.test. (127.0.0.2:%d) answers authoritatively: SOA serial 42, NS ns.elsewhere.test. (TTL 3600 s), over TCP after a truncated UDP answer", port))
	wantFinding(t, rep, "ok ns the parent and the zone list the same NS set: ns.elsewhere.test.")
	if !slices.Equal(looked, []string{"ns.elsewhere.test"}) {
		t.Errorf("LookupHost asked for %q, want ns.elsewhere.test once", looked)
	}
	if u, tc := h.udp.Load(), h.tcp.Load(); u != 2 || tc != 2 {
		t.Errorf("server got %d UDP and %d TCP queries, want 2 and 2 (SOA and NS, each retried over TCP)", u, tc)
	}
	if rep.Failed() || rep.Count(Warning) > 0 {
		t.Errorf("check has errors or warnings: %q", findings(rep))
	}
}

// TestLameServers: a server that answers SERVFAIL, or answers without
// AA, is lame.
func TestLameServers(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		h    *child
		want string
	}{
		{&child{rcode: dns.RcodeServerFailure}, "error server ns.elsewhere.test. (127.0.0.2:PORT) is lame: it answers SERVFAIL for gslb.example.test., so it does not serve the zone"},
		{&child{notAA: true}, "error server ns.elsewhere.test. (127.0.0.2:PORT) is lame: it answers NOERROR, AA clear, RA clear, 1 answer, 0 authority, 0 additional records: it is not authoritative for gslb.example.test. (a resolver or forwarder?)"},
	} {
		port := startChild(t, "127.0.0.2", c.h)
		parent := startParent(t, "gslb IN NS ns.elsewhere.test.\n")
		rep, err := Check(t.Context(), "gslb.example.test", Options{Parent: parent, Port: port, QueryTimeout: time.Second,
			LookupHost: func(context.Context, string) ([]netip.Addr, error) {
				return []netip.Addr{netip.MustParseAddr("127.0.0.2")}, nil
			}})
		if err != nil {
			t.Fatal(err)
		}
		wantFinding(t, rep, strings.ReplaceAll(c.want, "PORT", fmt.Sprint(port)))
		if !rep.Failed() {
			t.Errorf("a lame server passed: %q", findings(rep))
		}
	}
}

// TestSilentServer: a server that never answers is tried Tries times per
// query, each bounded by QueryTimeout, and reported as an error.
func TestSilentServer(t *testing.T) {
	t.Parallel()
	pc, err := net.ListenPacket("udp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	var got atomic.Int32
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
			got.Add(1)
		}
	}()
	port := uint16(pc.LocalAddr().(*net.UDPAddr).Port)
	parent := startParent(t, "gslb IN NS ns1.gslb\nns1.gslb IN A 127.0.0.2\n")
	start := time.Now()
	rep, err := Check(t.Context(), "gslb.example.test.", Options{Parent: parent, Port: port, QueryTimeout: 200 * time.Millisecond, Tries: 3})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("check took %s: 3 tries of 200ms should be about 600ms", took)
	}
	wantFinding(t, rep, fmt.Sprintf("error server ns1.gslb.example.test. (127.0.0.2:%d) does not answer: no answer over udp within 200ms, 3 tries", port))
	wantFinding(t, rep, "error ns no server of gslb.example.test. answers authoritatively: the zone's own NS set is unknown")
	if n := got.Load(); n != 3 {
		t.Errorf("the silent server got %d queries, want 3 (one SOA query, three tries; no NS query after it)", n)
	}
	if !rep.Failed() || rep.Servers[0].Result != "timeout" {
		t.Errorf("failed %v, result %q; want failed, timeout", rep.Failed(), rep.Servers[0].Result)
	}
}

// TestTimeLimit: the whole check stops at Timeout however many tries are left.
func TestTimeLimit(t *testing.T) {
	t.Parallel()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	start := time.Now()
	rep, err := Check(t.Context(), "gslb.example.test.", Options{Parent: pc.LocalAddr().String(),
		QueryTimeout: time.Second, Tries: 10, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("check took %s with a 300ms time limit", took)
	}
	wantFinding(t, rep, fmt.Sprintf("error parent parent server 127.0.0.1 (%s) does not answer: the check's time limit (300ms) ran out", pc.LocalAddr()))
}

// TestBadInput: input Check cannot use is an error, not a report.
func TestBadInput(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		zone string
		opts Options
		want string
	}{
		{".", Options{}, `delegation: "." is not a zone name below the root`},
		{"a..b", Options{}, `delegation: "a..b" is not a zone name below the root`},
		{"x.test", Options{Parent: "127.0.0.1:99999"}, `delegation: parent "127.0.0.1:99999" has a bad port`},
		{"x.test", Options{Roots: []string{"a.root.test"}}, `delegation: root "a.root.test" is not IP[:port]`},
	} {
		if _, err := Check(t.Context(), c.zone, c.opts); err == nil || err.Error() != c.want {
			t.Errorf("Check(%q, %+v) error %v, want %q", c.zone, c.opts, err, c.want)
		}
	}
}

// TestParseReferral reads referrals and rejects what is not one.
func TestParseReferral(t *testing.T) {
	t.Parallel()
	msg := func(aa bool, rcode int, answer, ns, extra []string) *dns.Msg {
		m := new(dns.Msg)
		m.Authoritative, m.Rcode = aa, rcode
		for _, s := range answer {
			m.Answer = append(m.Answer, mustRR(s))
		}
		for _, s := range ns {
			m.Ns = append(m.Ns, mustRR(s))
		}
		for _, s := range extra {
			m.Extra = append(m.Extra, mustRR(s))
		}
		return m
	}
	nsSet := []string{"z.test. 300 IN NS B.z.test.", "z.test. 200 IN NS a.z.test."}
	glue := []string{"a.z.test. 300 IN A 192.0.2.1", "b.z.test. 300 IN AAAA 2001:db8::1", "c.z.test. 300 IN A 192.0.2.9", "a.z.test. 300 IN A 192.0.2.1"}
	ref, ok := parseReferral(msg(false, dns.RcodeSuccess, nil, nsSet, glue))
	if !ok || ref.owner != "z.test." || !slices.Equal(ref.ns, []string{"a.z.test.", "b.z.test."}) || ref.ttl != 200 {
		t.Errorf("referral = %+v, %v", ref, ok)
	}
	if g := glueString(ref.glue); g != "a.z.test. 192.0.2.1; b.z.test. 2001:db8::1" {
		t.Errorf("glue = %s", g)
	}
	for name, m := range map[string]*dns.Msg{
		"authoritative":      msg(true, dns.RcodeSuccess, nil, nsSet, nil),
		"with an answer":     msg(false, dns.RcodeSuccess, []string{"z.test. 300 IN A 192.0.2.1"}, nsSet, nil),
		"NXDOMAIN":           msg(false, dns.RcodeNameError, nil, nsSet, nil),
		"no NS":              msg(false, dns.RcodeSuccess, nil, []string{"test. 300 IN SOA a. b. 1 2 3 4 5"}, nil),
		"NS of two owners":   msg(false, dns.RcodeSuccess, nil, append(slices.Clone(nsSet), "y.test. 300 IN NS a.y.test."), nil),
		"empty (RA, cached)": msg(false, dns.RcodeSuccess, nil, nil, nil),
	} {
		if ref, ok := parseReferral(m); ok {
			t.Errorf("%s: read as a referral: %+v", name, ref)
		}
	}
}

// TestQueryErrors: a port with nothing listening is told apart from one
// that does not answer.
func TestQueryErrors(t *testing.T) {
	t.Parallel()
	c, err := newChecker("x.test.", Options{QueryTimeout: 100 * time.Millisecond, Tries: 1})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	silent := netip.MustParseAddrPort(pc.LocalAddr().String())
	closed, _ := net.ListenPacket("udp", "127.0.0.1:0")
	refused := netip.MustParseAddrPort(closed.LocalAddr().String())
	closed.Close()
	defer pc.Close()
	for addr, want := range map[netip.AddrPort]string{
		silent:  "timeout",
		refused: "no-listener",
	} {
		_, err := c.exchange(t.Context(), addr, "x.test.", dns.TypeSOA)
		var qe *queryError
		if !errors.As(err, &qe) || qe.class != want {
			t.Errorf("exchange with %s: %v, want class %s", addr, err, want)
		}
	}
}
