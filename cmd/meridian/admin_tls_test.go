package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"meridian/internal/certtest"
)

// adminConfig writes a node's configuration whose admin API listens on
// listen with the given extra [http] lines, and returns the file.
func adminConfig(t *testing.T, dnsPort int, listen, httpExtra string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "config.toml")
	err := os.WriteFile(file, []byte(fmt.Sprintf(`
[node]
name = "tls-node"
region = "us-east"
[regions.us-east]
location = [39.04, -77.49]
[dns]
listen = ["127.0.0.1:%d"]
[http]
listen = %q
%s
[[zones]]
origin = "example.test."
ns = ["ns1.example.test."]
[[services]]
name = "api.example.test."
policy = "latency"
endpoints = [{ name = "use1", region = "us-east", address = "192.0.2.1" }]
`, dnsPort, listen, httpExtra)), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	return file
}

// startServeTLS runs `meridian serve` in-process until the test ends and
// waits until /readyz answers 200 to client over base.
func startServeTLS(t *testing.T, file, base string, client *http.Client) *syncBuffer {
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
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case code := <-done:
			t.Fatalf("serve exited %d before ready; log:\n%s", code, logs)
		default:
		}
		if resp, err := client.Get(base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return logs
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready over mTLS after 10s; log:\n%s", logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runCmd runs one meridian command in-process and returns its exit code
// and output.
func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb strings.Builder
	code = run(t.Context(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// TestAdminMutualTLS runs a node whose admin API demands client
// certificates from its CA: `meridian status`, `explain` and the /ui page
// work with the right certificate and are refused without one, with
// another CA's, or over plain HTTP.
func TestAdminMutualTLS(t *testing.T) {
	ca := certtest.New(t)
	caFile, serverCert, serverKey := ca.ServerFiles(t, "127.0.0.1")
	_, clientCert, clientKey := ca.ClientFiles(t, "operator")
	_, foreignCert, foreignKey := certtest.New(t).ClientFiles(t, "intruder")
	dnsPort, httpPort := freePort(t), freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", httpPort)
	file := adminConfig(t, dnsPort, addr, fmt.Sprintf("tls_cert = %q\ntls_key = %q\nclient_ca = %q", serverCert, serverKey, caFile))
	good := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: ca.ClientTLS(t, "operator")}}
	base := "https://" + addr
	logs := startServeTLS(t, file, base, good)
	if !strings.Contains(logs.String(), "tls=true") {
		t.Errorf("the admin listener did not log that it serves TLS:\n%s", logs)
	}

	code, out, errOut := runCmd(t, "status", "-http", addr, "-ca", caFile, "-cert", clientCert, "-key", clientKey)
	if code != 0 || !strings.Contains(out, "node tls-node (us-east)") || !strings.Contains(out, "use1") {
		t.Errorf("status with the client certificate: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runCmd(t, "explain", "api.example.test", "-http", addr, "-ca", caFile, "-cert", clientCert, "-key", clientKey)
	if code != 0 || !strings.Contains(out, `placed in us-east`) {
		t.Errorf("explain with the client certificate: exit %d\n%s%s", code, out, errOut)
	}

	refused := []struct {
		name string
		args []string
		want string
	}{
		{"no client certificate", []string{"-ca", caFile}, "certificate required"},
		{"another CA's certificate", []string{"-ca", caFile, "-cert", foreignCert, "-key", foreignKey}, "unknown certificate authority"},
		{"server not verified", []string{"-cert", clientCert, "-key", clientKey}, "certificate signed by unknown authority"},
		{"plain http", []string{"-http", "http://" + addr}, "400 Bad Request: Client sent an HTTP request to an HTTPS server"},
		{"missing key file", []string{"-ca", caFile, "-cert", clientCert, "-key", clientKey + ".nope"}, "load -cert/-key"},
	}
	for _, c := range refused {
		args := append([]string{"status", "-http", addr}, c.args...)
		code, out, errOut := runCmd(t, args...)
		if code != 1 || out != "" || !strings.Contains(errOut, c.want) {
			t.Errorf("status, %s: exit %d, stdout %q, stderr %q; want exit 1 and %q", c.name, code, out, errOut, c.want)
		}
	}

	resp, err := good.Get(base + "/ui")
	if err != nil {
		t.Fatalf("/ui with the client certificate: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `<tr data-endpoint="use1">`) || resp.Header.Get("Content-Security-Policy") == "" {
		t.Errorf("/ui over mTLS: %d, CSP %q\n%s", resp.StatusCode, resp.Header.Get("Content-Security-Policy"), body)
	}
	noCert := ca.ClientTLS(t, "operator")
	noCert.Certificates = nil
	bad := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: noCert}}
	for _, path := range []string{"/ui", "/api/v1/status", "/metrics"} {
		if resp, err := bad.Get(base + path); err == nil {
			resp.Body.Close()
			t.Errorf("%s was served (%d) to a client without a certificate", path, resp.StatusCode)
		}
	}
}

// TestAdminOffLoopbackNeedsTLS: `meridian check` (no listener is opened)
// refuses an admin API off loopback without TLS, and accepts it with TLS
// or with insecure = true.
func TestAdminOffLoopbackNeedsTLS(t *testing.T) {
	ca := certtest.New(t)
	_, cert, key := ca.ServerFiles(t, "127.0.0.1")
	dnsPort := freePort(t)
	cases := []struct {
		name, extra string
		code        int
		want        string
	}{
		{"plain", "", 1, `http.listen: "0.0.0.0:9153" is not a loopback address: configure tls_cert and tls_key, or set insecure = true`},
		{"insecure", "insecure = true", 0, "http on 0.0.0.0:9153"},
		{"tls", fmt.Sprintf("tls_cert = %q\ntls_key = %q", cert, key), 0, "http on 0.0.0.0:9153"},
	}
	for _, c := range cases {
		file := adminConfig(t, dnsPort, "0.0.0.0:9153", c.extra)
		code, out, errOut := runCmd(t, "check", file)
		if code != c.code || !strings.Contains(out+errOut, c.want) {
			t.Errorf("check, %s: exit %d, want %d with %q:\n%s%s", c.name, code, c.code, c.want, out, errOut)
		}
	}
}
