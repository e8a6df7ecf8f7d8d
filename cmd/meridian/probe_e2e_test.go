package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"meridian/internal/certtest"
)

// mtlsBackend is an HTTPS server demanding client certificates from ca,
// listening on addr; Stop and Start take it down and bring it back.
type mtlsBackend struct {
	t    testing.TB
	addr string
	conf *tls.Config
	srv  *http.Server
}

func (b *mtlsBackend) Start() {
	b.t.Helper()
	var l net.Listener
	var err error
	for range 50 { // the port may linger briefly after Stop
		if l, err = tls.Listen("tcp", b.addr, b.conf); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		b.t.Fatalf("backend %s: %v", b.addr, err)
	}
	b.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })}
	go b.srv.Serve(l)
}

func (b *mtlsBackend) Stop() { b.srv.Close() }

// answersOf asks dig for name's A records, sorted.
func answersOf(t testing.TB, port int, name string) []string {
	lines := strings.Fields(dig(t, port, name, "+short"))
	slices.Sort(lines)
	return lines
}

// eventually polls cond every 50 ms until it holds or limit passes.
func eventually(t testing.TB, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < limit {
		if cond() {
			return time.Since(start)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s", what, limit)
	return 0
}

// twoBackendConfig is a one-node configuration whose service api.example.test
// answers two endpoints, one (127.0.0.1) and two (127.0.0.2), both checked
// with an mTLS https probe on backendPort: the node of the probe, /ui and
// failover tests.
type twoBackendConfig struct {
	name, region                   string
	interval, timeout              string // of the check; rise 1, fall 2
	dnsPort, httpPort, backendPort int
	ca, cert, key                  string // the probe's client identity
}

// write writes the configuration to file.
func (c twoBackendConfig) write(t testing.TB, file string) {
	t.Helper()
	toml := fmt.Sprintf(`
[node]
name = %[1]q
region = %[2]q
[regions.%[2]s]
[dns]
listen = ["127.0.0.1:%[3]d"]
[http]
listen = "127.0.0.1:%[4]d"
[tls]
ca = %[5]q
cert = %[6]q
key = %[7]q
[checks.api]
type = "https"
port = %[8]d
path = "/healthz"
interval = %[9]q
timeout = %[10]q
rise = 1
fall = 2
[[zones]]
origin = "example.test."
ns = ["ns1.example.test."]
[[services]]
name = "api.example.test."
policy = "multivalue"
check = "api"
endpoints = [
  { name = "one", region = %[2]q, address = "127.0.0.1" },
  { name = "two", region = %[2]q, address = "127.0.0.2" },
]
`, c.name, c.region, c.dnsPort, c.httpPort, c.ca, c.cert, c.key, c.backendPort, c.interval, c.timeout)
	if err := os.WriteFile(file, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
}

// twoBackendNode is a running serve node of twoBackendConfig with its two
// backends.
type twoBackendNode struct {
	backends          map[string]*mtlsBackend // by address: 127.0.0.1, 127.0.0.2
	dnsPort, httpPort int
	logs              *syncBuffer
}

// startTwoBackendNode starts two mTLS backends (127.0.0.1 and 127.0.0.2,
// demanding client certificates) and an in-process serve node of
// twoBackendConfig (interval 200 ms, timeout 150 ms) probing them, and
// waits until the node answers both.
func startTwoBackendNode(t *testing.T, name, region string) twoBackendNode {
	t.Helper()
	ca := certtest.New(t)
	caFile, certFile, keyFile := ca.ClientFiles(t, "probe")
	port := freePort(t)
	n := twoBackendNode{backends: map[string]*mtlsBackend{}, dnsPort: freePort(t), httpPort: freePort(t)}
	for _, ip := range []string{"127.0.0.1", "127.0.0.2"} {
		b := &mtlsBackend{t: t, addr: fmt.Sprintf("%s:%d", ip, port), conf: ca.ServerTLS(t, "127.0.0.1", "127.0.0.2")}
		b.Start()
		t.Cleanup(b.Stop)
		n.backends[ip] = b
	}
	file := filepath.Join(t.TempDir(), "config.toml")
	twoBackendConfig{name: name, region: region, interval: "200ms", timeout: "150ms",
		dnsPort: n.dnsPort, httpPort: n.httpPort, backendPort: port, ca: caFile, cert: certFile, key: keyFile}.write(t, file)
	n.logs = startServe(t, file, n.httpPort)
	eventually(t, 5*time.Second, "both backends answered", func() bool {
		return slices.Equal(answersOf(t, n.dnsPort, "api.example.test"), []string{"127.0.0.1", "127.0.0.2"})
	})
	return n
}

// TestServeProbesDriveAnswers runs serve with an mTLS https check over two
// real backends, stops one, and checks it leaves the answers within
// fall × interval + timeout (plus scheduling slack), then returns after it
// restarts.
func TestServeProbesDriveAnswers(t *testing.T) {
	n := startTwoBackendNode(t, "e2e", "r1")
	backends, dnsPort, httpPort, logs := n.backends, n.dnsPort, n.httpPort, n.logs
	both := []string{"127.0.0.1", "127.0.0.2"}

	backends["127.0.0.2"].Stop()
	// fall × interval + timeout = 550 ms; the bound leaves room for a loaded
	// machine (the figure itself is measured by BenchmarkFailoverRemoval).
	eventually(t, 3*time.Second, "stopped backend removed", func() bool {
		return slices.Equal(answersOf(t, dnsPort, "api.example.test"), []string{"127.0.0.1"})
	})
	status := statusOf(t, httpPort)
	for _, want := range []string{"api.example.test.  (multivalue, quorum majority)", "two       127.0.0.2  down", "down (refused)"} {
		if !strings.Contains(status, want) {
			t.Errorf("meridian status lacks %q:\n%s", want, status)
		}
	}
	if !strings.Contains(logs.String(), "target down") || !strings.Contains(logs.String(), "127.0.0.2") {
		t.Errorf("the transition was not logged with its target:\n%s", logs)
	}
	backends["127.0.0.2"].Start()
	eventually(t, 3*time.Second, "restarted backend back", func() bool {
		return slices.Equal(answersOf(t, dnsPort, "api.example.test"), both)
	})
}

// statusOf runs `meridian status` against the node's admin port.
func statusOf(t *testing.T, httpPort int) string {
	t.Helper()
	var out, errb strings.Builder
	if code := run(t.Context(), []string{"status", "-http", fmt.Sprintf("127.0.0.1:%d", httpPort)}, &out, &errb); code != 0 {
		t.Fatalf("meridian status exited %d: %s", code, errb.String())
	}
	return out.String()
}
