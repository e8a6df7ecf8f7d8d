package gossip

import (
	"bytes"
	"encoding/base64"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"

	"meridian/config"
	"meridian/health"
	"meridian/probe"
)

func TestMetaRoundTrip(t *testing.T) {
	for _, m := range []meta{
		{Major: protocolMajor, Minor: protocolMinor, Region: "us-east"},
		{Major: 2, Minor: 9, Draining: true, Region: strings.Repeat("r", maxRegion)},
		{Major: 1},
	} {
		b := m.encode()
		if len(b) > memberlist.MetaMaxSize {
			t.Fatalf("meta is %d bytes", len(b))
		}
		got, err := decodeMeta(b)
		if err != nil || got != m {
			t.Errorf("decodeMeta(%+v) = %+v, %v", m, got, err)
		}
		// A newer minor version may append fields.
		if got, err := decodeMeta(append(b, 7, 7)); err != nil || got != m {
			t.Errorf("with trailing fields: %+v, %v", got, err)
		}
	}
	for _, b := range [][]byte{nil, {metaVersion, 1, 0}, {9, 1, 0, 0, 0}, {metaVersion, 1, 0, 0, 5, 'a'}, {metaVersion, 1, 0, 0, 65}} {
		if _, err := decodeMeta(b); err == nil {
			t.Errorf("decodeMeta(%v) accepted", b)
		}
	}
	if (meta{Major: protocolMajor + 1}).compatible() || !(meta{Major: protocolMajor, Minor: 7}).compatible() {
		t.Error("compatible() is wrong")
	}
	// Heartbeats came with 1.1: the table judges an older peer's silence
	// only by memberlist.
	if (meta{Major: 1, Minor: 0}).heartbeats() || !(meta{Major: 1, Minor: 1}).heartbeats() ||
		!(meta{Major: protocolMajor, Minor: protocolMinor}).heartbeats() || (meta{Major: 2, Minor: 1}).heartbeats() {
		t.Error("heartbeats() is wrong")
	}
}

// testKey returns the i-th fixed test key.
func testKey(i byte) []byte { return bytes.Repeat([]byte{i}, 32) }

// writeKeyring writes keys (base64, one per line, first primary) to a file
// in dir and returns its path.
func writeKeyring(t testing.TB, dir, name string, keys ...[]byte) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("# test keyring\n\n")
	for _, k := range keys {
		b.WriteString("  " + base64.StdEncoding.EncodeToString(k) + "  \n")
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestReadKeyring(t *testing.T) {
	dir := t.TempDir()
	k16, k24 := bytes.Repeat([]byte{1}, 16), bytes.Repeat([]byte{2}, 24)
	keys, err := ReadKeyring(writeKeyring(t, dir, "ok", testKey(3), k16, k24, testKey(3)))
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 3 || !bytes.Equal(keys[0], testKey(3)) || !bytes.Equal(keys[1], k16) || !bytes.Equal(keys[2], k24) {
		t.Errorf("keys %x", keys)
	}
	secret := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{9}, 20))
	for _, tc := range []struct{ content, want string }{
		{"", "no key"},
		{"# only a comment\n\n", "no key"},
		{"not base64!\n", "line 1: not a base64 key"},
		{"# c\n" + secret + "\n", "line 2: a key of 20 bytes: want 16, 24 or 32"},
		{strings.Repeat("#", maxKeyringFile+1), "larger than 65536 bytes"},
	} {
		path := filepath.Join(dir, "bad")
		if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := ReadKeyring(path)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
			t.Errorf("%q: error %v, want %q and the path", tc.want, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("error reveals the key: %v", err)
		}
	}
	if _, err := ReadKeyring(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file accepted")
	}
}

func TestApplyKeyringOrder(t *testing.T) {
	a, b, c := testKey(1), testKey(2), testKey(3)
	kr, err := memberlist.NewKeyring([][]byte{c}, a)
	if err != nil {
		t.Fatal(err)
	}
	added, removed, err := applyKeyring(kr, [][]byte{b, a})
	if err != nil || added != 1 || removed != 1 {
		t.Fatalf("added %d removed %d, %v", added, removed, err)
	}
	if got := kr.GetKeys(); len(got) != 2 || !bytes.Equal(got[0], b) || !bytes.Equal(got[1], a) {
		t.Errorf("keys %x, want [b a]", got)
	}
	if added, removed, _ := applyKeyring(kr, [][]byte{b, a}); added != 0 || removed != 0 {
		t.Errorf("unchanged file: added %d removed %d", added, removed)
	}
}

// testConfig is a configuration with one check, "api", with rise = fall = 1.
func testConfig() *config.Config {
	return &config.Config{Checks: map[string]config.Check{"api": {Type: "tcp", Port: 443, Rise: 1, Fall: 1}}}
}

// newTestNode builds (but does not run) a Node over a fresh Local and Table.
func newTestNode(t *testing.T, g config.Gossip, reg prometheus.Registerer) (*Node, *health.Local) {
	t.Helper()
	local := health.NewLocal(nil, nil)
	local.Configure(testConfig())
	n, err := New(Options{Config: g, Name: "n1", Region: "r1", Local: local,
		Table: health.NewTable(local, health.TableOptions{Self: "n1", Region: "r1", StaleAfter: time.Second}), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	return n, local
}

func loopbackGossip() config.Gossip {
	return config.Gossip{Enabled: true, Bind: "127.0.0.1:0", Profile: "local", Cluster: "test", Transport: "udp", StaleAfter: config.Duration{Duration: time.Second}}
}

func TestNewValidates(t *testing.T) {
	local := health.NewLocal(nil, nil)
	table := health.NewTable(local, health.TableOptions{Self: "n1", Region: "r1"})
	base := Options{Config: loopbackGossip(), Name: "n1", Region: "r1", Local: local, Table: table}
	keyring := writeKeyring(t, t.TempDir(), "k", testKey(1))
	for _, tc := range []struct {
		name string
		edit func(*Options)
		want string
	}{
		{"no table", func(o *Options) { o.Table = nil }, "options need a Local and a Table"},
		{"no name", func(o *Options) { o.Name = "" }, "node name must be 1..128 bytes, not 0"},
		{"long region", func(o *Options) { o.Region = strings.Repeat("r", 65) }, "region must be 1..64 bytes, not 65"},
		{"profile", func(o *Options) { o.Config.Profile = "moon" }, `profile "moon" is not wan, lan or local`},
		{"transport", func(o *Options) { o.Config.Transport = "quic" }, `transport "quic" is not udp or tls`},
		{"bind", func(o *Options) { o.Config.Bind = "localhost" }, `bind "localhost" is not ip:port`},
		{"bind host", func(o *Options) { o.Config.Bind = "localhost:7946" }, "host must be an IP address"},
		{"unencrypted off loopback", func(o *Options) { o.Config.Bind = "0.0.0.0:7946" }, `bind "0.0.0.0:7946" is not a loopback address: gossip needs a keyring`},
		{"unencrypted all interfaces", func(o *Options) { o.Config.Bind = ":7946" }, "gossip needs a keyring"},
		{"tls files", func(o *Options) { o.Config.Transport = "tls" }, `transport "tls" needs ca, cert and key`},
		{"advertise", func(o *Options) { o.Config.Advertise = "nope" }, `advertise "nope" is not ip:port`},
		{"label", func(o *Options) { o.Config.Cluster = strings.Repeat("l", 256) }, "cluster label is longer than 255 bytes"},
		{"keyring", func(o *Options) { o.Config.Keyring = keyring + ".missing" }, "read keyring"},
	} {
		o := base
		tc.edit(&o)
		_, err := New(o)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "gossip: ") {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
	}
	o := base
	o.Config.Bind, o.Config.Keyring = "0.0.0.0:7946", keyring
	o.Config.Advertise = "192.0.2.1:0"
	n, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if c := n.conf; c.BindAddr != "0.0.0.0" || c.BindPort != 7946 || c.AdvertiseAddr != "192.0.2.1" || c.AdvertisePort != 7946 ||
		c.Label != "test" || c.Keyring == nil || !c.GossipVerifyIncoming || !c.GossipVerifyOutgoing || c.Name != "n1" {
		t.Errorf("memberlist config: %+v", c)
	}
	if err := n.UpdateKeyring(keyring); err != nil {
		t.Errorf("UpdateKeyring before Run: %v", err)
	}
	unencrypted, _ := newTestNode(t, loopbackGossip(), nil)
	if err := unencrypted.UpdateKeyring(keyring); err == nil || !strings.Contains(err.Error(), "needs a restart") {
		t.Errorf("UpdateKeyring without a keyring: %v", err)
	}
}

func TestProfiles(t *testing.T) {
	for profile, probeInterval := range map[string]time.Duration{"wan": 5 * time.Second, "lan": time.Second, "local": time.Second} {
		g := loopbackGossip()
		g.Profile = profile
		n, _ := newTestNode(t, g, nil)
		if n.conf.ProbeInterval != probeInterval {
			t.Errorf("%s: probe interval %s", profile, n.conf.ProbeInterval)
		}
	}
}

func TestRTTMoved(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		old, cur time.Duration
		want     bool
	}{
		{0, 0, false},
		{0, 100 * time.Microsecond, true}, // the first RTT
		{10 * ms, 11 * ms, false},         // 10 %, 1 ms
		{10 * ms, 12*ms + 1, true},        // > 20 %
		{10 * ms, 8 * ms, false},          // 20 % exactly, 2 ms
		{100 * ms, 105 * ms, false},       // 5 ms exactly, 5 %
		{100 * ms, 106 * ms, true},        // > 5 ms
		{100 * ms, 94 * ms, true},
	} {
		if got := rttMoved(tc.old, tc.cur); got != tc.want {
			t.Errorf("rttMoved(%s, %s) = %t", tc.old, tc.cur, got)
		}
	}
}

// queued returns the views in n's broadcast queue, decoded.
func queued(t *testing.T, n *Node) []health.View {
	t.Helper()
	var out []health.View
	for _, b := range n.queue.GetBroadcasts(0, 1<<20) {
		v, err := Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

func TestQueueChanges(t *testing.T) {
	n, local := newTestNode(t, loopbackGossip(), nil)
	s := &sender{sent: map[probe.Target]health.Observation{}, unsendable: map[probe.Target]bool{}}
	other := probe.Target{Check: "api", Address: targetV6.Address, Port: 443}
	local.Observe(targetV4, probe.Result{OK: true, RTT: 10 * time.Millisecond})
	local.Observe(other, probe.Result{OK: true, RTT: 10 * time.Millisecond})
	n.queueChanges(s)
	if got := n.queue.NumQueued(); got != 2 {
		t.Fatalf("%d broadcasts queued, want 2", got)
	}

	// A newer change to a target replaces its queued broadcast.
	local.Observe(targetV4, probe.Result{Reason: probe.ReasonRefused, Detail: "connection refused"})
	n.queueChanges(s)
	if got := n.queue.NumQueued(); got != 2 {
		t.Fatalf("%d broadcasts queued after a second change, want 2", got)
	}
	views := queued(t, n)
	var seen []health.Observation
	for _, v := range views {
		if v.Full || v.Origin != "n1" || v.Region != "r1" || v.Epoch != n.epoch || len(v.Obs) != 1 {
			t.Fatalf("broadcast %+v", v)
		}
		seen = append(seen, v.Obs[0])
	}
	for _, o := range seen {
		if o.Target == targetV4 && (o.State != health.Down || o.Reason != probe.ReasonRefused) {
			t.Errorf("queued %+v, want the newer (down) observation", o)
		}
	}

	// RTT-only changes go out only when large enough.
	n.queue.Reset()
	local.Observe(other, probe.Result{OK: true, RTT: 11 * time.Millisecond}) // EWMA moves 0.3 ms
	n.queueChanges(s)
	if got := n.queue.NumQueued(); got != 0 {
		t.Errorf("a small RTT change queued %d broadcasts", got)
	}
	local.Observe(other, probe.Result{OK: true, RTT: 100 * time.Millisecond}) // EWMA moves ~27 ms
	n.queueChanges(s)
	if got := n.queue.NumQueued(); got != 1 {
		t.Errorf("a large RTT change queued %d broadcasts, want 1", got)
	}

	// Targets Configure removes are forgotten.
	local.Configure(&config.Config{Checks: testConfig().Checks})
	n.queueChanges(s)
	if len(s.sent) != 0 {
		t.Errorf("sender still tracks %d removed targets", len(s.sent))
	}
}

func TestReceiveCountsAndDrops(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	n, _ := newTestNode(t, loopbackGossip(), reg)
	d := delegate{n}
	d.NotifyMsg([]byte{0xde, 0xad})
	d.MergeRemoteState([]byte{msgView, 9}, false)
	if got := testutil.ToFloat64(n.metrics.decodeErrors); got != 2 {
		t.Errorf("decode errors %v, want 2", got)
	}
	v := health.View{Origin: "peer", Region: "r2", Epoch: 1, Seq: 1, Obs: []health.Observation{{Target: targetV4, State: health.Down, Seq: 1}}}
	b, _ := Encode(v)
	n.opts.Table.SetMember(health.Member{Name: "peer", Region: "r2", Alive: true})
	d.NotifyMsg(b)
	if got := n.opts.Table.Decide(targetV4, config.Quorum{}); len(got.Regions) != 2 || got.Regions[1].Down != 1 {
		t.Errorf("decision after a broadcast: %+v", got)
	}
	if got := testutil.ToFloat64(n.metrics.received[0]); got != 1 {
		t.Errorf("views received %v", got)
	}
	full := d.LocalState(true)
	if got, err := Decode(full); err != nil || !got.Full || got.Origin != "n1" || got.Epoch != n.epoch {
		t.Errorf("local state %+v, %v", got, err)
	}
	if got := testutil.ToFloat64(n.metrics.sentBytes[1]); got != float64(len(full)) {
		t.Errorf("full view bytes sent %v, want %d", got, len(full))
	}
	if meta := d.NodeMeta(memberlist.MetaMaxSize); len(meta) == 0 {
		t.Error("no node meta")
	}

	problems, err := promlint.NewWithMetricFamilies(mustGather(t, reg)).Lint()
	if err != nil || len(problems) > 0 {
		t.Errorf("promlint: %v %+v", err, problems)
	}
	if _, err := New(n.opts); err == nil || !strings.Contains(err.Error(), "register metrics") {
		t.Errorf("second node on one registry: %v", err)
	}
}

func mustGather(t *testing.T, g prometheus.Gatherer) []*dto.MetricFamily {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return mfs
}

func TestLogBridgeLevels(t *testing.T) {
	var buf bytes.Buffer
	l := newMemberlistLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	l.Printf("[DEBUG] memberlist: a")
	l.Printf("[INFO] memberlist: b")
	l.Printf("[WARN] memberlist: c")
	l.Printf("[ERR] memberlist: d")
	l.Printf("plain")
	want := []string{"level=DEBUG msg=\"memberlist: a\"", "level=DEBUG msg=\"memberlist: b\"", "level=WARN msg=\"memberlist: c\"",
		"level=ERROR msg=\"memberlist: d\"", "level=DEBUG msg=plain"}
	for _, w := range want {
		if !strings.Contains(buf.String(), w) {
			t.Errorf("log lacks %q:\n%s", w, buf.String())
		}
	}
}
