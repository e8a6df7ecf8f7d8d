package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"meridian/config"
)

// applyConfig is a one-node configuration with two probed endpoints: e1
// (127.0.0.1) checked by "web" on a port that accepts, e2 (192.0.2.20,
// probed at 127.0.0.1) by "dead" on a port nothing listens on. extra is
// appended; e2check names e2's check.
func applyConfig(dnsPort, httpPort, webPort, deadPort int, e2check, extra string) string {
	return fmt.Sprintf(`
[node]
name   = "n1"
region = "r1"

[dns]
listen = ["127.0.0.1:%d"]

[http]
listen = "127.0.0.1:%d"

[regions.r1]
location = [0, 0]

[checks.web]
type     = "tcp"
port     = %d
interval = "100ms"
timeout  = "100ms"
rise     = 1
fall     = 1

[checks.dead]
type     = "tcp"
port     = %d
interval = "100ms"
timeout  = "100ms"
rise     = 1
fall     = 1

[[zones]]
origin     = "t.test."
ttl        = 30
ns         = ["ns1.t.test."]
hostmaster = "hostmaster.t.test."

[[services]]
name        = "api.t.test."
policy      = "multivalue"
ttl         = 5
max_answers = 8
fail_open   = false
endpoints = [
  { name = "e1", region = "r1", address = "127.0.0.1", check = "web" },
  { name = "e2", region = "r1", address = "192.0.2.20", probe_address = "127.0.0.1", check = %q },
]
%s`, dnsPort, httpPort, webPort, deadPort, e2check, extra)
}

// acceptor accepts TCP connections on 127.0.0.1 and closes them, until the
// test ends; it returns the port.
func acceptor(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port
}

// runNodeInProcess builds a node from file and runs its components as
// serve does, without signal handling or gossip, until the test ends.
func runNodeInProcess(t *testing.T, file string, httpPort int) (*node, *syncBuffer) {
	t.Helper()
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	log, _ := newLogger(logs, "text", "info")
	n, err := newNode(cfg, serveFlags{config: file}, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		errs := make(chan error, 4)
		go func() { errs <- n.dns.Run(ctx) }()
		go func() { errs <- n.admin.Run(ctx) }()
		go func() { errs <- n.probes.Run(ctx) }()
		go func() { n.publishHealth(ctx); errs <- nil }()
		for range 4 {
			if err := <-errs; err != nil {
				t.Errorf("node component: %v", err)
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	waitReady(t, httpPort, make(chan int), logs)
	return n, logs
}

// targetsOf is the set of targets n's local view holds, sorted.
func targetsOf(n *node) []string {
	obs, _ := n.local.View(0)
	var out []string
	for _, o := range obs {
		out = append(out, o.Target.String()+"="+o.State.String())
	}
	slices.Sort(out)
	return out
}

// TestReloadResolverFailureChangesNothing: a reload whose answer table
// cannot be built (a GeoIP file that does not load) is rejected, and the
// probes, the health rules and views, the running configuration and the
// answers stay exactly as they were; the same file without the bad GeoIP
// then applies.
func TestReloadResolverFailureChangesNothing(t *testing.T) {
	dir := t.TempDir()
	dnsPort, httpPort, webPort, deadPort := freePort(t), freePort(t), acceptor(t), freePort(t)
	file := filepath.Join(dir, "config.toml")
	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(applyConfig(dnsPort, httpPort, webPort, deadPort, "dead", ""))
	n, logs := runNodeInProcess(t, file, httpPort)
	answers := func() string { return strings.Join(answersOf(t, dnsPort, "api.t.test."), " ") }
	eventually(t, 10*time.Second, "e1 up and e2 down, only e1 answered", func() bool {
		v := strings.Join(targetsOf(n), " ")
		return strings.Contains(v, "=up") && strings.Contains(v, "=down") && answers() == "127.0.0.1"
	})

	cfgBefore := n.cfg.Load()
	probesBefore := n.probes.Targets()
	viewBefore := targetsOf(n)

	// The new file moves e2 to the healthy check "web" (so it would be
	// answered), drops the check "dead" (so its probe and view would go),
	// and names a GeoIP database that is not one.
	junk := filepath.Join(dir, "junk.mmdb")
	if err := os.WriteFile(junk, []byte("this is not a MaxMind database"), 0o644); err != nil {
		t.Fatal(err)
	}
	moved := strings.Replace(applyConfig(dnsPort, httpPort, webPort, deadPort, "web", ""), "[checks.dead]", "[checks.unused]", 1)
	write(moved + "\n[geoip]\ndatabase = \"junk.mmdb\"\n")
	err := n.reload()
	if err == nil || !strings.Contains(err.Error(), "junk.mmdb") {
		t.Fatalf("reload with a junk GeoIP file: %v, want an error naming it", err)
	}
	if !strings.Contains(logs.String(), "reload rejected") {
		t.Errorf("the rejection was not logged:\n%s", logs)
	}
	// Several probe intervals and snapshot rebuilds later, nothing moved.
	never(t, time.Second, "the rejected reload changed something", func() bool {
		if n.cfg.Load() != cfgBefore || !slices.Equal(n.probes.Targets(), probesBefore) ||
			!slices.Equal(targetsOf(n), viewBefore) {
			t.Logf("config kept %t; probes %v, before %v; views %v, before %v", n.cfg.Load() == cfgBefore,
				n.probes.Targets(), probesBefore, targetsOf(n), viewBefore)
			return true
		}
		if a := answers(); a != "127.0.0.1" {
			t.Logf("answers %q, want 127.0.0.1", a)
			return true
		}
		return false
	})

	// Without the junk GeoIP file the same change applies: e2 is answered.
	write(moved)
	if err := n.reload(); err != nil {
		t.Fatalf("good reload: %v", err)
	}
	eventually(t, 5*time.Second, "e2 answered once its check is web", func() bool { return answers() == "127.0.0.1 192.0.2.20" })
	if got := n.probes.Targets(); len(got) != 1 || got[0].Check != "web" {
		t.Errorf("probes after the good reload %v, want only web's", got)
	}
}

// never polls cond every 20 ms for d and fails the test if it ever holds.
func never(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			t.Fatal(what)
		}
	}
}

// TestRestartKeys: a reload reports every key that only a restart applies.
func TestRestartKeys(t *testing.T) {
	old := &config.Config{DNS: config.DNS{Listen: []string{"127.0.0.1:53"}, UDPSockets: 1},
		HTTP: config.HTTP{Listen: "127.0.0.1:9153"}}
	cur := *old
	cur.DNS.UDPSockets = 4
	cur.DNS.NSID = true // applied by a reload
	cur.HTTP = config.HTTP{Listen: "127.0.0.1:9153", TLSCert: "c.pem", TLSKey: "c.key", ClientCA: "ca.pem", Insecure: true}
	want := []string{"dns.udp_sockets", "http.tls_cert", "http.tls_key", "http.client_ca", "http.insecure"}
	if got := restartKeys(old, &cur); !slices.Equal(got, want) {
		t.Errorf("restartKeys = %v, want %v", got, want)
	}
	if got := restartKeys(old, old); len(got) != 0 {
		t.Errorf("restartKeys of one configuration = %v", got)
	}
}

// TestReloadAddingKeyringChangesNothing: a reload that names a keyring
// for a node whose gossip was started without one (turning encryption on
// needs a restart) is rejected before anything changes: configuration,
// probes, views and answers stay as they were.
func TestReloadAddingKeyringChangesNothing(t *testing.T) {
	dir := t.TempDir()
	dnsPort, httpPort, webPort, deadPort := freePort(t), freePort(t), acceptor(t), freePort(t)
	file := filepath.Join(dir, "config.toml")
	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const gossipOn = "\n[gossip]\nbind = \"127.0.0.1:0\"\nprofile = \"local\"\n"
	write(applyConfig(dnsPort, httpPort, webPort, deadPort, "dead", gossipOn))
	n, logs := runNodeInProcess(t, file, httpPort)
	if n.gossip == nil {
		t.Fatal("the node has no gossip")
	}
	answers := func() string { return strings.Join(answersOf(t, dnsPort, "api.t.test."), " ") }
	eventually(t, 10*time.Second, "e1 up and e2 down, only e1 answered", func() bool {
		v := strings.Join(targetsOf(n), " ")
		return strings.Contains(v, "=up") && strings.Contains(v, "=down") && answers() == "127.0.0.1"
	})
	cfgBefore, probesBefore, viewBefore := n.cfg.Load(), n.probes.Targets(), targetsOf(n)

	keyring := filepath.Join(dir, "keyring")
	if code, _, stderr := runCmd(t, "keygen", "-out", keyring); code != 0 {
		t.Fatalf("keygen: %d %s", code, stderr)
	}
	moved := strings.Replace(applyConfig(dnsPort, httpPort, webPort, deadPort, "web", gossipOn), "[checks.dead]", "[checks.unused]", 1)
	write(moved + "keyring = \"keyring\"\n")
	err := n.reload()
	if err == nil || !strings.Contains(err.Error(), "started without a keyring") {
		t.Fatalf("reload adding a keyring: %v, want the refusal", err)
	}
	if !strings.Contains(logs.String(), "reload rejected") {
		t.Errorf("the rejection was not logged:\n%s", logs)
	}
	never(t, time.Second, "the rejected reload changed something", func() bool {
		return n.cfg.Load() != cfgBefore || !slices.Equal(n.probes.Targets(), probesBefore) ||
			!slices.Equal(targetsOf(n), viewBefore) || answers() != "127.0.0.1"
	})
}

// TestReloadRotatesKeyring: on a node started with a keyring, a reload
// with a second key in the file is accepted and installs it; a keyring
// file that does not read is rejected before anything changes.
func TestReloadRotatesKeyring(t *testing.T) {
	dir := t.TempDir()
	dnsPort, httpPort, webPort, deadPort := freePort(t), freePort(t), acceptor(t), freePort(t)
	file, keyring := filepath.Join(dir, "config.toml"), filepath.Join(dir, "keyring")
	keys := make([]string, 2)
	for i := range keys {
		code, out, stderr := runCmd(t, "keygen")
		if code != 0 {
			t.Fatalf("keygen: %d %s", code, stderr)
		}
		keys[i] = strings.TrimSpace(out)
	}
	writeKeys := func(text string) {
		t.Helper()
		if err := os.WriteFile(keyring, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeKeys(keys[0] + "\n")
	text := applyConfig(dnsPort, httpPort, webPort, deadPort, "dead",
		"\n[gossip]\nbind = \"127.0.0.1:0\"\nprofile = \"local\"\nkeyring = \"keyring\"\n")
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	n, logs := runNodeInProcess(t, file, httpPort)
	cfgBefore := n.cfg.Load()

	writeKeys("not a key\n")
	if err := n.reload(); err == nil || !strings.Contains(err.Error(), "line 1: not a base64 key") {
		t.Fatalf("reload with a bad keyring: %v", err)
	}
	if n.cfg.Load() != cfgBefore {
		t.Error("a reload with a bad keyring switched the configuration")
	}
	writeKeys(keys[1] + "\n" + keys[0] + "\n")
	if err := n.reload(); err != nil {
		t.Fatalf("reload adding a key: %v", err)
	}
	if n.cfg.Load() == cfgBefore || !strings.Contains(logs.String(), "gossip keyring updated") {
		t.Errorf("the rotation did not apply:\n%s", logs)
	}
}
