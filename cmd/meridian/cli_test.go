package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// checkConfig is a configuration with something in every part of the plan:
// gossip, a zone with static records, a weighted and a failover service
// with IPv4 and IPv6 endpoints, a check shared by both (192.0.2.10 is
// probed once), and two warnings.
const checkConfig = `
[node]
name   = "n1"
region = "us-east"

[dns]
listen = ["127.0.0.1:5353"]

[http]
listen   = "0.0.0.0:9153"
insecure = true

[gossip]
bind = "127.0.0.1:7946"
join = ["127.0.0.1:7947"]

[regions.us-east]
location = [39.04, -77.49]

[regions.eu-west]
location = [53.35, -6.26]

[checks.web]
type     = "tcp"
port     = 8443
interval = "5s"
timeout  = "1s"

[[zones]]
origin     = "gslb.example.test."
ttl        = 30
ns         = ["ns1.gslb.example.test."]
hostmaster = "hostmaster.gslb.example.test."
records    = "zones/static.zone"

[[services]]
name        = "api.gslb.example.test."
policy      = "weighted"
ttl         = 20
max_answers = 2
check       = "web"
endpoints = [
  { name = "use1", region = "us-east", address = "192.0.2.10", weight = 3 },
  { name = "euw1", region = "eu-west", address = "192.0.2.20" },
]

[[services]]
name   = "db.gslb.example.test."
policy = "failover"
ttl    = 300
check  = "web"
endpoints = [
  { name = "primary", region = "us-east", address = "192.0.2.10", priority = 1 },
  { name = "standby", region = "eu-west", address = "2001:db8::20", priority = 2 },
]
`

// checkPlan is what `meridian check` prints for checkConfig.
const checkPlan = `node n1 in region us-east; dns on 127.0.0.1:5353; http on 0.0.0.0:9153
gossip on 127.0.0.1:7946 (wan, udp transport), joining [127.0.0.1:7947]

zone gslb.example.test.  ttl 30  ns ns1.gslb.example.test.  static records 2
  api.gslb.example.test.  weighted  ttl 20        max 2     check web   quorum majority  fail_open true
    use1                  us-east   192.0.2.10    weight 3  priority 0  check web
    euw1                  eu-west   192.0.2.20    weight 1  priority 0  check web
  db.gslb.example.test.   failover  ttl 300       max 1     check web   quorum majority  fail_open true
    primary               us-east   192.0.2.10    weight 1  priority 1  check web
    standby               eu-west   2001:db8::20  weight 1  priority 2  check web

probes: 3
  web 192.0.2.10 port 8443 every 5s (timeout 1s, rise 2, fall 2)
  web 192.0.2.20 port 8443 every 5s (timeout 1s, rise 2, fall 2)
  web 2001:db8::20 port 8443 every 5s (timeout 1s, rise 2, fall 2)

3 warning(s):
  http.insecure: the admin API listens on "0.0.0.0:9153" in plain HTTP: anyone who reaches it can read the status and trigger reloads
  gossip.keyring: gossip is not encrypted (allowed only because it is bound to loopback)
  services[1].ttl: 300 s is long for a steered name: resolvers keep a failed endpoint that long
`

// writeFiles writes name → content under a new temporary folder and
// returns the folder.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, text := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestCheckPrintsPlan: `meridian check FILE` on a good file exits 0 and
// prints the plan — zones, names, policies, endpoints, probes (each
// distinct target once) — and the warnings.
func TestCheckPrintsPlan(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"config.toml":       checkConfig,
		"zones/static.zone": "$ORIGIN gslb.example.test.\nns1 IN A 127.0.0.1\nwww IN A 192.0.2.80\n",
	})
	code, stdout, stderr := runCmd(t, "check", filepath.Join(dir, "config.toml"))
	if code != 0 || stderr != "" {
		t.Fatalf("check exited %d, stderr %q", code, stderr)
	}
	if stdout != checkPlan {
		t.Errorf("plan:\n%s\nwant:\n%s", stdout, checkPlan)
	}
}

// TestCheckRejectsBadFile: on a bad file `meridian check` exits 1 and
// prints every problem with its key path on stderr, nothing on stdout; a
// missing file and bad usage fail too.
func TestCheckRejectsBadFile(t *testing.T) {
	bad := strings.NewReplacer(`address = "192.0.2.20"`, `address = "192.0.2.300"`, `ttl         = 20`, `ttl = 0`,
		`records    = "zones/static.zone"`, `records = "zones/missing.zone"`).Replace(checkConfig)
	dir := writeFiles(t, map[string]string{"config.toml": bad})
	file := filepath.Join(dir, "config.toml")
	code, stdout, stderr := runCmd(t, "check", file)
	if code != 1 || stdout != "" {
		t.Fatalf("check of a bad file exited %d, stdout %q", code, stdout)
	}
	for _, want := range []string{
		file + ": 3 problem(s):\n",
		file + `: services[0].ttl: 0 is outside 1..86400`,
		file + `: services[0].endpoints[1].address: "192.0.2.300" is not an IP address`,
		`zones[0].records`, `missing.zone`,
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if got := strings.Count(stderr, "\n"+file+": "); got != 3 {
		t.Errorf("%d problem lines, want 3:\n%s", got, stderr)
	}

	code, stdout, stderr = runCmd(t, "check", filepath.Join(dir, "nope.toml"))
	if code != 1 || stdout != "" || !strings.Contains(stderr, "nope.toml") {
		t.Errorf("missing file: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if code, _, stderr := runCmd(t, "check", "a.toml", "b.toml"); code != 2 || !strings.Contains(stderr, "usage: meridian check") {
		t.Errorf("two files: exit %d, stderr %q", code, stderr)
	}
}

// TestVersion: `meridian version` prints the version set at build time
// with -ldflags -X main.version, the Go version and the platform. The
// binary is built as a release would be.
func TestVersion(t *testing.T) {
	code, stdout, _ := runCmd(t, "version")
	if want := fmt.Sprintf("meridian dev (%s, %s/%s)\n", runtime.Version(), runtime.GOOS, runtime.GOARCH); code != 0 || stdout != want {
		t.Errorf("in-process version: exit %d, %q, want %q", code, stdout, want)
	}
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goTool); err != nil {
		if goTool, err = exec.LookPath("go"); err != nil {
			t.Fatal("the go tool is not found (GOROOT/bin or PATH): install Go 1.26 or run the tests with it on PATH")
		}
	}
	bin := filepath.Join(t.TempDir(), "meridian")
	build := exec.Command(goTool, "build", "-ldflags", "-X main.version=1.2.3-test", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, arg := range []string{"version", "--version"} {
		out, err := exec.Command(bin, arg).CombinedOutput()
		if err != nil || !regexp.MustCompile(`^meridian 1\.2\.3-test \(go1\.\d+\S*, \w+/\w+\)\n$`).Match(out) {
			t.Errorf("meridian %s: %v, %q", arg, err, out)
		}
	}
}

// serveProcess is a `meridian serve` child process (see TestMain) with the
// given arguments; its combined output is kept.
type serveProcess struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan int
}

func startServeProcess(t *testing.T, args ...string) *serveProcess {
	t.Helper()
	p := &serveProcess{out: &syncBuffer{}, done: make(chan int, 1)}
	p.cmd = exec.Command(os.Args[0], "-test.run=^$")
	p.cmd.Env = append(os.Environ(), childEnv+"="+strings.Join(append([]string{"serve"}, args...), "\n"))
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.cmd.Wait()
		p.done <- p.cmd.ProcessState.ExitCode()
	}()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("serve output:\n%s", p.out)
		}
	})
	return p
}

// term sends SIGTERM and returns the exit status, failing the test if the
// process does not exit within limit.
func (p *serveProcess) term(t *testing.T, limit time.Duration) int {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-p.done:
		return code
	case <-time.After(limit):
		t.Fatalf("serve did not exit within %s of SIGTERM", limit)
		return -1
	}
}

// TestServeLogFormatJSON: `serve -log-format json` writes nothing but JSON
// lines, each with time, level and msg, from start to stop.
func TestServeLogFormatJSON(t *testing.T) {
	file, _, httpPort := repoConfig(t)
	p := startServeProcess(t, "-config", file, "-log-format", "json")
	waitReady(t, httpPort, p.done, p.out)
	if code := p.term(t, 20*time.Second); code != 0 {
		t.Fatalf("serve exited %d after SIGTERM", code)
	}
	var msgs []string
	sc := bufio.NewScanner(strings.NewReader(p.out.String()))
	for n := 1; sc.Scan(); n++ {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("line %d is not JSON: %v\n%s", n, err, sc.Text())
		}
		for _, k := range []string{"time", "level", "msg"} {
			if _, ok := rec[k].(string); !ok {
				t.Errorf("line %d has no string %q: %s", n, k, sc.Text())
			}
		}
		msgs = append(msgs, fmt.Sprint(rec["msg"]))
	}
	for _, want := range []string{"dns listening", "meridian started", "meridian stopped"} {
		if !strings.Contains(strings.Join(msgs, "\n"), want) {
			t.Errorf("no %q line among %q", want, msgs)
		}
	}
}

// TestSIGTERMAnswersQueriesInFlight: queries keep coming while the server
// gets SIGTERM; with -lameduck every query sent before the signal is
// answered (and those sent during the lameduck period too), and the
// process then exits 0.
func TestSIGTERMAnswersQueriesInFlight(t *testing.T) {
	file, dnsPort, httpPort := repoConfig(t)
	const lameduck = time.Second
	p := startServeProcess(t, "-config", file, "-lameduck", lameduck.String())
	waitReady(t, httpPort, p.done, p.out)

	// Clients: one query in flight each, bounded in count and time.
	const clients, limit = 4, 200_000
	var (
		signalled atomic.Int64 // UnixNano of the SIGTERM, 0 before
		stop      = make(chan struct{})
		wg        sync.WaitGroup
		sent      atomic.Int64
		mu        sync.Mutex
		before    struct{ sent, answered int }
		after     struct{ sent, answered int }
		unanswers []string
	)
	server := fmt.Sprintf("127.0.0.1:%d", dnsPort)
	for range clients {
		wg.Go(func() {
			c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
			q := new(dns.Msg).SetQuestion("api.gslb.example.test.", dns.TypeA)
			for sent.Add(1) <= limit {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				r, _, err := c.Exchange(q, server)
				ok := err == nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) == 1
				sig := signalled.Load()
				mu.Lock()
				if sig == 0 || start.UnixNano() < sig {
					before.sent++
					if ok {
						before.answered++
					} else if len(unanswers) < 5 {
						unanswers = append(unanswers, fmt.Sprintf("sent %s before the signal: %v %v", time.Unix(0, sig).Sub(start), err, r))
					}
				} else {
					after.sent++
					if ok {
						after.answered++
					}
				}
				mu.Unlock()
			}
		})
	}
	eventually(t, 10*time.Second, "queries flowing", func() bool { return sent.Load() > 500 })
	signalled.Store(time.Now().UnixNano())
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var code int
	select {
	case code = <-p.done:
	case <-time.After(lameduck + 20*time.Second):
		t.Fatal("serve did not exit within 20 s of the lameduck period")
	}
	stopped := time.Since(time.Unix(0, signalled.Load()))
	close(stop)
	wg.Wait()

	t.Logf("before SIGTERM: %d sent, %d answered; after: %d sent, %d answered; exited %s after the signal",
		before.sent, before.answered, after.sent, after.answered, stopped.Round(time.Millisecond))
	if code != 0 {
		t.Errorf("serve exited %d after SIGTERM", code)
	}
	if before.answered != before.sent {
		t.Errorf("%d of %d queries sent before SIGTERM were not answered: %q", before.sent-before.answered, before.sent, unanswers)
	}
	if after.answered == 0 {
		t.Error("no query sent during the lameduck period was answered")
	}
	if stopped < lameduck {
		t.Errorf("serve exited %s after SIGTERM, before the %s lameduck period ended", stopped, lameduck)
	}
}
