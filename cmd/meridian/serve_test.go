package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"meridian/config"
)

// freePort returns a port that is free for both UDP and TCP on 127.0.0.1.
func freePort(t testing.TB) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// repoConfig copies the repository's config.toml and zone file into a temp
// folder with free DNS and HTTP ports, and returns its path and the ports.
func repoConfig(t *testing.T) (file string, dnsPort, httpPort int) {
	t.Helper()
	dir := t.TempDir()
	data, err := os.ReadFile("../../config.toml")
	if err != nil {
		t.Fatal(err)
	}
	dnsPort, httpPort = freePort(t), freePort(t)
	text := strings.Replace(string(data), `"127.0.0.1:5353"`, fmt.Sprintf(`"127.0.0.1:%d"`, dnsPort), 1)
	text = strings.Replace(text, `"127.0.0.1:9153"`, fmt.Sprintf(`"127.0.0.1:%d"`, httpPort), 1)
	zone, err := os.ReadFile("../../zones/gslb.example.test.zone")
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "zones"), 0o755)
	os.WriteFile(filepath.Join(dir, "zones/gslb.example.test.zone"), zone, 0o644)
	file = filepath.Join(dir, "config.toml")
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return file, dnsPort, httpPort
}

// syncBuffer is a bytes.Buffer safe for the server's log writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startServe runs `meridian serve -config file` in-process until the test ends.
func startServe(t *testing.T, file string, httpPort int) *syncBuffer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuffer{}
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"serve", "-config", file}, io.Discard, logs) }()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("serve exited %d; log:\n%s", code, logs)
		}
	})
	waitReady(t, httpPort, done, logs)
	return logs
}

func waitReady(t *testing.T, httpPort int, done chan int, logs *syncBuffer) {
	t.Helper()
	url := fmt.Sprintf("http://127.0.0.1:%d/readyz", httpPort)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case code := <-done:
			t.Fatalf("serve exited %d before ready; log:\n%s", code, logs)
		default:
		}
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("not ready after 10s; log:\n%s", logs)
}

func digPath(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("dig")
	if err != nil {
		t.Fatal("dig is not installed: run `make test` (scripts/deps.sh) or apt-get install -y bind9-dnsutils")
	}
	return p
}

func dig(t testing.TB, port int, args ...string) string {
	t.Helper()
	all := append([]string{"@127.0.0.1", "-p", fmt.Sprint(port), "+time=2", "+tries=1"}, args...)
	out, err := exec.Command(digPath(t), all...).CombinedOutput()
	if err != nil {
		t.Fatalf("dig %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// TestServeRepoConfigWithDig runs the README's first command on the
// repository's config.toml and asks it with dig, as a newcomer would.
func TestServeRepoConfigWithDig(t *testing.T) {
	file, dnsPort, httpPort := repoConfig(t)
	startServe(t, file, httpPort)
	out := dig(t, dnsPort, "api.gslb.example.test", "+norec")
	if !strings.Contains(out, "status: NOERROR") || !strings.Contains(out, "flags: qr aa;") {
		t.Errorf("api: want NOERROR with qr aa only:\n%s", out)
	}
	short := strings.TrimSpace(dig(t, dnsPort, "api.gslb.example.test", "+short"))
	if !map[string]bool{"192.0.2.10": true, "192.0.2.20": true, "192.0.2.30": true}[short] {
		t.Errorf("api +short = %q, want one of the three endpoints", short)
	}
	out = dig(t, dnsPort, "nx.gslb.example.test", "+nsid")
	for _, want := range []string{"status: NXDOMAIN", `("local-1")`, "IN\tSOA\tns1.gslb.example.test. hostmaster.gslb.example.test."} {
		if !strings.Contains(out, want) {
			t.Errorf("nx: missing %q:\n%s", want, out)
		}
	}
	out = dig(t, dnsPort, "docs.gslb.example.test", "+tcp", "+short")
	if out != "www.gslb.example.test.\n192.0.2.80\n" {
		t.Errorf("docs over tcp = %q, want the CNAME and its target's A", out)
	}
}

// TestMetricsLint scrapes /metrics after a query and lints every meridian
// metric with promlint (names, units, help).
func TestMetricsLint(t *testing.T) {
	file, dnsPort, httpPort := repoConfig(t)
	startServe(t, file, httpPort)
	dig(t, dnsPort, "api.gslb.example.test")
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", httpPort))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`meridian_dns_queries_total{proto="udp",qtype="A"} 1`, "meridian_build_info{",
		`meridian_dns_responses_total{proto="udp",rcode="NOERROR"} 1`} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("metrics lack %q", want)
		}
	}
	problems, err := promlint.New(bytes.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "meridian_") {
			t.Errorf("promlint: %s: %s", p.Metric, p.Text)
		}
	}
}

// TestReloadKeepsOldConfigOnError sends SIGHUP-equivalent reloads: a bad
// file is rejected and the old answers stay; a good one takes effect.
func TestReloadKeepsOldConfigOnError(t *testing.T) {
	file, dnsPort, httpPort := repoConfig(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfgText, _ := os.ReadFile(file)
	f := serveFlags{config: file}
	logs := &syncBuffer{}
	log, _ := newLogger(logs, "text", "info")
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	n, err := newNode(cfg, f, log)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 2)
	go func() { done <- n.dns.Run(ctx) }()
	go func() { done <- n.admin.Run(ctx) }()
	waitReady(t, httpPort, make(chan int), logs)

	os.WriteFile(file, []byte(strings.Replace(string(cfgText), `address = "192.0.2.10"`, `address = "192.0.2.300"`, 1)), 0o644)
	n.reload()
	if !strings.Contains(logs.String(), "reload rejected") || !strings.Contains(logs.String(), `192.0.2.300`) {
		t.Errorf("bad reload not logged with its cause:\n%s", logs)
	}
	if out := dig(t, dnsPort, "api.gslb.example.test", "+short"); out == "" {
		t.Error("no answer after a rejected reload")
	}
	good := strings.Replace(string(cfgText), `weight = 100 },`, `weight = 0 },`, 2)
	os.WriteFile(file, []byte(good), 0o644)
	n.reload()
	for range 20 {
		if out := strings.TrimSpace(dig(t, dnsPort, "api.gslb.example.test", "+short")); out != "192.0.2.30" {
			t.Fatalf("after reload only aps1 has weight: got %q", out)
		}
	}
}
