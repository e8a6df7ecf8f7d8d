package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"meridian/internal/certtest"
)

// probeCmdBackend starts an HTTPS server on loopback that demands a client
// certificate from ca, and returns its port.
func probeCmdBackend(t *testing.T, ca *certtest.CA) int {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") }))
	srv.TLS = ca.ServerTLS(t)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // rejected handshakes are expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().(*net.TCPAddr).Port
}

// probeCmdConfig writes a configuration whose https check "api" is on port
// and presents the client certificate of clientCA, trusting ca's servers.
func probeCmdConfig(t *testing.T, ca, clientCA *certtest.CA, port int) string {
	t.Helper()
	caFile, _, _ := ca.ClientFiles(t, "probe")
	_, certFile, keyFile := clientCA.ClientFiles(t, "probe")
	file := filepath.Join(t.TempDir(), "config.toml")
	err := os.WriteFile(file, []byte(fmt.Sprintf(`
[node]
name = "probe-test"
region = "r1"
[regions.r1]
[dns]
listen = ["127.0.0.1:5353"]
[tls]
ca = %q
cert = %q
key = %q
[checks.api]
type = "https"
port = %d
path = "/healthz"
[checks.ping]
type = "tcp"
port = 7
[[zones]]
origin = "example.test."
ns = ["ns1.example.test."]
[[services]]
name = "api.example.test."
policy = "multivalue"
check = "api"
endpoints = [{ name = "one", region = "r1", address = "127.0.0.1" }]
`, caFile, certFile, keyFile, port)), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	return file
}

// probeCmdRun runs `meridian probe args...` and returns its exit status and output.
func probeCmdRun(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = runProbe(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestProbeCommandUp(t *testing.T) {
	ca := certtest.New(t)
	port := probeCmdBackend(t, ca)
	file := probeCmdConfig(t, ca, ca, port)
	for _, args := range [][]string{
		{"--check", "api", "127.0.0.1", "-config", file},                               // the check's port; flags after the address
		{"-config", file, "--check=api", fmt.Sprintf("127.0.0.1:%d", port)},            // an explicit port
		{"-config", file, "-check", "api", fmt.Sprintf("[::ffff:127.0.0.1]:%d", port)}, // a mapped address is unmapped
	} {
		code, out, stderr := probeCmdRun(t, args...)
		if code != 0 {
			t.Fatalf("%q: exit %d, want 0\nstdout:\n%s\nstderr:\n%s", args, code, out, stderr)
		}
		flat := probeCmdFlat(out)
		for _, want := range []string{
			fmt.Sprintf("probe api/127.0.0.1:%d (https, timeout 1s)", port),
			" connect ", " tls handshake ", " first byte ", " total ", " rtt ",
			"server certificate chain (2): [0] subject CN=127.0.0.1 issuer CN=certtest intermediate CA expires ",
			" dns names localhost [1] subject CN=certtest intermediate CA issuer CN=certtest root CA", "verdict: up",
		} {
			if !strings.Contains(flat, want) {
				t.Errorf("%q: output lacks %q:\n%s", args, want, out)
			}
		}
		if unmeasured := regexp.MustCompile(`(?m)^ +[a-z ]+ +-$`).FindString(out); unmeasured != "" {
			t.Errorf("%q: a phase was not measured: %q\n%s", args, unmeasured, out)
		}
	}
}

// probeCmdFlat returns out with every run of white space as one space.
func probeCmdFlat(out string) string { return strings.Join(strings.Fields(out), " ") }

func TestProbeCommandClientCertRejected(t *testing.T) {
	ca := certtest.New(t)
	port := probeCmdBackend(t, ca)
	file := probeCmdConfig(t, ca, certtest.New(t), port) // a client certificate the server does not trust
	code, out, stderr := probeCmdRun(t, "-config", file, "--check", "api", "127.0.0.1")
	if code != 1 {
		t.Fatalf("exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	for _, want := range []string{"verdict: down reason tls_bad_certificate detail tls: server rejected our client certificate"} {
		if !strings.Contains(probeCmdFlat(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestProbeCommandJSON(t *testing.T) {
	ca := certtest.New(t)
	port := probeCmdBackend(t, ca)
	file := probeCmdConfig(t, ca, ca, port)
	code, out, stderr := probeCmdRun(t, "-config", file, "--check", "api", "127.0.0.1", "-json")
	if code != 0 {
		t.Fatalf("exit %d, want 0\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	var got struct {
		Target string
		OK     bool
		Reason string
		RTT    int64
		Phases struct{ Connect, TLSHandshake, FirstByte int64 }
		Chain  []struct{ Subject string }
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if got.Target != fmt.Sprintf("api/127.0.0.1:%d", port) || !got.OK || got.Reason != "" || got.RTT <= 0 ||
		got.Phases.TLSHandshake <= 0 || got.Phases.FirstByte <= 0 || len(got.Chain) != 2 || got.Chain[0].Subject != "CN=127.0.0.1" {
		t.Errorf("JSON result %+v\n%s", got, out)
	}

	port = freePort(t) // nothing listens: down, still JSON
	code, out, _ = probeCmdRun(t, "-config", file, "--check", "api", fmt.Sprintf("127.0.0.1:%d", port), "-json")
	if code != 1 || !strings.Contains(out, `"Reason": "refused"`) {
		t.Errorf("refused: exit %d, want 1 with the reason:\n%s", code, out)
	}
}

func TestProbeCommandUsage(t *testing.T) {
	ca := certtest.New(t)
	file := probeCmdConfig(t, ca, ca, 443)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-config", file, "--check", "web", "127.0.0.1"}, `has no check "web" (have: api, ping)`},
		{[]string{"-config", file, "127.0.0.1"}, "want --check NAME and one ADDRESS"},
		{[]string{"-config", file, "--check", "api"}, "want --check NAME and one ADDRESS"},
		{[]string{"-config", file, "--check", "api", "127.0.0.1", "127.0.0.2"}, "want --check NAME and one ADDRESS"},
		{[]string{"-config", file, "--check", "api", "api.example.test"}, `ADDRESS "api.example.test" is not an IP address or IP:port`},
		{[]string{"-config", file, "--check", "api", "127.0.0.1:0"}, "no port: give ADDRESS:PORT, or a port in check api"},
		{[]string{"-config", filepath.Join(t.TempDir(), "none.toml"), "--check", "api", "127.0.0.1"}, "no such file or directory"},
		{[]string{"-config", file, "--check", "api", "--bogus", "127.0.0.1"}, "flag provided but not defined: -bogus"},
	} {
		code, out, stderr := probeCmdRun(t, tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.want) || out != "" {
			t.Errorf("%q: exit %d, stderr %q, stdout %q; want 2 and %q", tc.args, code, stderr, out, tc.want)
		}
	}
	if code, _, stderr := probeCmdRun(t, "-h"); code != 0 || !strings.Contains(stderr, "usage: meridian probe") {
		t.Errorf("-h: exit %d, stderr %q", code, stderr)
	}
}
