package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"meridian/delegation"
	"meridian/internal/dnstest"
	"meridian/resolver"
)

// A delegation lab is meridian nodes on loopback addresses sharing one
// port: the parent example.test. at 127.0.0.1 (a static zone file with the
// cut gslb.example.test. and its glue), the child gslb.example.test. at
// 127.0.0.2 (ns1) and 127.0.0.3 (ns2), and whatever a case needs besides.

// dlgNode is one meridian node of a lab.
type dlgNode struct {
	ip    string // 127.0.0.x
	cfg   string // TOML; dns.listen is set to ip:port
	files map[string]string
}

// dlgParent serves example.test. with the records given (the delegation).
func dlgParent(records string) dlgNode {
	return dlgNode{ip: "127.0.0.1", cfg: dlgZoneConfig("example.test.", 3600, 1, "ns.example.test."),
		files: map[string]string{"zone": "$ORIGIN example.test.\nns IN A 127.0.0.1\n" + records}}
}

// dlgGoodDelegation delegates to ns1 and ns2 with glue.
const dlgGoodDelegation = `gslb IN NS ns1.gslb
gslb IN NS ns2.gslb
ns1.gslb IN A 127.0.0.2
ns2.gslb IN A 127.0.0.3
`

// dlgChild serves gslb.example.test. at ip with the serial, NS TTL and NS
// set given; its records give ns1 127.0.0.2, ns2 127.0.0.3, ns3 127.0.0.6.
func dlgChild(ip string, serial, ttl int, ns ...string) dlgNode {
	if len(ns) == 0 {
		ns = []string{"ns1.gslb.example.test.", "ns2.gslb.example.test."}
	}
	cfg := dlgZoneConfig("gslb.example.test.", ttl, serial, ns...) + `
[[services]]
name      = "api.gslb.example.test."
ttl       = 20
endpoints = [{ name = "use1", region = "lab", address = "192.0.2.10" }]
`
	return dlgNode{ip: ip, cfg: cfg, files: map[string]string{"zone": `$ORIGIN gslb.example.test.
ns1 IN A 127.0.0.2
ns2 IN A 127.0.0.3
ns3 IN A 127.0.0.6
`}}
}

func dlgZoneConfig(origin string, ttl, serial int, ns ...string) string {
	return fmt.Sprintf(`
[node]
name   = "lab"
region = "lab"
[regions.lab]
[[zones]]
origin     = %q
ttl        = %d
serial     = %d
ns         = ["%s"]
hostmaster = "hostmaster.example.test."
records    = "zone"
`, origin, ttl, serial, strings.Join(ns, `", "`))
}

// dlgLab starts nodes on one free port (trying another when a bind fails)
// and binds a UDP socket that never answers at every address in silent.
// Everything is stopped when the test ends. It returns the port.
func dlgLab(t *testing.T, nodes []dlgNode, silent ...string) int {
	t.Helper()
	for range 5 {
		port := freePort(t)
		ctx, cancel := context.WithCancel(context.Background())
		var dones []chan error
		stop := func() {
			cancel()
			for _, d := range dones {
				if err := <-d; err != nil {
					t.Errorf("lab node: %v", err)
				}
			}
		}
		err := dlgSilent(t, silent, port)
		for _, n := range nodes {
			if err != nil {
				break
			}
			var done chan error
			done, err = dlgStart(t, ctx, n, port)
			if done != nil {
				dones = append(dones, done)
			}
		}
		if err == nil {
			t.Cleanup(stop)
			return port
		}
		stop()
		if !errors.Is(err, syscall.EADDRINUSE) {
			t.Fatalf("lab: %v", err)
		}
	}
	t.Fatal("lab: no port free on every address after 5 tries")
	return 0
}

// dlgStart runs one node until ctx ends; done receives Run's error. It
// returns once the node listens, or with the error that stopped it.
func dlgStart(t *testing.T, ctx context.Context, n dlgNode, port int) (chan error, error) {
	cfg := dnstest.Config(t, n.cfg, n.files)
	cfg.DNS.Listen = []string{fmt.Sprintf("%s:%d", n.ip, port)}
	cfg.DNS.UDPSockets = 1
	started := make(chan struct{})
	srv, err := resolver.New(cfg, resolver.Options{Started: func() { close(started) }})
	if err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	select {
	case <-started:
		return done, nil
	case err := <-done:
		done <- nil
		return done, err
	case <-time.After(10 * time.Second):
		t.Fatalf("lab node %s did not start within 10s", n.ip)
		return nil, nil
	}
}

// dlgSilent binds UDP sockets that read nothing and answer nothing.
func dlgSilent(t *testing.T, ips []string, port int) error {
	for _, ip := range ips {
		c, err := net.ListenPacket("udp", fmt.Sprintf("%s:%d", ip, port))
		if err != nil {
			return err
		}
		t.Cleanup(func() { c.Close() })
	}
	return nil
}

// dlgCheck runs `meridian delegation check` and returns its exit status
// and its output with table padding squeezed.
func dlgCheck(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var out, errb strings.Builder
	code := run(t.Context(), append([]string{"delegation", "check"}, args...), &out, &errb)
	t.Logf("meridian delegation check %s: exit %d\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
	return code, squeeze(out.String())
}

// dlgLines returns the output's finding lines of a severity.
func dlgLines(out, severity string) []string {
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, severity+" ") {
			lines = append(lines, l)
		}
	}
	return lines
}

const (
	dlgNS   = "ns1.gslb.example.test., ns2.gslb.example.test."
	dlgGlue = "ns1.gslb.example.test. 127.0.0.2; ns2.gslb.example.test. 127.0.0.3"
)

// TestDelegationCheckRight: a delegation that matches its servers passes
// with every finding ok.
func TestDelegationCheckRight(t *testing.T) {
	t.Parallel()
	port := dlgLab(t, []dlgNode{dlgParent(dlgGoodDelegation), dlgChild("127.0.0.2", 1, 3600), dlgChild("127.0.0.3", 1, 3600)})
	code, out := dlgCheck(t, "gslb.example.test", "-parent", fmt.Sprintf("127.0.0.1:%d", port), "-port", fmt.Sprint(port))
	if code != 0 {
		t.Errorf("exit %d, want 0:\n%s", code, out)
	}
	p := fmt.Sprint(port)
	for _, want := range []string{
		"ok parent parent server 127.0.0.1 (127.0.0.1:" + p + ") delegates gslb.example.test. to " + dlgNS + " (NS TTL 3600 s; glue: " + dlgGlue + ")",
		"ok server ns1.gslb.example.test. (127.0.0.2:" + p + ") answers authoritatively: SOA serial 1, NS " + dlgNS + " (TTL 3600 s)",
		"ok server ns2.gslb.example.test. (127.0.0.3:" + p + ") answers authoritatively: SOA serial 1, NS " + dlgNS + " (TTL 3600 s)",
		"ok ns the parent and the zone list the same NS set: " + dlgNS,
		"ok soa every server that answered (2) has SOA serial 1",
		"ok ttl NS TTL 3600 s at the parent, 3600 s in the zone",
		"ok glue the glue for ns1.gslb.example.test. (127.0.0.2) matches the zone's own address records",
		"ok glue the glue for ns2.gslb.example.test. (127.0.0.3) matches the zone's own address records",
		"the delegation is sound: 0 error(s), 0 warning(s)",
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if bad := append(dlgLines(out, "error"), dlgLines(out, "warning")...); len(bad) > 0 {
		t.Errorf("findings that are not ok: %q", bad)
	}
}

// TestDelegationCheckWrong: each wrong delegation fails (exit 1) with its
// own finding, said exactly.
func TestDelegationCheckWrong(t *testing.T) {
	t.Parallel()
	child1, child2 := dlgChild("127.0.0.2", 1, 3600), dlgChild("127.0.0.3", 1, 3600)
	cases := []struct {
		name   string
		nodes  []dlgNode
		silent []string
		args   []string
		want   []string // findings, with PORT for the lab's port
	}{
		{name: "NS sets differ",
			nodes: []dlgNode{dlgParent(dlgGoodDelegation),
				dlgChild("127.0.0.2", 1, 3600, "ns1.gslb.example.test.", "ns2.gslb.example.test.", "ns3.gslb.example.test."),
				dlgChild("127.0.0.3", 1, 3600, "ns1.gslb.example.test.", "ns2.gslb.example.test.", "ns3.gslb.example.test.")},
			want: []string{"error ns NS sets differ: the parent lists " + dlgNS + "; the zone's servers list " + dlgNS +
				", ns3.gslb.example.test.; only in the zone: ns3.gslb.example.test."}},
		{name: "glue points at an address with no server",
			nodes: []dlgNode{dlgParent(strings.Replace(dlgGoodDelegation, "ns2.gslb IN A 127.0.0.3", "ns2.gslb IN A 127.0.0.4", 1)), child1, child2},
			want: []string{"error server ns2.gslb.example.test. (127.0.0.4:PORT) does not answer: connection refused: nothing listens on udp port PORT",
				"error glue the glue for ns2.gslb.example.test. at the parent (127.0.0.4) differs from the zone's own address records (127.0.0.3, from ns1.gslb.example.test. (127.0.0.2:PORT))"}},
		{name: "glue points at a server that never answers",
			nodes:  []dlgNode{dlgParent(strings.Replace(dlgGoodDelegation, "ns2.gslb IN A 127.0.0.3", "ns2.gslb IN A 127.0.0.5", 1)), child1, child2},
			silent: []string{"127.0.0.5"},
			want:   []string{"error server ns2.gslb.example.test. (127.0.0.5:PORT) does not answer: no answer over udp within 300ms, 2 tries"}},
		{name: "lame server answers REFUSED",
			nodes: []dlgNode{dlgParent(dlgGoodDelegation), child1,
				{ip: "127.0.0.3", cfg: dlgZoneConfig("other.test.", 3600, 1, "ns.other.test."), files: map[string]string{"zone": ""}}},
			want: []string{"error server ns2.gslb.example.test. (127.0.0.3:PORT) is lame: it answers REFUSED for gslb.example.test., so it does not serve the zone"}},
		{name: "lame server answers with a referral",
			nodes: []dlgNode{dlgParent(strings.Replace(dlgGoodDelegation, "ns2.gslb IN A 127.0.0.3", "ns2.gslb IN A 127.0.0.1", 1)), child1},
			want: []string{"error server ns2.gslb.example.test. (127.0.0.1:PORT) is lame: it answers with a referral to gslb.example.test. at " + dlgNS +
				", not authoritatively (AA clear): it does not serve gslb.example.test. itself"}},
		{name: "SOA serials differ",
			nodes: []dlgNode{dlgParent(dlgGoodDelegation), child1, dlgChild("127.0.0.3", 2, 3600)},
			want:  []string{"error soa SOA serials differ: 1 at ns1.gslb.example.test. (127.0.0.2:PORT), 2 at ns2.gslb.example.test. (127.0.0.3:PORT): the servers serve different versions of the zone"}},
		{name: "glue missing for a server inside the zone",
			nodes: []dlgNode{dlgParent(strings.Replace(dlgGoodDelegation, "ns2.gslb IN A 127.0.0.3\n", "", 1)), child1, child2},
			want: []string{"error glue no glue for ns2.gslb.example.test.: it lies inside gslb.example.test., so resolvers cannot find its address",
				"ok glue ns2.gslb.example.test. is 127.0.0.3 according to ns1.gslb.example.test. (127.0.0.2:PORT): checked at that address",
				"ok server ns2.gslb.example.test. (127.0.0.3:PORT) answers authoritatively: SOA serial 1, NS " + dlgNS + " (TTL 3600 s)"}},
		{name: "no delegation at all",
			nodes: []dlgNode{dlgParent("www IN A 192.0.2.80\n"), child1, child2},
			want: []string{"error parent parent server 127.0.0.1 (127.0.0.1:PORT) says gslb.example.test. does not exist (NXDOMAIN): there is no delegation",
				"error parent no parent server gives a delegation for gslb.example.test."}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			port := dlgLab(t, c.nodes, c.silent...)
			p := fmt.Sprint(port)
			args := append([]string{"gslb.example.test.", "-parent", "127.0.0.1:" + p, "-port", p, "-query-timeout", "300ms"}, c.args...)
			code, out := dlgCheck(t, args...)
			if code != 1 {
				t.Errorf("exit %d, want 1:\n%s", code, out)
			}
			for _, w := range c.want {
				if w = strings.ReplaceAll(w, "PORT", p); !strings.Contains(out, w+"\n") {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

// TestDelegationCheckShortTTL: very short NS TTLs are warnings, which do
// not fail the check.
func TestDelegationCheckShortTTL(t *testing.T) {
	t.Parallel()
	port := dlgLab(t, []dlgNode{dlgParent(dlgGoodDelegation), dlgChild("127.0.0.2", 1, 30), dlgChild("127.0.0.3", 1, 30)})
	code, out := dlgCheck(t, "gslb.example.test.", "-parent", fmt.Sprintf("127.0.0.1:%d", port), "-port", fmt.Sprint(port))
	if code != 0 {
		t.Errorf("exit %d, want 0:\n%s", code, out)
	}
	want := []string{"warning ttl the zone's NS TTL of 30 s is very short: resolvers ask for the name servers again every 30 s (300 s or more is usual)"}
	if got := dlgLines(out, "warning"); !slices.Equal(got, want) {
		t.Errorf("warnings:\n got %q\nwant %q", got, want)
	}
	if !strings.Contains(out, "ok ttl NS TTL 3600 s at the parent, 30 s in the zone; resolvers keep the zone's once they have asked it\n") {
		t.Errorf("no TTL comparison:\n%s", out)
	}
}

// TestDelegationCheckFromRoot walks down from a lab root (a node serving
// test. with a cut at example.test.) to the parent, and checks the node's
// configuration against the delegation, in JSON.
func TestDelegationCheckFromRoot(t *testing.T) {
	t.Parallel()
	root := dlgNode{ip: "127.0.0.10", cfg: dlgZoneConfig("test.", 3600, 1, "ns.test."),
		files: map[string]string{"zone": "$ORIGIN test.\nns IN A 127.0.0.10\nexample IN NS ns.example\nns.example IN A 127.0.0.1\n"}}
	child1 := dlgChild("127.0.0.2", 1, 3600)
	port := dlgLab(t, []dlgNode{root, dlgParent(dlgGoodDelegation), child1, dlgChild("127.0.0.3", 1, 3600)})
	p := fmt.Sprint(port)

	// The node's own configuration, as `meridian serve` would read it.
	dir := t.TempDir()
	cfg := strings.Replace(child1.cfg, "[regions.lab]", fmt.Sprintf("[dns]\nlisten = [\"127.0.0.2:%s\"]\n[regions.lab]", p), 1)
	os.WriteFile(filepath.Join(dir, "config.toml"), []byte(cfg), 0o644)
	os.WriteFile(filepath.Join(dir, "zone"), []byte(child1.files["zone"]), 0o644)

	code, out := dlgCheck(t, "-root", "127.0.0.10:"+p, "-port", p, "-config", filepath.Join(dir, "config.toml"), "-json", "gslb.example.test")
	if code != 0 {
		t.Errorf("exit %d, want 0:\n%s", code, out)
	}
	var rep delegation.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("not a JSON report: %v\n%s", err, out)
	}
	if rep.Parent != "example.test." || !slices.Equal(rep.ParentServers, []string{"127.0.0.1:" + p}) {
		t.Errorf("parent %q at %v, want example.test. at 127.0.0.1:%s", rep.Parent, rep.ParentServers, p)
	}
	if !slices.Equal(rep.ParentNS, []string{"ns1.gslb.example.test.", "ns2.gslb.example.test."}) || !slices.Equal(rep.ParentNS, rep.ZoneNS) {
		t.Errorf("parent NS %v, zone NS %v", rep.ParentNS, rep.ZoneNS)
	}
	var msgs []string
	for _, f := range rep.Findings {
		msgs = append(msgs, string(f.Severity)+" "+f.Check+" "+f.Message)
	}
	config := filepath.Join(dir, "config.toml")
	for _, want := range []string{
		"ok parent example.test.: parent server ns.example.test. (127.0.0.1:" + p + ") delegates gslb.example.test. to " + dlgNS + " (NS TTL 3600 s; glue: " + dlgGlue + ")",
		"ok config zones.ns in " + config + " matches the parent's NS set",
		"ok config the zone records in " + config + " give ns1.gslb.example.test. the address 127.0.0.2, as the delegation does",
		"ok config the zone records in " + config + " give ns2.gslb.example.test. the address 127.0.0.3, as the delegation does",
		"ok config this node listens on 127.0.0.2:" + p + " (dns.listen in " + config + "): it is ns1.gslb.example.test. in the delegation",
	} {
		if !slices.Contains(msgs, want) {
			t.Errorf("findings lack %q:\n%s", want, strings.Join(msgs, "\n"))
		}
	}
	for _, m := range msgs {
		if !strings.HasPrefix(m, "ok ") {
			t.Errorf("finding not ok: %s", m)
		}
	}
}

// TestDelegationCheckConfigMismatch: a configuration whose ns list and
// name server addresses differ from the delegation fails the check.
func TestDelegationCheckConfigMismatch(t *testing.T) {
	t.Parallel()
	port := dlgLab(t, []dlgNode{dlgParent(dlgGoodDelegation), dlgChild("127.0.0.2", 1, 3600), dlgChild("127.0.0.3", 1, 3600)})
	p := fmt.Sprint(port)
	dir := t.TempDir()
	config := filepath.Join(dir, "config.toml")
	cfg := dlgZoneConfig("gslb.example.test.", 3600, 1, "ns1.gslb.example.test.", "ns9.gslb.example.test.")
	cfg = strings.Replace(cfg, "[regions.lab]", "[dns]\nlisten = [\"127.0.0.9:53\"]\n[regions.lab]", 1)
	os.WriteFile(config, []byte(cfg), 0o644)
	os.WriteFile(filepath.Join(dir, "zone"), []byte("$ORIGIN gslb.example.test.\nns1 IN A 127.0.0.7\n"), 0o644)
	code, out := dlgCheck(t, "gslb.example.test.", "-parent", "127.0.0.1:"+p, "-port", p, "-config", config)
	if code != 1 {
		t.Errorf("exit %d, want 1:\n%s", code, out)
	}
	for _, want := range []string{
		"error config zones.ns in " + config + " lists ns1.gslb.example.test., ns9.gslb.example.test.; the parent lists " + dlgNS,
		"error config the zone records in " + config + " give ns1.gslb.example.test. the address 127.0.0.7; the delegation points at 127.0.0.2",
		"warning config this node listens on 127.0.0.9:53 (dns.listen in " + config + "), an address no name server of the delegation has",
		"warning config this node listens on port 53 (dns.listen in " + config + "), but name servers are asked on port " + p,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestDelegationCheckUsage: bad invocations are usage errors (exit 2).
func TestDelegationCheckUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"delegation"},
		{"delegation", "verify", "gslb.example.test."},
		{"delegation", "check"},
		{"delegation", "check", "-port", "0", "gslb.example.test."},
		{"delegation", "check", "-parent", "not an address:x", "gslb.example.test."},
		{"delegation", "check", "-root", "example.net", "gslb.example.test."},
		{"delegation", "check", "bad..name"},
		{"delegation", "check", "a.example.", "b.example."},
	} {
		var out, errb strings.Builder
		if code := run(t.Context(), args, &out, &errb); code != 2 || errb.Len() == 0 {
			t.Errorf("%q: exit %d, stderr %q; want 2 with a message", args, code, errb.String())
		}
	}
}
