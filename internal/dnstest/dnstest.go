// Package dnstest runs meridian's resolver on loopback for tests and builds
// and checks the DNS messages they exchange with it, in the manner of
// CoreDNS's plugin/pkg/dnstest and plugin/test helpers.
//
// A server is started from TOML text, listens on 127.0.0.1:0 (UDP and TCP on
// one port) and is stopped by t.Cleanup; the helpers wait for it to be bound
// instead of sleeping. Expected records are written as zone-file lines and
// compared with the rr.String() of each section, sorted. Every helper that
// takes a testing.TB fails the test on error, so callers need no checks.
package dnstest

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"meridian/config"
	"meridian/resolver"
)

// Timeout bounds every exchange, and waiting for a server to start or stop.
const Timeout = 2 * time.Second

// UDPSockets is the number of UDP sockets a test server opens.
const UDPSockets = 2

// StartServer parses cfgTOML, starts a resolver for it on 127.0.0.1:0 and
// returns the server with its address ("127.0.0.1:port", UDP and TCP). The
// server is stopped, and Run awaited, when the test ends.
func StartServer(t testing.TB, cfgTOML string) (srv *resolver.Server, addr string) {
	t.Helper()
	return StartServerFiles(t, cfgTOML, nil)
}

// StartServerFiles is StartServer with extra files (zone files, typically)
// written first into the folder of the configuration, keyed by their path
// relative to it, so that `records = "example.zone"` finds them.
func StartServerFiles(t testing.TB, cfgTOML string, files map[string]string) (srv *resolver.Server, addr string) {
	t.Helper()
	return Start(t, Config(t, cfgTOML, files))
}

// Config writes files (paths relative to the configuration's folder) into a
// fresh t.TempDir() and parses cfgTOML as if read from config.toml there.
func Config(t testing.TB, cfgTOML string, files map[string]string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	for name, text := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatalf("dnstest: %v", err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatalf("dnstest: %v", err)
		}
	}
	cfg, err := config.Parse([]byte(cfgTOML), filepath.Join(dir, "config.toml"))
	if err != nil {
		t.Fatalf("dnstest: parse config: %v", err)
	}
	return cfg
}

// Start runs a resolver for cfg, with dns.listen overridden to 127.0.0.1:0
// and dns.udp_sockets to UDPSockets, waits until it is bound and returns it
// with its address. t.Cleanup cancels it and waits for Run to return.
func Start(t testing.TB, cfg *config.Config) (srv *resolver.Server, addr string) {
	t.Helper()
	cfg.DNS.Listen = []string{"127.0.0.1:0"}
	cfg.DNS.UDPSockets = UDPSockets
	started := make(chan struct{})
	srv, err := resolver.New(cfg, resolver.Options{Started: func() { close(started) }})
	if err != nil {
		t.Fatalf("dnstest: new resolver: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("dnstest: resolver run: %v", err)
			}
		case <-time.After(5 * Timeout):
			t.Errorf("dnstest: resolver Run did not return within %s of cancel", 5*Timeout)
		}
	})
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("dnstest: resolver stopped before it started: %v", err)
	case <-time.After(5 * Timeout):
		t.Fatalf("dnstest: resolver did not start within %s", 5*Timeout)
	}
	addrs := srv.Addrs()
	if len(addrs) == 0 {
		t.Fatal("dnstest: resolver started without an address")
	}
	return srv, addrs[0].String()
}

// Exchange sends m to addr over net ("udp" or "tcp") with a miekg/dns client
// (Timeout, and a 64 KiB UDP read buffer so that an oversize answer shows as
// such) and returns the response, failing the test on any error.
func Exchange(t testing.TB, addr string, m *dns.Msg, net string) *dns.Msg {
	t.Helper()
	r, err := ExchangeErr(addr, m, net)
	if err != nil {
		t.Fatalf("dnstest: exchange %s over %s: %v", questionString(m), net, err)
	}
	return r
}

// ExchangeErr is Exchange returning its error, for goroutines other than
// the test's own (where t.Fatal must not be called).
func ExchangeErr(addr string, m *dns.Msg, net string) (*dns.Msg, error) {
	c := &dns.Client{Net: net, Timeout: Timeout, UDPSize: dns.MaxMsgSize}
	r, _, err := c.Exchange(m, addr)
	return r, err
}

func questionString(m *dns.Msg) string {
	if len(m.Question) == 0 {
		return "(no question)"
	}
	q := m.Question[0]
	return q.Name + " " + dns.TypeToString[q.Qtype]
}

// QueryOption changes a query built by Query.
type QueryOption func(*dns.Msg)

// Query builds a query for name (made fully qualified, case kept) and qtype,
// class IN, with a random ID and RD set, as dig sends it by default; opts
// change it.
func Query(name string, qtype uint16, opts ...QueryOption) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	for _, o := range opts {
		o(m)
	}
	return m
}

// RD sets or clears the recursion desired flag.
func RD(on bool) QueryOption { return func(m *dns.Msg) { m.RecursionDesired = on } }

// CD sets or clears the checking disabled flag.
func CD(on bool) QueryOption { return func(m *dns.Msg) { m.CheckingDisabled = on } }

// ID sets the query's ID.
func ID(id uint16) QueryOption { return func(m *dns.Msg) { m.Id = id } }

// Opcode sets the query's opcode (dns.OpcodeStatus, dns.OpcodeUpdate, ...).
func Opcode(op int) QueryOption { return func(m *dns.Msg) { m.Opcode = op } }

// Class sets the class of the question.
func Class(c uint16) QueryOption { return func(m *dns.Msg) { m.Question[0].Qclass = c } }

// EDNS adds an OPT record advertising size, or sets the size of the one there.
func EDNS(size uint16) QueryOption { return func(m *dns.Msg) { opt(m).SetUDPSize(size) } }

// EDNSVersion adds an OPT record (1232 bytes) if there is none and sets its version.
func EDNSVersion(v uint8) QueryOption { return func(m *dns.Msg) { opt(m).SetVersion(v) } }

// NSID adds an OPT record (1232 bytes) if there is none and asks for the NSID.
func NSID() QueryOption {
	return func(m *dns.Msg) {
		o := opt(m)
		o.Option = append(o.Option, &dns.EDNS0_NSID{Code: dns.EDNS0NSID})
	}
}

// ECS adds an OPT record (1232 bytes) if there is none and an EDNS Client
// Subnet option for p (family from its address, scope 0).
func ECS(p netip.Prefix) QueryOption {
	return func(m *dns.Msg) {
		family := uint16(1)
		if p.Addr().Is6() {
			family = 2
		}
		o := opt(m)
		o.Option = append(o.Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: family,
			SourceNetmask: uint8(p.Bits()), Address: p.Addr().AsSlice()})
	}
}

// EDNSOption adds an OPT record (1232 bytes) if there is none and an option
// with code and data sent as they are, for options miekg/dns would refuse
// to pack (such as an invalid client subnet).
func EDNSOption(code uint16, data []byte) QueryOption {
	return func(m *dns.Msg) {
		o := opt(m)
		o.Option = append(o.Option, &dns.EDNS0_LOCAL{Code: code, Data: data})
	}
}

// Question appends another question (so that QDCOUNT is 2).
func Question(name string, qtype uint16) QueryOption {
	return func(m *dns.Msg) {
		m.Question = append(m.Question, dns.Question{Name: dns.Fqdn(name), Qtype: qtype, Qclass: dns.ClassINET})
	}
}

// NoQuestion removes every question (so that QDCOUNT is 0).
func NoQuestion() QueryOption { return func(m *dns.Msg) { m.Question = nil } }

// opt returns m's OPT record, adding one of 1232 bytes if it has none.
func opt(m *dns.Msg) *dns.OPT {
	if o := m.IsEdns0(); o != nil {
		return o
	}
	m.SetEdns0(1232, false)
	return m.IsEdns0()
}

// Pack packs m, failing the test on error.
func Pack(t testing.TB, m *dns.Msg) []byte {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatalf("dnstest: pack %s: %v", questionString(m), err)
	}
	return b
}

// DialUDP opens a UDP socket to addr for raw packets; it is closed when
// the test ends.
func DialUDP(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatalf("dnstest: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// ReadPacket reads one datagram from c, waiting at most wait; ok is false
// when none arrived in time.
func ReadPacket(t testing.TB, c net.Conn, wait time.Duration) (pkt []byte, ok bool) {
	t.Helper()
	buf := make([]byte, dns.MaxMsgSize)
	if err := c.SetReadDeadline(time.Now().Add(wait)); err != nil {
		t.Fatalf("dnstest: %v", err)
	}
	n, err := c.Read(buf)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, false
		}
		t.Fatalf("dnstest: read: %v", err)
	}
	return buf[:n], true
}

// RRs normalises zone-file lines ("www.example. 300 IN A 192.0.2.1") to
// the form rr.String() prints, sorted, failing the test on a bad line.
func RRs(t testing.TB, lines ...string) []string {
	t.Helper()
	out := make([]string, 0, len(lines))
	for _, l := range lines {
		rr, err := dns.NewRR(l)
		if err != nil || rr == nil {
			t.Fatalf("dnstest: bad expected record %q: %v", l, err)
		}
		out = append(out, rr.String())
	}
	slices.Sort(out)
	return out
}

// Strings returns rr.String() of every record in a section except OPT,
// sorted, so that sections whose order is random compare equal.
func Strings(rrs []dns.RR) []string {
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		if rr.Header().Rrtype != dns.TypeOPT {
			out = append(out, rr.String())
		}
	}
	slices.Sort(out)
	return out
}

// CheckSection fails the test unless the records of section (OPT left
// out) are exactly the zone-file lines want, in any order.
func CheckSection(t testing.TB, section string, got []dns.RR, want ...string) {
	t.Helper()
	g, w := Strings(got), RRs(t, want...)
	if !slices.Equal(g, w) {
		t.Errorf("%s section:\n got: %s\nwant: %s", section, lines(g), lines(w))
	}
}

func lines(s []string) string {
	if len(s) == 0 {
		return "(empty)"
	}
	return "\n\t" + strings.Join(s, "\n\t")
}

// Flags returns the header flags of m the way dig prints them, in order:
// "qr aa tc rd ra z ad cd" less those not set.
func Flags(m *dns.Msg) string {
	var flags []string
	for _, f := range []struct {
		on   bool
		name string
	}{{m.Response, "qr"}, {m.Authoritative, "aa"}, {m.Truncated, "tc"}, {m.RecursionDesired, "rd"},
		{m.RecursionAvailable, "ra"}, {m.Zero, "z"}, {m.AuthenticatedData, "ad"}, {m.CheckingDisabled, "cd"}} {
		if f.on {
			flags = append(flags, f.name)
		}
	}
	return strings.Join(flags, " ")
}
