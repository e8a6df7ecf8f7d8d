package resolver_test

import (
	"context"
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

	"meridian/config"
	"meridian/internal/dnstest"
	"meridian/resolver"
)

// recordConfig has a service of each kind the recorder must see: weighted
// (one and two answers), latency (regions placed by network and location),
// a CNAME endpoint leading into another service, and a multivalue service
// too big for 512 bytes. Service indexes: w 0, w2 1, lat 2, edge 3, many 4.
var recordConfig = `
[node]
name   = "rec-1"
region = "us-east"
[regions.us-east]
location = [39.04, -77.49]
networks = ["10.1.0.0/16"]
[regions.eu-west]
location = [53.35, -6.26]
networks = ["10.2.0.0/16"]
[[zones]]
origin  = "example.test."
ns      = ["ns1.example.test."]
records = "example.zone"
[[services]]
name = "w.example.test."
ttl  = 20
endpoints = [
  { name = "a", region = "us-east", address = "192.0.2.1", weight = 1 },
  { name = "b", region = "us-east", address = "192.0.2.2", weight = 3 },
]
[[services]]
name = "w2.example.test."
ttl  = 25
max_answers = 2
endpoints = [
  { name = "a", region = "us-east", address = "192.0.2.11" },
  { name = "b", region = "us-east", address = "192.0.2.12" },
  { name = "c", region = "us-east", address = "192.0.2.13" },
]
[[services]]
name   = "lat.example.test."
policy = "latency"
ttl    = 30
endpoints = [
  { name = "use1", region = "us-east", address = "192.0.2.21" },
  { name = "euw1", region = "eu-west", address = "192.0.2.22" },
]
[[services]]
name = "edge.example.test."
ttl  = 40
endpoints = [{ name = "to-w", region = "us-east", cname = "w.example.test." }]
[[services]]
name = "many.example.test."
policy = "multivalue"
ttl = 20
max_answers = 40
endpoints = [
` + recordManyEndpoints + `]
`

var recordManyEndpoints = func() string {
	var b strings.Builder
	for i := range 40 {
		fmt.Fprintf(&b, "  { name = \"m%d\", region = \"us-east\", address = \"2001:db8::%x\" },\n", i, i+1)
	}
	return b.String()
}()

const recordZone = `$ORIGIN example.test.
ns1   IN A     127.0.0.1
www   IN A     192.0.2.80
alias IN CNAME w
`

// record is one RecordAnswer call.
type record struct {
	service  int
	source   netip.Addr
	ecs      netip.Prefix
	ends     uint64
	ttl      uint32
	received time.Time
}

func (r record) String() string {
	return fmt.Sprintf("{service %d source %v ecs %v endpoints %b ttl %d}", r.service, r.source, r.ecs, r.ends, r.ttl)
}

// testRecorder keeps every call. (It takes a mutex: a test may; the answer
// path's real recorder must not.)
type testRecorder struct {
	mu  sync.Mutex
	got []record
}

func (r *testRecorder) RecordAnswer(service int, source netip.Addr, ecs netip.Prefix, ends uint64, ttl uint32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, record{service: service, source: source, ecs: ecs, ends: ends, ttl: ttl})
}

// from returns the records of source so far.
func (r *testRecorder) from(source netip.Addr) []record {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []record
	for _, x := range r.got {
		if x.source == source {
			out = append(out, x)
		}
	}
	return out
}

func (r *testRecorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

// startRecording runs a resolver for cfg on 127.0.0.1:0 with rec as its
// recorder, and returns it with its address; it stops when the test ends.
func startRecording(t *testing.T, cfg *config.Config, rec resolver.AnswerRecorder) (*resolver.Server, string) {
	t.Helper()
	cfg.DNS.Listen = []string{"127.0.0.1:0"}
	cfg.DNS.UDPSockets = dnstest.UDPSockets
	started := make(chan struct{})
	srv, err := resolver.New(cfg, resolver.Options{Recorder: rec, Started: func() { close(started) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("resolver run: %v", err)
			}
		case <-time.After(5 * dnstest.Timeout):
			t.Error("resolver Run did not return")
		}
	})
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("resolver stopped before it started: %v", err)
	case <-time.After(5 * dnstest.Timeout):
		t.Fatal("resolver did not start")
	}
	return srv, srv.Addrs()[0].String()
}

// dialFrom opens a DNS connection over proto to addr from the loopback
// address source. Queries on one connection reach one server goroutine in
// order (one TCP connection; one UDP 4-tuple, which SO_REUSEPORT always
// hashes to the same socket).
func dialFrom(t *testing.T, proto, addr string, source netip.Addr) *dns.Conn {
	t.Helper()
	var c net.Conn
	var err error
	if proto == "udp" {
		c, err = net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(source, 0)), net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	} else {
		d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(source, 0)), Timeout: dnstest.Timeout}
		c, err = d.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatalf("dial %s %s from %s: %v", proto, addr, source, err)
	}
	t.Cleanup(func() { c.Close() })
	return &dns.Conn{Conn: c, UDPSize: dns.MaxMsgSize}
}

func exchangeOn(t *testing.T, c *dns.Conn, m *dns.Msg) *dns.Msg {
	t.Helper()
	if err := c.SetDeadline(time.Now().Add(dnstest.Timeout)); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteMsg(m); err != nil {
		t.Fatalf("write %v: %v", m.Question, err)
	}
	r, err := c.ReadMsg()
	if err != nil {
		t.Fatalf("read the answer to %v: %v", m.Question, err)
	}
	if r.Id != m.Id {
		t.Fatalf("answer id %d, query id %d", r.Id, m.Id)
	}
	return r
}

// expectedRecords derives from a response what the recorder must receive:
// one record per service whose endpoint records it carries, with the bits
// of the endpoints answered and the TTL sent.
func expectedRecords(t *testing.T, cfg *config.Config, r *dns.Msg, source netip.Addr, ecs netip.Prefix) []record {
	t.Helper()
	var out []record
	for _, rr := range r.Answer {
		name := strings.ToLower(rr.Header().Name)
		si := slices.IndexFunc(cfg.Services, func(s config.Service) bool { return s.Name == name })
		if si < 0 {
			continue // a static record
		}
		var value string
		switch rr := rr.(type) {
		case *dns.A:
			value = rr.A.String()
		case *dns.AAAA:
			value = rr.AAAA.String()
		case *dns.CNAME:
			value = rr.Target
		}
		ei := slices.IndexFunc(cfg.Services[si].Endpoints, func(e config.Endpoint) bool { return e.Address == value || e.CNAME == value })
		if ei < 0 {
			t.Fatalf("answer %v is no endpoint of %s", rr, name)
		}
		if n := len(out); n > 0 && out[n-1].service == si {
			out[n-1].ends |= 1 << ei
			continue
		}
		out = append(out, record{service: si, source: source, ecs: ecs, ends: 1 << ei, ttl: rr.Header().Ttl})
	}
	return out
}

// recordCase is a query and the ECS subnet its record must carry, or, when
// none is wanted, nothing recorded at all.
type recordCase struct {
	name    string
	q       *dns.Msg
	ecs     netip.Prefix // the subnet recorded
	none    bool         // nothing may be recorded
	records int          // how many records (services) the answer gives
	rcode   int
}

// TestRecorderSeesWhatIsSent sends each query over UDP and TCP from its own
// loopback source address, then a sentinel query on the same connection,
// and checks that the recorder got exactly what the response carried
// (service, source, ECS subnet at the returned scope, endpoint bits, TTL)
// before the sentinel's record — or nothing, for answers without service
// endpoints.
func TestRecorderSeesWhatIsSent(t *testing.T) {
	cfg := dnstest.Config(t, recordConfig, map[string]string{"example.zone": recordZone})
	rec := &testRecorder{}
	_, addr := startRecording(t, cfg, rec)
	ecs24 := dnstest.ECS(netip.MustParsePrefix("10.2.3.0/24"))
	cases := []recordCase{
		{name: "weighted", q: q("w.example.test.", dns.TypeA), records: 1},
		{name: "weighted with edns", q: q("w.example.test.", dns.TypeA, dnstest.EDNS(1232)), records: 1},
		{name: "weighted in capitals", q: q("W.Example.Test.", dns.TypeA), records: 1},
		{name: "two answers", q: q("w2.example.test.", dns.TypeA), records: 1},
		{name: "general path (nsid)", q: q("w.example.test.", dns.TypeA, dnstest.NSID()), records: 1},
		{name: "any", q: q("w.example.test.", dns.TypeANY), records: 1},
		{name: "latency with ecs", q: q("lat.example.test.", dns.TypeA, ecs24), ecs: netip.MustParsePrefix("10.2.0.0/16"), records: 1},
		{name: "latency with ecs, general path", q: q("lat.example.test.", dns.TypeA, ecs24, dnstest.NSID()),
			ecs: netip.MustParsePrefix("10.2.0.0/16"), records: 1},
		{name: "latency with ecs of an unplaced client: scope 0", q: q("lat.example.test.", dns.TypeA,
			dnstest.ECS(netip.MustParsePrefix("203.0.113.0/24"))), records: 1},
		{name: "latency with ecs source 0", q: q("lat.example.test.", dns.TypeA, dnstest.ECS(netip.MustParsePrefix("0.0.0.0/0"))), records: 1},
		{name: "latency without ecs", q: q("lat.example.test.", dns.TypeA), records: 1},
		{name: "weighted with ecs: scope 0", q: q("w.example.test.", dns.TypeA, ecs24), records: 1},
		{name: "cname service into a service", q: q("edge.example.test.", dns.TypeA), records: 2},
		{name: "cname service asked for its cname", q: q("edge.example.test.", dns.TypeCNAME), records: 1},
		{name: "static cname into a service", q: q("alias.example.test.", dns.TypeA), records: 1},
		{name: "nxdomain", q: q("nope.example.test.", dns.TypeA), none: true, rcode: dns.RcodeNameError},
		{name: "nodata aaaa", q: q("w.example.test.", dns.TypeAAAA), none: true},
		{name: "nodata txt", q: q("w.example.test.", dns.TypeTXT, dnstest.EDNS(1232)), none: true},
		{name: "refused", q: q("other.test.", dns.TypeA), none: true, rcode: dns.RcodeRefused},
		{name: "static", q: q("www.example.test.", dns.TypeA), none: true},
		{name: "apex soa", q: q("example.test.", dns.TypeSOA), none: true},
		{name: "two questions", q: q("w.example.test.", dns.TypeA, dnstest.Question("w2.example.test.", dns.TypeA)),
			none: true, rcode: dns.RcodeFormatError},
		{name: "status opcode", q: q("w.example.test.", dns.TypeA, dnstest.Opcode(dns.OpcodeStatus)), none: true, rcode: dns.RcodeNotImplemented},
	}
	next := 2
	for _, c := range cases {
		for _, proto := range transports {
			source := netip.AddrFrom4([4]byte{127, 0, byte(next >> 8), byte(next)})
			next++
			t.Run(c.name+"/"+proto, func(t *testing.T) {
				conn := dialFrom(t, proto, addr, source)
				r := exchangeOn(t, conn, c.q.Copy())
				if r.Rcode != c.rcode {
					t.Fatalf("rcode %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[c.rcode])
				}
				want := expectedRecords(t, cfg, r, source, c.ecs)
				if c.none && len(want) > 0 || !c.none && len(want) != c.records {
					t.Fatalf("the response carries %d service answers, want %d: %v", len(want), c.records, r)
				}
				checkRecorded(t, rec, cfg, conn, source, want)
			})
		}
	}
}

// checkRecorded sends a sentinel query on conn, waits for its record and
// checks that source's records before it are exactly want.
func checkRecorded(t *testing.T, rec *testRecorder, cfg *config.Config, conn *dns.Conn, source netip.Addr, want []record) {
	t.Helper()
	sentinel := exchangeOn(t, conn, q("w.example.test.", dns.TypeA))
	want = append(want, expectedRecords(t, cfg, sentinel, source, netip.Prefix{})...)
	deadline := time.Now().Add(dnstest.Timeout)
	for len(rec.from(source)) < len(want) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := rec.from(source); !slices.Equal(got, want) {
		t.Errorf("recorded %v, want %v", got, want)
	}
}

// TestRecorderTruncation checks that a UDP response sent with TC set is
// not recorded, and the full answer asked again over TCP is.
func TestRecorderTruncation(t *testing.T) {
	cfg := dnstest.Config(t, recordConfig, map[string]string{"example.zone": recordZone})
	rec := &testRecorder{}
	_, addr := startRecording(t, cfg, rec)
	source := netip.MustParseAddr("127.0.1.2")
	udp := dialFrom(t, "udp", addr, source)
	r := exchangeOn(t, udp, q("many.example.test.", dns.TypeAAAA))
	if !r.Truncated {
		t.Fatalf("40 AAAA records in 512 bytes: want TC, got %v", r)
	}
	checkRecorded(t, rec, cfg, udp, source, nil)

	source = netip.MustParseAddr("127.0.1.3")
	tcp := dialFrom(t, "tcp", addr, source)
	r = exchangeOn(t, tcp, q("many.example.test.", dns.TypeAAAA))
	want := expectedRecords(t, cfg, r, source, netip.Prefix{})
	if r.Truncated || len(want) != 1 || want[0].ends != 1<<40-1 {
		t.Fatalf("over TCP: want all 40 endpoints in one record, got %v from %v", want, r)
	}
	checkRecorded(t, rec, cfg, tcp, source, want)
}

// TestRecorderFollowsReload checks that indexes follow the configuration
// that answered: Update keeps the recorder and the new indexes reach it;
// UpdateWithRecorder swaps the recorder with the table; SetHealth keeps it.
func TestRecorderFollowsReload(t *testing.T) {
	cfg := dnstest.Config(t, recordConfig, map[string]string{"example.zone": recordZone})
	rec1, rec2 := &testRecorder{}, &testRecorder{}
	srv, addr := startRecording(t, cfg, rec1)

	// The services in reverse order, w's endpoints swapped.
	reordered := dnstest.Config(t, recordConfig, map[string]string{"example.zone": recordZone})
	slices.Reverse(reordered.Services)
	wi := slices.IndexFunc(reordered.Services, func(s config.Service) bool { return s.Name == "w.example.test." })
	slices.Reverse(reordered.Services[wi].Endpoints)

	steps := []struct {
		name   string
		change func() error
		cfg    *config.Config
		rec    *testRecorder
	}{
		{"initial", func() error { return nil }, cfg, rec1},
		{"update", func() error { return srv.Update(reordered) }, reordered, rec1},
		{"update with recorder", func() error { return srv.UpdateWithRecorder(cfg, rec2) }, cfg, rec2},
		{"set health", func() error { return srv.SetHealth(resolver.AllUp{}) }, cfg, rec2},
	}
	for i, step := range steps {
		if err := step.change(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		before := [2]int{rec1.len(), rec2.len()}
		source := netip.AddrFrom4([4]byte{127, 0, 2, byte(i + 1)})
		conn := dialFrom(t, "udp", addr, source)
		r := exchangeOn(t, conn, q("w.example.test.", dns.TypeA))
		want := expectedRecords(t, step.cfg, r, source, netip.Prefix{})
		if len(want) != 1 {
			t.Fatalf("%s: no service answer in %v", step.name, r)
		}
		checkRecorded(t, step.rec, step.cfg, conn, source, want)
		other := rec2
		if step.rec == rec2 {
			other = rec1
		}
		if after := [2]int{rec1.len(), rec2.len()}; other == rec1 && after[0] != before[0] || other == rec2 && after[1] != before[1] {
			t.Errorf("%s: the other recorder got answers too (%v → %v)", step.name, before, after)
		}
	}
}

// TestUpdateWithRecorderRejectsBadConfig checks that a configuration that
// does not compile keeps the old table and the old recorder.
func TestUpdateWithRecorderRejectsBadConfig(t *testing.T) {
	cfg := dnstest.Config(t, recordConfig, map[string]string{"example.zone": recordZone})
	rec1, rec2 := &testRecorder{}, &testRecorder{}
	srv, addr := startRecording(t, cfg, rec1)
	bad := dnstest.Config(t, recordConfig, map[string]string{"example.zone": recordZone})
	bad.Services[0].Name = "w.elsewhere.test." // in no zone
	if err := srv.UpdateWithRecorder(bad, rec2); err == nil {
		t.Fatal("a service outside every zone compiled")
	}
	source := netip.MustParseAddr("127.0.3.1")
	conn := dialFrom(t, "udp", addr, source)
	r := exchangeOn(t, conn, q("w.example.test.", dns.TypeA))
	checkRecorded(t, rec1, cfg, conn, source, expectedRecords(t, cfg, r, source, netip.Prefix{}))
	if n := rec2.len(); n != 0 {
		t.Errorf("the rejected update's recorder got %d answers", n)
	}
}

// TestLowDiscrepancyOverTheWire asks one service from one source once per
// TTL slot (a fake clock moved on by the TTL between queries), over UDP
// (the fast path) and over TCP with NSID (the general path): with
// skew.low_discrepancy the weight-1 endpoint of 1:3 gets 25 ± 2 of 100
// answers, and repeating a query within a slot repeats its answer.
func TestLowDiscrepancyOverTheWire(t *testing.T) {
	cfg := dnstest.Config(t, recordConfig+"\n[skew]\nlow_discrepancy = true\n", map[string]string{"example.zone": recordZone})
	cfg.DNS.Listen, cfg.DNS.UDPSockets = []string{"127.0.0.1:0"}, dnstest.UDPSockets
	var now atomic.Int64
	now.Store(time.Unix(1_700_000_000, 0).Truncate(20 * time.Second).UnixNano())
	started := make(chan struct{})
	srv, err := resolver.New(cfg, resolver.Options{Clock: func() time.Time { return time.Unix(0, now.Load()) },
		Started: func() { close(started) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	<-started
	addr := srv.Addrs()[0].String()
	for _, path := range []struct {
		proto string
		opts  []dnstest.QueryOption
	}{{"udp", nil}, {"tcp", []dnstest.QueryOption{dnstest.NSID()}}} {
		// A new connection (source port) per query: the identity is the
		// source address alone.
		answer := func() string {
			conn := dialFrom(t, path.proto, addr, netip.MustParseAddr("127.0.4.1"))
			defer conn.Close()
			r := exchangeOn(t, conn, q("w.example.test.", dns.TypeA, path.opts...))
			if len(r.Answer) != 1 {
				t.Fatalf("%s: want one answer, got %v", path.proto, r)
			}
			return r.Answer[0].(*dns.A).A.String()
		}
		a := 0
		for range 100 {
			first := answer()
			if again := answer(); again != first {
				t.Fatalf("%s: %s then %s within one TTL slot", path.proto, first, again)
			}
			if first == "192.0.2.1" {
				a++
			}
			now.Add(int64(20 * time.Second))
		}
		if a < 23 || a > 27 {
			t.Errorf("%s: the weight-1 endpoint answered %d of 100 slots, want 25 ± 2", path.proto, a)
		}
	}
}
