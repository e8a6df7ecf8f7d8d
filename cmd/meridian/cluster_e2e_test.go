package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"meridian/health"
	"meridian/internal/certtest"
)

// childEnv makes the test binary run `meridian` itself (see TestMain), so
// that cluster tests start real, separate `meridian serve` processes
// without building a second binary.
const childEnv = "MERIDIAN_TEST_CHILD_ARGS"

func TestMain(m *testing.M) {
	if args := os.Getenv(childEnv); args != "" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := run(ctx, strings.Split(args, "\n"), os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// process is a `meridian serve` child process.
type process struct {
	name string
	cmd  *exec.Cmd
	logs *syncBuffer
	done chan error
}

// startProcess runs `meridian serve -config file` as a child process until
// the test ends (or stop/kill).
func startProcess(t testing.TB, name, file string) *process {
	t.Helper()
	p := &process{name: name, logs: &syncBuffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(os.Args[0], "-test.run=^$")
	p.cmd.Env = append(os.Environ(), childEnv+"=serve\n-config\n"+file)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("%s log:\n%s", name, p.logs)
		}
	})
	return p
}

// stop sends SIGTERM and waits for a clean exit.
func (p *process) stop(t testing.TB) {
	t.Helper()
	if p.cmd.ProcessState != nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("%s: exit after SIGTERM: %v", p.name, err)
		}
	case <-time.After(20 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		t.Errorf("%s: did not stop within 20 s of SIGTERM", p.name)
	}
}

// kill ends the process at once, as a crash would: no gossip leave.
func (p *process) kill() {
	p.cmd.Process.Kill()
	<-p.done
}

// clusterNode is one region's node of a test cluster.
type clusterNode struct {
	name, region               string
	dnsPort, httpPort, gossipP int
	file                       string
	proc                       *process
}

// statusJSON reads the node's /api/v1/status.
func (c *clusterNode) status(t testing.TB) (health.Status, bool) {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/api/v1/status", c.httpPort))
	if err != nil {
		return health.Status{}, false
	}
	defer resp.Body.Close()
	var st health.Status
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&st) != nil {
		return health.Status{}, false
	}
	return st, true
}

// aliveMembers returns the names of the members the node sees alive.
func (c *clusterNode) aliveMembers(t testing.TB) []string {
	st, ok := c.status(t)
	if !ok {
		return nil
	}
	var out []string
	for _, m := range st.Members {
		if m.Alive {
			out = append(out, m.Name)
		}
	}
	return out
}

// clusterOpts are the knobs of a test cluster's configuration.
type clusterOpts struct {
	quorum            string // the service's quorum
	profile           string // gossip profile
	interval, timeout string // the check's
}

// fastCluster suits tests: quick probes, memberlist's "local" timing.
var fastCluster = clusterOpts{quorum: "majority", profile: "local", interval: "250ms", timeout: "200ms"}

// clusterConfig writes node i's configuration: three regions, one node
// each, gossip on loopback with an encrypted keyring, an mTLS https check
// (rise 1, fall 2) of three backends (127.0.0.1-3) and a multivalue service
// over them.
func clusterConfig(t testing.TB, dir string, nodes []*clusterNode, i int, tlsFiles [3]string, keyring string, backendPort int, o clusterOpts) string {
	t.Helper()
	c := nodes[i]
	var join []string
	for _, o := range nodes {
		join = append(join, fmt.Sprintf("%q", fmt.Sprintf("127.0.0.1:%d", o.gossipP)))
	}
	file := filepath.Join(dir, c.name+".toml")
	body := fmt.Sprintf(`
[node]
name = %q
region = %q
[dns]
listen = ["127.0.0.1:%d"]
[http]
listen = "127.0.0.1:%d"
[gossip]
bind = "127.0.0.1:%d"
join = [%s]
profile = %q
cluster = "e2e"
keyring = %q
stale_after = "3s"
[tls]
ca = %q
cert = %q
key = %q
[regions.r1]
[regions.r2]
[regions.r3]
[checks.api]
type = "https"
port = %d
path = "/healthz"
interval = %q
timeout = %q
rise = 1
fall = 2
[[zones]]
origin = "example.test."
ns = ["ns1.example.test."]
[[services]]
name = "api.example.test."
policy = "multivalue"
check = "api"
quorum = %q
endpoints = [
  { name = "one", region = "r1", address = "127.0.0.1" },
  { name = "two", region = "r2", address = "127.0.0.2" },
  { name = "three", region = "r3", address = "127.0.0.3" },
]
`, c.name, c.region, c.dnsPort, c.httpPort, c.gossipP, strings.Join(join, ", "), o.profile, keyring,
		tlsFiles[0], tlsFiles[1], tlsFiles[2], backendPort, o.interval, o.timeout, o.quorum)
	if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

// startClusterProcesses starts three regions of one `meridian serve`
// process each, and three mTLS backends, and waits until every node sees
// every member and answers every endpoint.
func startClusterProcesses(t testing.TB, o clusterOpts) ([]*clusterNode, map[string]*mtlsBackend) {
	t.Helper()
	dir := t.TempDir()
	ca := certtest.New(t)
	caFile, certFile, keyFile := ca.ClientFiles(t, "probe")
	keyring := filepath.Join(dir, "keyring")
	var out, errb strings.Builder
	if code := run(t.Context(), []string{"keygen", "-out", keyring}, &out, &errb); code != 0 {
		t.Fatalf("keygen: %s", errb.String())
	}
	port := freePort(t)
	backends := map[string]*mtlsBackend{}
	for _, ip := range []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"} {
		b := &mtlsBackend{t: t, addr: fmt.Sprintf("%s:%d", ip, port), conf: ca.ServerTLS(t, "127.0.0.1", "127.0.0.2", "127.0.0.3")}
		b.Start()
		t.Cleanup(b.Stop)
		backends[ip] = b
	}
	var nodes []*clusterNode
	for i := range 3 {
		nodes = append(nodes, &clusterNode{name: fmt.Sprintf("node-r%d", i+1), region: fmt.Sprintf("r%d", i+1),
			dnsPort: freePort(t), httpPort: freePort(t), gossipP: freePort(t)})
	}
	for i, c := range nodes {
		c.file = clusterConfig(t, dir, nodes, i, [3]string{caFile, certFile, keyFile}, keyring, port, o)
		c.proc = startProcess(t, c.name, c.file)
	}
	all := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}
	for _, c := range nodes {
		eventually(t, 20*time.Second, c.name+" seeing the whole cluster and answering every endpoint", func() bool {
			return len(c.aliveMembers(t)) == 3 && votingRegions(t, c, "one") == 3 &&
				slices.Equal(answersOf(t, c.dnsPort, "api.example.test"), all)
		})
	}
	return nodes, backends
}

// votingRegions is how many regions vote on the endpoint at node c.
func votingRegions(t testing.TB, c *clusterNode, endpoint string) int {
	st, ok := c.status(t)
	if !ok {
		return 0
	}
	n := 0
	for _, s := range st.Services {
		for _, e := range s.Endpoints {
			if e.Name != endpoint {
				continue
			}
			for _, v := range e.Votes {
				if v.State != "unknown" {
					n++
				}
			}
		}
	}
	return n
}

// everyNodeAnswers waits until every node answers exactly want.
func everyNodeAnswers(t testing.TB, nodes []*clusterNode, limit time.Duration, what string, want ...string) time.Duration {
	t.Helper()
	slices.Sort(want)
	return eventually(t, limit, what, func() bool {
		for _, c := range nodes {
			if !slices.Equal(answersOf(t, c.dnsPort, "api.example.test"), want) {
				return false
			}
		}
		return true
	})
}

// TestClusterProcessesFailover runs three `meridian serve` processes, one
// per region, gossiping over an encrypted keyring: a backend that stops
// leaves every node's answers and comes back to all of them; a node that is
// killed and restarted rejoins with a new epoch, and its votes count again.
func TestClusterProcessesFailover(t *testing.T) {
	nodes, backends := startClusterProcesses(t, fastCluster)

	backends["127.0.0.2"].Stop()
	took := everyNodeAnswers(t, nodes, 10*time.Second, "the stopped backend leaving every node's answers", "127.0.0.1", "127.0.0.3")
	t.Logf("backend removed from every node's answers in %s", took.Round(time.Millisecond))
	for _, c := range nodes {
		if !strings.Contains(c.proc.logs.String(), "endpoint verdict changed") {
			t.Errorf("%s did not log the verdict change:\n%s", c.name, c.proc.logs)
		}
	}
	backends["127.0.0.2"].Start()
	everyNodeAnswers(t, nodes, 10*time.Second, "the restarted backend back in every node's answers", "127.0.0.1", "127.0.0.2", "127.0.0.3")

	// Kill node-r3 (no leave) and start it again: the others see it
	// rejoin, and its new epoch's observations vote again.
	r3 := nodes[2]
	r3.proc.kill()
	r3.proc = startProcess(t, r3.name, r3.file)
	for _, c := range nodes {
		eventually(t, 20*time.Second, c.name+" seeing the restarted node's votes", func() bool {
			return len(c.aliveMembers(t)) == 3 && votingRegions(t, c, "three") == 3
		})
	}
	backends["127.0.0.3"].Stop()
	everyNodeAnswers(t, nodes, 10*time.Second, "a backend stopped after the restart leaving every node's answers", "127.0.0.1", "127.0.0.2")
}
