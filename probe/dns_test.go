package probe

import (
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"

	"meridian/config"
)

// zoneHandler answers like a tiny authoritative server: "ok.test." has an A
// record, "broken.test." gets SERVFAIL, anything else NXDOMAIN.
func zoneHandler(w dns.ResponseWriter, q *dns.Msg) {
	m := new(dns.Msg).SetReply(q)
	switch q.Question[0].Name {
	case "ok.test.":
		m.Answer = append(m.Answer, &dns.A{
			Hdr: dns.RR_Header{Name: "ok.test.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 30},
			A:   net.IPv4(192, 0, 2, 1),
		})
	case "broken.test.":
		m.Rcode = dns.RcodeServerFailure
	default:
		m.Rcode = dns.RcodeNameError
	}
	w.WriteMsg(m)
}

// startDNS serves zoneHandler over UDP and TCP on one loopback port, with
// its own handler (never the default mux), returning once both listen.
func startDNS(t *testing.T) Target {
	t.Helper()
	pc, l := listenUDPAndTCP(t)
	for _, srv := range []*dns.Server{{PacketConn: pc}, {Listener: l}} {
		started := make(chan struct{})
		srv.Handler, srv.NotifyStartedFunc = dns.HandlerFunc(zoneHandler), func() { close(started) }
		go srv.ActivateAndServe()
		<-started
		t.Cleanup(func() { srv.Shutdown() })
	}
	return targetOf(t, l.Addr())
}

// listenUDPAndTCP opens a UDP and a TCP socket on the same random loopback
// port, trying a few ports: the TCP port may be taken when the UDP one is free.
func listenUDPAndTCP(t *testing.T) (net.PacketConn, net.Listener) {
	t.Helper()
	var err error
	for range 10 {
		var pc net.PacketConn
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			break
		}
		var l net.Listener
		if l, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			return pc, l
		}
		pc.Close()
	}
	t.Fatalf("listen on a loopback port for UDP and TCP: %v", err)
	return nil, nil
}

func TestDNS(t *testing.T) {
	tg := startDNS(t)
	for _, tc := range []struct {
		name   string
		check  config.Check
		reason Reason
		detail string
	}{
		{"udp noerror", config.Check{QueryName: "ok.test", QueryType: "A"}, ReasonOK, ""},
		{"tcp noerror", config.Check{QueryName: "ok.test.", QueryType: "A", Protocol: "tcp"}, ReasonOK, ""},
		{"servfail", config.Check{QueryName: "broken.test."}, ReasonDNSRcode, "dns rcode SERVFAIL, want NOERROR"},
		{"nxdomain expected", config.Check{QueryName: "missing.test.", ExpectRcode: "NXDOMAIN", Protocol: "tcp"}, ReasonOK, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.check.Type = "dns"
			r := run(newSpec(t, tc.check, config.TLSFiles{}), tg)
			wantReason(t, r, tc.reason)
			if r.Detail != tc.detail {
				t.Errorf("detail %q, want %q", r.Detail, tc.detail)
			}
			if r.RTT <= 0 || r.Phases.FirstByte <= 0 {
				t.Errorf("RTT %v, first byte %v: want both positive", r.RTT, r.Phases.FirstByte)
			}
		})
	}
}

func TestDNSFailures(t *testing.T) {
	silent, err := net.ListenPacket("udp", "127.0.0.1:0") // never answers
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	const timeout = 200 * time.Millisecond
	c := config.Check{Type: "dns", QueryName: "ok.test."}
	c.Timeout.Duration = timeout
	start := time.Now()
	r := run(newSpec(t, c, config.TLSFiles{}), targetOf(t, silent.LocalAddr()))
	wantReason(t, r, ReasonTimeout)
	if elapsed := time.Since(start); elapsed > timeout+250*time.Millisecond {
		t.Errorf("probe took %v, want about the %v timeout", elapsed, timeout)
	}

	c.Protocol = "tcp"
	wantReason(t, run(newSpec(t, c, config.TLSFiles{}), targetOf(t, closedPort(t))), ReasonRefused)
}
