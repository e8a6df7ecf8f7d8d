package gossip

// Helpers for tests with real memberlist clusters on 127.0.0.1, port 0.
// Set MERIDIAN_TEST_LOG=1 to see every node's log on stderr.

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"meridian/config"
	"meridian/health"
	"meridian/internal/certtest"
	"meridian/pki"
	"meridian/probe"
)

// anyQuorum decides with the Any rule; the tests look at region votes.
var anyQuorum = config.Quorum{Kind: config.QuorumAny}

// spec describes one test node.
type spec struct {
	name, region string
	gossip       config.Gossip // zero: loopbackGossip()
	join         []string
	staleAfter   time.Duration // default 30 s
	skipLeave    bool          // Run ends as if the process were killed
	// transport, when set, gives the node's transport hook (see firewall).
	transport func(*Node) func(memberlist.Transport) memberlist.Transport
	// tune, when set, adjusts the memberlist configuration before Run.
	tune func(*memberlist.Config)
	// exchange and exchangeEvery set Options.Exchange and ExchangeInterval.
	exchange      Exchange
	exchangeEvery time.Duration
	// prepare, when set, adjusts the node before Run.
	prepare func(*Node)
}

// tnode is a running test node.
type tnode struct {
	name, region string
	local        *health.Local
	table        *health.Table
	node         *Node
	logs         *logCounter
	cancel       context.CancelFunc
	done         chan error
	stopOnce     sync.Once
}

// startNode runs a node until the test ends (or stop) and waits until it
// has bound its address.
func startNode(t testing.TB, s spec) *tnode {
	t.Helper()
	if s.gossip.Profile == "" {
		s.gossip = loopbackGossip()
	}
	s.gossip.Join = s.join
	if s.staleAfter == 0 {
		s.staleAfter = 30 * time.Second
	}
	local := health.NewLocal(nil, nil)
	local.Configure(testConfig())
	table := health.NewTable(local, health.TableOptions{Self: s.name, Region: s.region, StaleAfter: s.staleAfter})
	logs := newLogCounter(s.name)
	n, err := New(Options{Config: s.gossip, Name: s.name, Region: s.region, Local: local, Table: table, Logger: slog.New(logs),
		Exchange: s.exchange, ExchangeInterval: s.exchangeEvery})
	if err != nil {
		t.Fatal(err)
	}
	if s.prepare != nil {
		s.prepare(n)
	}
	n.skipLeave = s.skipLeave
	if s.transport != nil {
		n.wrapTransport = s.transport(n)
	}
	if s.tune != nil {
		s.tune(n.conf)
	}
	n.reconnectEvery = time.Second
	n.conf.PushPullInterval = time.Hour // dissemination must not rely on anti-entropy
	ctx, cancel := context.WithCancel(context.Background())
	tn := &tnode{name: s.name, region: s.region, local: local, table: table, node: n, logs: logs, cancel: cancel, done: make(chan error, 1)}
	go func() { tn.done <- n.Run(ctx) }()
	t.Cleanup(func() { tn.stop(t) })
	eventually(t, 5*time.Second, s.name+" started", func() bool {
		select {
		case err := <-tn.done:
			t.Fatalf("%s: Run: %v", s.name, err)
		default:
		}
		return n.LocalAddr() != ""
	})
	return tn
}

// stop ends the node's Run and waits for it to return.
func (tn *tnode) stop(t testing.TB) {
	t.Helper()
	tn.stopOnce.Do(func() {
		tn.cancel()
		select {
		case err := <-tn.done:
			if err != nil {
				t.Errorf("%s: Run: %v", tn.name, err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("%s: Run did not return", tn.name)
		}
	})
}

// startCluster starts nodes one after the other, each joining the first.
func startCluster(t *testing.T, specs ...spec) []*tnode {
	t.Helper()
	var nodes []*tnode
	for i, s := range specs {
		if i > 0 {
			s.join = append(s.join, nodes[0].node.LocalAddr())
		}
		nodes = append(nodes, startNode(t, s))
	}
	waitMembers(t, nodes)
	return nodes
}

// waitMembers waits until every node sees exactly the nodes given.
func waitMembers(t *testing.T, nodes []*tnode) {
	t.Helper()
	want := make([]string, len(nodes))
	for i, n := range nodes {
		want[i] = n.name
	}
	eventually(t, 10*time.Second, "membership "+strings.Join(want, ","), func() bool {
		for _, n := range nodes {
			if len(n.node.Members()) != len(nodes) {
				return false
			}
		}
		return true
	})
}

// vote returns region's vote on tg at n.
func (tn *tnode) vote(tg probe.Target, region string) health.RegionVote {
	for _, v := range tn.table.Decide(tg, anyQuorum).Regions {
		if v.Region == region {
			return v
		}
	}
	return health.RegionVote{Region: region}
}

// sees reports whether every node but from sees from's region vote state
// on tg with exactly the given up and down counts.
func sees(nodes []*tnode, from *tnode, tg probe.Target, state health.State, up, down int) bool {
	for _, n := range nodes {
		if n == from {
			continue
		}
		if v := n.vote(tg, from.region); v.State != state || v.Up != up || v.Down != down {
			return false
		}
	}
	return true
}

// hasPeer reports whether n knows name, as a member or in its table.
func (tn *tnode) hasPeer(name string) bool {
	for _, m := range tn.node.Members() {
		if m.Name == name {
			return true
		}
	}
	for _, m := range tn.table.Members() {
		if m.Name == name {
			return true
		}
	}
	return false
}

var (
	up   = probe.Result{OK: true, RTT: 10 * time.Millisecond}
	down = probe.Result{Reason: probe.ReasonRefused, Detail: "connection refused"}
)

// eventually polls cond every 20 ms until it holds, failing the test after
// timeout.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// never polls cond every 20 ms for d and fails the test if it ever holds.
func never(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			t.Fatalf("%s", what)
		}
	}
}

// checkGoroutines fails the test unless, once every cleanup registered
// after it has run, the number of goroutines falls back to what it was.
// Call it first.
func checkGoroutines(t *testing.T) {
	t.Helper()
	base := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(15 * time.Second)
		for runtime.NumGoroutine() > base {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				t.Errorf("%d goroutines left running, %d before the test:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

// logCounter is a slog.Handler counting messages by text, and printing them
// when MERIDIAN_TEST_LOG is set. It never calls t.Log: memberlist may log
// after a test has ended.
type logCounter struct {
	name   string
	counts *sync.Map // message → *atomic.Int64
	out    slog.Handler
}

func newLogCounter(name string) *logCounter {
	var out slog.Handler = slog.DiscardHandler
	if os.Getenv("MERIDIAN_TEST_LOG") != "" {
		out = slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}).WithAttrs([]slog.Attr{slog.String("node", name)})
	}
	return &logCounter{name: name, counts: &sync.Map{}, out: out}
}

func (h *logCounter) Enabled(ctx context.Context, l slog.Level) bool { return true }

func (h *logCounter) Handle(ctx context.Context, r slog.Record) error {
	c, _ := h.counts.LoadOrStore(r.Message, new(atomic.Int64))
	c.(*atomic.Int64).Add(1)
	if h.out.Enabled(ctx, r.Level) {
		return h.out.Handle(ctx, r)
	}
	return nil
}

func (h *logCounter) WithAttrs(as []slog.Attr) slog.Handler {
	return &logCounter{name: h.name, counts: h.counts, out: h.out.WithAttrs(as)}
}

func (h *logCounter) WithGroup(g string) slog.Handler {
	return &logCounter{name: h.name, counts: h.counts, out: h.out.WithGroup(g)}
}

// count returns how often msg was logged.
func (h *logCounter) count(msg string) int64 {
	if c, ok := h.counts.Load(msg); ok {
		return c.(*atomic.Int64).Load()
	}
	return 0
}

// nodeCert issues a node certificate (server and client usage, for
// 127.0.0.1) from ca and returns the files for config.Gossip.
func nodeCert(t *testing.T, ca *certtest.CA, name string) config.TLSFiles {
	t.Helper()
	leaf, err := ca.Issue(pki.LeafRequest{CommonName: name, Client: true, Server: true, DNSNames: []string{name}})
	if err != nil {
		t.Fatal(err)
	}
	file := fmt.Sprintf("gossip-node-%s", name)
	if err := leaf.Save(ca.Dir, file); err != nil {
		t.Fatal(err)
	}
	return config.TLSFiles{CA: filepath.Join(ca.Dir, "ca.pem"), Cert: filepath.Join(ca.Dir, file+".pem"), Key: filepath.Join(ca.Dir, file+".key")}
}
