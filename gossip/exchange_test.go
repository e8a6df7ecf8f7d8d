package gossip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"meridian/config"
	"meridian/internal/certtest"
)

// testExchange exports "name version\n" followed by size bytes of a
// pattern derived from the name and version, and checks every peer's
// export it accepts against that pattern, keeping the versions accepted
// per peer in order.
type testExchange struct {
	name    string
	size    int
	version atomic.Uint64
	exports atomic.Int64
	fail    atomic.Bool

	mu   sync.Mutex
	got  map[string][]uint64
	errs []string
}

func newTestExchange(name string, size int) *testExchange {
	return &testExchange{name: name, size: size, got: map[string][]uint64{}}
}

func exportBytes(name string, version uint64, size int) []byte {
	b := fmt.Appendf(nil, "%s %d\n", name, version)
	seed := byte(len(name)) + byte(version)
	for i := range size {
		b = append(b, byte(i*31)^seed)
	}
	return b
}

func (x *testExchange) Export(time.Time) ([]byte, error) {
	x.exports.Add(1)
	if x.fail.Load() {
		return nil, errors.New("test export failure")
	}
	return exportBytes(x.name, x.version.Load(), x.size), nil
}

func (x *testExchange) Accept(from string, b []byte) {
	x.mu.Lock()
	defer x.mu.Unlock()
	head, _, ok := bytes.Cut(b, []byte("\n"))
	name, v, _ := strings.Cut(string(head), " ")
	version, err := strconv.ParseUint(v, 10, 64)
	switch {
	case !ok || err != nil || name != from:
		x.errs = append(x.errs, fmt.Sprintf("%s accepted from %s an export headed %q", x.name, from, head))
	case !bytes.Equal(b, exportBytes(name, version, len(b)-len(head)-1)):
		x.errs = append(x.errs, fmt.Sprintf("%s accepted a corrupt export of %d bytes from %s", x.name, len(b), from))
	default:
		x.got[from] = append(x.got[from], version)
	}
}

// latest returns the last version accepted from each peer.
func (x *testExchange) latest() map[string]uint64 {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := map[string]uint64{}
	for from, vs := range x.got {
		out[from] = vs[len(vs)-1]
	}
	return out
}

// check fails the test on a corrupt export, or one peer's versions going
// backwards.
func (x *testExchange) check(t *testing.T) {
	t.Helper()
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, e := range x.errs {
		t.Error(e)
	}
	for from, vs := range x.got {
		if !slices.IsSorted(vs) {
			t.Errorf("%s accepted %s's versions out of order: %v", x.name, from, vs)
		}
	}
}

// hasAll reports whether every exchange holds, from every other one, at
// least version min (and nothing from itself).
func hasAll(xs []*testExchange, min uint64) bool {
	for _, x := range xs {
		got := x.latest()
		if _, self := got[x.name]; self {
			return false
		}
		for _, y := range xs {
			if v, ok := got[y.name]; y != x && (!ok || v < min) {
				return false
			}
		}
	}
	return true
}

// slowStreams gives streams 10 s instead of the local profile's 1 s:
// memberlist compresses every stream message with LZW, about 40 MB/s each
// way here but under 3 MB/s under the race detector, and the receiver must
// read the whole stream within the timeout.
func slowStreams(c *memberlist.Config) { c.TCPTimeout = 10 * time.Second }

func TestExchangeReachesEveryPeer(t *testing.T) {
	ca := certtest.New(t)
	keyring := writeKeyring(t, t.TempDir(), "k", testKey(1))
	for _, tc := range []struct {
		name   string
		gossip func(node string) config.Gossip
	}{
		{"udp with keyring", func(string) config.Gossip {
			g := loopbackGossip()
			g.Keyring = keyring
			return g
		}},
		{"tls", func(node string) config.Gossip {
			g := loopbackGossip()
			g.Transport, g.TLSFiles = "tls", nodeCert(t, ca, node)
			return g
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkGoroutines(t)
			names := []string{"x1", "x2", "x3"}
			var xs []*testExchange
			var specs []spec
			for i, name := range names {
				x := newTestExchange(name, (i+1)<<18) // 256, 512 and 768 KiB
				xs = append(xs, x)
				specs = append(specs, spec{name: name, region: "r" + name, gossip: tc.gossip(name),
					exchange: x, exchangeEvery: 500 * time.Millisecond, tune: slowStreams})
			}
			nodes := startCluster(t, specs...)
			eventually(t, 15*time.Second, "every node holding every other node's export", func() bool { return hasAll(xs, 0) })

			// A newer export replaces the older one everywhere.
			xs[0].version.Store(5)
			xs[2].version.Store(7)
			eventually(t, 15*time.Second, "the newer exports reaching every node", func() bool {
				return xs[1].latest()["x1"] == 5 && xs[2].latest()["x1"] == 5 && xs[0].latest()["x3"] == 7 && xs[1].latest()["x3"] == 7
			})
			for _, x := range xs {
				x.check(t)
			}
			m := nodes[0].node.metrics
			if sent, bytes := testutil.ToFloat64(m.sent[kindExchange]), testutil.ToFloat64(m.sentBytes[kindExchange]); sent < 2 || bytes < sent*(1<<18) {
				t.Errorf("x1 counted %v exchange messages, %v bytes sent", sent, bytes)
			}
			if got := testutil.ToFloat64(nodes[1].node.metrics.received[kindExchange]); got < 2 {
				t.Errorf("x2 counted %v exchange messages received", got)
			}
			if got := testutil.ToFloat64(m.exchangeDropped[dropSendFailed]); got != 0 {
				t.Errorf("%v sends failed in a healthy cluster", got)
			}
		})
	}
}

// TestExchangeOnJoin checks that a node's export goes to a peer shortly
// after it joins, not at the next interval (an hour away here), both ways.
func TestExchangeOnJoin(t *testing.T) {
	checkGoroutines(t)
	quick := func(n *Node) { n.exchangeJoinDelay = 100 * time.Millisecond }
	xs := []*testExchange{newTestExchange("j1", 1000), newTestExchange("j2", 1000), newTestExchange("j3", 1000)}
	nodes := startCluster(t,
		spec{name: "j1", region: "r1", exchange: xs[0], exchangeEvery: time.Hour, prepare: quick},
		spec{name: "j2", region: "r2", exchange: xs[1], exchangeEvery: time.Hour, prepare: quick},
	)
	eventually(t, 5*time.Second, "j1 and j2 exchanging on join", func() bool { return hasAll(xs[:2], 0) })
	startNode(t, spec{name: "j3", region: "r3", join: []string{nodes[1].node.LocalAddr()}, exchange: xs[2], exchangeEvery: time.Hour, prepare: quick})
	eventually(t, 5*time.Second, "the late node exchanging with both", func() bool { return hasAll(xs, 0) })
	for _, x := range xs {
		x.check(t)
		if n := x.exports.Load(); n > 3 {
			t.Errorf("%s exported %d times for 2 rounds of joins", x.name, n)
		}
	}
}

// TestExchangeSizeBound: a1 (bound lowered to 64 KiB; the real one, 16
// MiB, is checked exactly in TestExchangeMailbox) exports 128 KiB, which
// it counts and never sends, and refuses b1's 96 KiB; c1's small export
// reaches everyone.
func TestExchangeSizeBound(t *testing.T) {
	checkGoroutines(t)
	small := func(n *Node) { n.exchangeLimit = 64 << 10 }
	a, b, c := newTestExchange("a1", 128<<10), newTestExchange("b1", 96<<10), newTestExchange("c1", 1000)
	nodes := startCluster(t,
		spec{name: "a1", region: "r1", exchange: a, exchangeEvery: 200 * time.Millisecond, prepare: small, tune: slowStreams},
		spec{name: "b1", region: "r2", exchange: b, exchangeEvery: 200 * time.Millisecond, tune: slowStreams},
		spec{name: "c1", region: "r3", exchange: c, exchangeEvery: 200 * time.Millisecond, tune: slowStreams},
	)
	am := nodes[0].node.metrics
	eventually(t, 10*time.Second, "c1's export everywhere, b1's at c1, both bounds hit", func() bool {
		return a.latest()["c1"] == 0 && len(a.latest()) == 1 && b.latest()["c1"] == 0 && c.latest()["b1"] == 0 &&
			testutil.ToFloat64(am.exchangeDropped[dropOversizeSent]) >= 2 && testutil.ToFloat64(am.exchangeDropped[dropOversizeReceived]) >= 2
	})
	never(t, time.Second, "an export over the bound was accepted", func() bool {
		_, bGotA := b.latest()["a1"]
		_, cGotA := c.latest()["a1"]
		_, aGotB := a.latest()["b1"]
		return bGotA || cGotA || aGotB
	})
	if got := testutil.ToFloat64(am.sent[kindExchange]); got != 0 {
		t.Errorf("a1 counted %v exchange messages sent", got)
	}
	for _, x := range []*testExchange{a, b, c} {
		x.check(t)
	}
}

// TestExchangeWrongKey: a node with another key never gets the cluster's
// exports, and what it sends straight to a member (bypassing membership) is
// never accepted.
func TestExchangeWrongKey(t *testing.T) {
	checkGoroutines(t)
	dir := t.TempDir()
	withKey := func(file string) config.Gossip {
		g := loopbackGossip()
		g.Keyring = file
		return g
	}
	keyA, keyB := writeKeyring(t, dir, "a", testKey(1)), writeKeyring(t, dir, "b", testKey(2))
	xs := []*testExchange{newTestExchange("m1", 1000), newTestExchange("m2", 1000)}
	nodes := startCluster(t,
		spec{name: "m1", region: "r1", gossip: withKey(keyA), exchange: xs[0], exchangeEvery: 200 * time.Millisecond},
		spec{name: "m2", region: "r2", gossip: withKey(keyA), exchange: xs[1], exchangeEvery: 200 * time.Millisecond},
	)
	ix := newTestExchange("x", 1000)
	intruder := startNode(t, spec{name: "x", region: "r3", gossip: withKey(keyB), exchange: ix, exchangeEvery: 200 * time.Millisecond,
		join: []string{nodes[0].node.LocalAddr()}})
	eventually(t, 10*time.Second, "the members exchanging, the intruder trying to join twice", func() bool {
		return hasAll(xs, 0) && testutil.ToFloat64(intruder.node.metrics.joinAttempts) >= 2
	})
	// Straight to m1's stream port, with the wrong key.
	host, port, err := net.SplitHostPort(nodes[0].node.LocalAddr())
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	target := &memberlist.Node{Name: "m1", Addr: net.ParseIP(host), Port: uint16(p)}
	_ = intruder.node.ml.Load().SendReliable(target, encodeExchange("x", 1, 1, exportBytes("x", 0, 1000)))
	never(t, 2*time.Second, "an export crossed the key boundary", func() bool {
		_, m1 := xs[0].latest()["x"]
		_, m2 := xs[1].latest()["x"]
		return m1 || m2 || len(ix.latest()) > 0
	})
	if got := testutil.ToFloat64(intruder.node.metrics.sent[kindExchange]); got != 0 {
		t.Errorf("the intruder counted %v exports sent", got)
	}
	for _, x := range append(xs, ix) {
		x.check(t)
	}
}

// blockingExchange is an Exchange whose Accept waits until released (or
// until quit is closed, so that a test failing midway ends).
type blockingExchange struct {
	entered chan struct{}
	release chan struct{}
	quit    chan struct{}
	mu      sync.Mutex
	got     []string
}

func (x *blockingExchange) Export(time.Time) ([]byte, error) { return nil, nil }

func (x *blockingExchange) Accept(from string, b []byte) {
	x.mu.Lock()
	x.got = append(x.got, from+":"+string(b))
	x.mu.Unlock()
	select {
	case x.entered <- struct{}{}:
	case <-x.quit:
		return
	}
	select {
	case <-x.release:
	case <-x.quit:
	}
}

// enter waits until Accept is called and lets it return.
func (x *blockingExchange) enter(t *testing.T) {
	t.Helper()
	select {
	case <-x.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("Accept not called")
	}
	x.release <- struct{}{}
}

func (x *blockingExchange) accepted() []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	return slices.Clone(x.got)
}

// TestExchangeMailbox checks, without a network, that NotifyMsg never waits
// for a slow Accept, that each peer's newest export wins while Accept is
// busy, that stale and own exports are dropped, that a restart (newer
// epoch) is accepted, and the size bound: 16 MiB is accepted, a byte more
// is not.
func TestExchangeMailbox(t *testing.T) {
	checkGoroutines(t)
	x := &blockingExchange{entered: make(chan struct{}), release: make(chan struct{}), quit: make(chan struct{})}
	n := newTestNodeWith(t, func(o *Options) { o.Exchange = x })
	if n.opts.ExchangeInterval != 15*time.Second || n.exchangeLimit != 16<<20 {
		t.Fatalf("defaults: interval %s, bound %d", n.opts.ExchangeInterval, n.exchangeLimit)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.deliver(ctx); close(done) }()
	defer func() { cancel(); close(x.quit); <-done }()
	d := delegate{n}
	notify := func(origin string, epoch, seq uint64, payload string) {
		t.Helper()
		returned := make(chan struct{})
		go func() { d.NotifyMsg(encodeExchange(origin, epoch, seq, []byte(payload))); close(returned) }()
		select {
		case <-returned:
		case <-time.After(5 * time.Second):
			t.Fatal("NotifyMsg blocked")
		}
	}
	stale := func() float64 { return testutil.ToFloat64(n.metrics.exchangeDropped[dropStale]) }

	notify("p", 1, 1, "one")
	select { // Accept is now busy with "one"
	case <-x.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("Accept not called")
	}
	notify("p", 1, 2, "two")
	notify("p", 1, 3, "three")
	notify("p", 1, 2, "two again") // older than three: stale
	notify("q", 1, 9, "q-nine")
	notify("n1", 1, 10, "own") // this node's own: ignored
	if got := stale(); got != 1 {
		t.Errorf("stale drops %v, want 1", got)
	}
	x.release <- struct{}{} // finish "one"
	x.enter(t)
	x.enter(t)
	if got, want := x.accepted(), []string{"p:one", "p:three", "q:q-nine"}; !slices.Equal(got, want) {
		t.Errorf("accepted %q, want %q", got, want)
	}
	// A restarted peer (newer epoch, seq from 1) wins; its old epoch no more.
	notify("p", 2, 1, "restarted")
	x.enter(t)
	notify("p", 1, 99, "old epoch")
	if got := stale(); got != 2 {
		t.Errorf("stale drops %v after an old epoch, want 2", got)
	}
	// The bound, exactly.
	notify("q", 1, 10, strings.Repeat("z", maxExchangeBytes))
	x.enter(t)
	notify("q", 1, 11, strings.Repeat("z", maxExchangeBytes+1))
	if got := testutil.ToFloat64(n.metrics.exchangeDropped[dropOversizeReceived]); got != 1 {
		t.Errorf("oversize drops %v, want 1", got)
	}
	never(t, 200*time.Millisecond, "the oversize export was accepted", func() bool { return len(x.accepted()) > 5 })
	got := x.accepted()
	if len(got) != 5 || got[3] != "p:restarted" || len(got[4]) != 2+maxExchangeBytes {
		t.Errorf("accepted %d exports, want 5 ending with the restart and the 16 MiB one", len(got))
	}
	// Junk is counted as a decode error.
	before := testutil.ToFloat64(n.metrics.decodeErrors)
	d.NotifyMsg([]byte{msgExchange, wireVersion, 200})
	if got := testutil.ToFloat64(n.metrics.decodeErrors); got != before+1 {
		t.Errorf("decode errors %v, want %v", got, before+1)
	}
}

// newTestNodeWith is newTestNode (not running) with its options edited.
func newTestNodeWith(t *testing.T, edit func(*Options)) *Node {
	t.Helper()
	n, _ := newTestNode(t, loopbackGossip(), nil)
	o := n.opts
	o.ExchangeInterval = 0
	edit(&o)
	n, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestExchangeOptions(t *testing.T) {
	n, _ := newTestNode(t, loopbackGossip(), nil)
	o := n.opts
	o.ExchangeInterval = -time.Second
	if _, err := New(o); err == nil || err.Error() != "gossip: exchange interval -1s is negative" {
		t.Errorf("negative interval: %v", err)
	}
}

// TestExchangeExportFailure checks that a failing Export is counted and
// the round skipped, and the next good one goes out.
func TestExchangeExportFailure(t *testing.T) {
	checkGoroutines(t)
	a, b := newTestExchange("e1", 100), newTestExchange("e2", 100)
	a.fail.Store(true)
	nodes := startCluster(t,
		spec{name: "e1", region: "r1", exchange: a, exchangeEvery: 100 * time.Millisecond},
		spec{name: "e2", region: "r2", exchange: b, exchangeEvery: 100 * time.Millisecond},
	)
	eventually(t, 5*time.Second, "failed exports counted", func() bool {
		return testutil.ToFloat64(nodes[0].node.metrics.exchangeDropped[dropExportFailed]) >= 2
	})
	if _, ok := b.latest()["e1"]; ok {
		t.Fatal("e2 accepted an export e1 failed to make")
	}
	a.fail.Store(false)
	eventually(t, 5*time.Second, "e1's export once it works", func() bool { _, ok := b.latest()["e1"]; return ok })
}

func TestExchangeWire(t *testing.T) {
	payload := []byte("opaque \x00\xff state")
	b := encodeExchange("node-a", 7, 42, payload)
	m, err := decodeExchange(b)
	if err != nil || m.origin != "node-a" || m.epoch != 7 || m.seq != 42 || !bytes.Equal(m.payload, payload) {
		t.Fatalf("round trip: %+v, %v", m, err)
	}
	if m, err := decodeExchange(encodeExchange("n", 1, 1, nil)); err != nil || len(m.payload) != 0 {
		t.Errorf("empty payload: %+v, %v", m, err)
	}
	for name, bad := range map[string][]byte{
		"empty":          {},
		"type only":      {msgExchange},
		"view type":      append([]byte{msgView}, b[1:]...),
		"version":        append([]byte{msgExchange, wireVersion + 1}, b[2:]...),
		"empty origin":   encodeExchange("", 1, 1, payload),
		"long origin":    encodeExchange(strings.Repeat("o", maxOrigin+1), 1, 1, payload),
		"truncated":      b[:5],
		"no seq":         b[:2+1+len("node-a")+1],
		"origin too big": {msgExchange, wireVersion, 0xff, 0xff, 0xff, 0xff, 0x0f},
	} {
		if _, err := decodeExchange(bad); err == nil || !strings.HasPrefix(err.Error(), "gossip: decode exchange: ") {
			t.Errorf("%s: error %v", name, err)
		}
	}
	for i := range b {
		decodeExchange(b[:i]) // must not panic
	}
	if _, err := Decode(b); err == nil {
		t.Error("Decode took an exchange message for a view")
	}
}

func FuzzDecodeExchange(f *testing.F) {
	f.Add(encodeExchange("node-a", 7, 42, []byte("state")))
	f.Add([]byte{msgExchange, wireVersion, 1, 'n', 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeExchange(b)
		if err != nil {
			return
		}
		again, err := decodeExchange(encodeExchange(m.origin, m.epoch, m.seq, m.payload))
		if err != nil || again.origin != m.origin || again.epoch != m.epoch || again.seq != m.seq || !bytes.Equal(again.payload, m.payload) {
			t.Fatalf("re-encoding %+v gives %+v, %v", m, again, err)
		}
	})
}

// TestDeadlineTransport checks that a stream to a peer that accepts and
// never reads fails within the deadline instead of blocking the writer.
func TestDeadlineTransport(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	held := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			held <- c // accepted, never read
		}
	}()
	inner, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	tr := &deadlineTransport{Transport: inner, timeout: 300 * time.Millisecond}
	defer func() {
		if err := tr.Shutdown(); err != nil {
			t.Error(err)
		}
		if err := tr.Shutdown(); err != nil {
			t.Errorf("second Shutdown: %v", err)
		}
	}()
	c, err := tr.DialAddressTimeout(memberlist.Address{Addr: l.Addr().String(), Name: "stuck"}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	defer func() {
		select {
		case s := <-held:
			s.Close()
		default:
		}
	}()
	start := time.Now()
	_, err = c.Write(make([]byte, 256<<20)) // more than any socket buffer
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("write to a peer that never reads: %v, want a timeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the write took %s to time out", d)
	}
}

// BenchmarkExchange measures one 4 MiB export reaching a peer over an
// encrypted stream (profile "lan", keyring): Export, memberlist's LZW
// compression and AES-GCM, loopback TCP, decryption, decompression, the
// mailbox and Accept. Each iteration bumps the version and waits for it.
//
//	go test -run '^$' -bench Exchange -benchtime 20x ./gossip
func BenchmarkExchange(b *testing.B) {
	const size = 4 << 20
	g := loopbackGossip()
	g.Profile = "lan"
	g.Keyring = writeKeyring(b, b.TempDir(), "k", testKey(1))
	quick := func(n *Node) { n.exchangeJoinDelay = time.Millisecond }
	from, to := newTestExchange("b1", size), newTestExchange("b2", size)
	sender := startNode(b, spec{name: "b1", region: "r1", gossip: g, exchange: from, exchangeEvery: time.Hour, prepare: quick})
	startNode(b, spec{name: "b2", region: "r2", gossip: g, exchange: to, exchangeEvery: time.Hour, prepare: quick,
		join: []string{sender.node.LocalAddr()}})
	wait := func(version uint64) {
		deadline := time.Now().Add(30 * time.Second)
		for v, ok := to.latest()["b1"]; !ok || v < version; v, ok = to.latest()["b1"] {
			if time.Now().After(deadline) {
				b.Fatalf("version %d did not arrive in 30 s", version)
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	wait(0) // sent on join
	b.SetBytes(size)
	b.ResetTimer()
	for i := range b.N {
		v := uint64(i + 1)
		from.version.Store(v)
		sender.node.exchangeJoined <- "b2" // a round for b2 now
		wait(v)
	}
}
