package main

import (
	"bytes"
	"crypto/rsa"
	"crypto/tls"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"meridian/internal/certtest"
	"meridian/pki"
)

// certsRun runs `meridian certs args...` and returns its exit code and output.
func certsRun(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = runCerts(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// certsMustRun runs the command and fails the test unless it exits with want.
func certsMustRun(t *testing.T, want int, args ...string) (stdout, stderr string) {
	t.Helper()
	code, stdout, stderr := certsRun(t, args...)
	if code != want {
		t.Fatalf("certs %q: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", args, code, want, stdout, stderr)
	}
	return stdout, stderr
}

func certsCheckMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Mode(); got != want {
		t.Errorf("%s: mode %v, want %v", path, got, want)
	}
}

func TestCertsInitIssueInspect(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	out, _ := certsMustRun(t, 0, "init", dir)
	for _, name := range []string{"root.pem", "root.key", "intermediate.pem", "intermediate.key"} {
		if !strings.Contains(out, "wrote "+filepath.Join(dir, name)) {
			t.Errorf("init output lacks %s:\n%s", name, out)
		}
	}
	certsCheckMode(t, dir, fs.ModeDir|0o700)
	certsCheckMode(t, filepath.Join(dir, "root.key"), 0o600)
	certsCheckMode(t, filepath.Join(dir, "intermediate.key"), 0o600)

	out, _ = certsMustRun(t, 0, "issue", "--dir", dir, "--client", "--cn", "probe")
	pemPath, keyPath := filepath.Join(dir, "probe.pem"), filepath.Join(dir, "probe.key")
	if !strings.Contains(out, "wrote "+pemPath+": client certificate \"probe\"") || !strings.Contains(out, "expires 20") || !strings.Contains(out, "wrote "+keyPath) {
		t.Errorf("issue output:\n%s", out)
	}
	certsCheckMode(t, keyPath, 0o600)
	cert, err := tls.LoadX509KeyPair(pemPath, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(cert.Certificate) != 2 || cert.Leaf.Subject.CommonName != "probe" {
		t.Errorf("probe.pem: %d certificates, CN %q", len(cert.Certificate), cert.Leaf.Subject.CommonName)
	}

	out, _ = certsMustRun(t, 0, "inspect", pemPath, "--ca", filepath.Join(dir, "root.pem"))
	for _, want := range []string{"subject:   CN=probe", "depth:           3\n", "verified:        yes\n", "warnings:        none\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out)
		}
	}
}

func TestCertsIssueServerWithNamesAndDays(t *testing.T) {
	dir := t.TempDir()
	certsMustRun(t, 0, "init", dir)
	certsMustRun(t, 0, "issue", "--dir", dir, "--server", "--client", "--cn", "api", "--dns", "api.internal",
		"--dns", "api", "--ip", "127.0.0.1", "--ip", "::1", "--days", "30", "--rsa", "--out", "api-server")
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "api-server.pem"), filepath.Join(dir, "api-server.key"))
	if err != nil {
		t.Fatal(err)
	}
	leaf := cert.Leaf
	if strings.Join(leaf.DNSNames, ",") != "api.internal,api" || len(leaf.IPAddresses) != 2 || !leaf.IPAddresses[1].Equal(net.IPv6loopback) {
		t.Errorf("SANs: DNS %v, IPs %v", leaf.DNSNames, leaf.IPAddresses)
	}
	if len(leaf.ExtKeyUsage) != 2 {
		t.Errorf("extended key usages %v, want server and client", leaf.ExtKeyUsage)
	}
	if _, isRSA := cert.PrivateKey.(*rsa.PrivateKey); !isRSA {
		t.Errorf("key is %T, want RSA", cert.PrivateKey)
	}
	if d := time.Until(leaf.NotAfter) - 30*24*time.Hour; d.Abs() > time.Minute {
		t.Errorf("expires %v, want in 30 days", leaf.NotAfter)
	}
}

func TestCertsInitRSA(t *testing.T) {
	dir := t.TempDir()
	certsMustRun(t, 0, "init", dir, "--rsa")
	a, err := pki.LoadAuthority(dir)
	if err != nil {
		t.Fatal(err)
	}
	if key, isRSA := a.IntermediateKey.(*rsa.PrivateKey); !isRSA || key.N.BitLen() != 3072 {
		t.Errorf("intermediate key is %T, want RSA 3072", a.IntermediateKey)
	}
}

func TestCertsInitRefusesToOverwrite(t *testing.T) {
	dir := t.TempDir()
	certsMustRun(t, 0, "init", dir)
	before, _ := os.ReadFile(filepath.Join(dir, "root.key"))
	_, errOut := certsMustRun(t, 1, "init", dir)
	after, _ := os.ReadFile(filepath.Join(dir, "root.key"))
	if !strings.Contains(errOut, "already holds a CA") || !bytes.Equal(before, after) {
		t.Errorf("second init: stderr %q, root key changed %v", errOut, !bytes.Equal(before, after))
	}
}

func TestCertsInspectFailures(t *testing.T) {
	ca := certtest.New(t)
	caFile, expired, _ := ca.ExpiredClientFiles(t, "old")
	_, valid, _ := ca.ClientFiles(t, "probe")
	otherCA, _, _ := certtest.New(t).ClientFiles(t, "x")
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"expired", []string{expired, "--ca", caFile}, 1, `WARNING: "CN=old" expired`},
		{"too deep", []string{valid, "--ca", caFile, "--max-depth", "2"}, 1, "WARNING: chain depth 3 exceeds the limit of 2"},
		{"depth check off", []string{valid, "--ca", caFile, "--max-depth", "0"}, 0, "depth:           3"},
		{"no CA given", []string{valid}, 0, "verified:        not checked"},
		{"wrong CA", []string{valid, "--ca", otherCA}, 1, "WARNING: chain does not verify"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _ := certsMustRun(t, tt.code, append([]string{"inspect"}, tt.args...)...)
			if !strings.Contains(out, tt.want) {
				t.Errorf("output lacks %q:\n%s", tt.want, out)
			}
		})
	}
}

func TestCertsErrors(t *testing.T) {
	dir := t.TempDir()
	certsMustRun(t, 0, "init", dir)
	missing := filepath.Join(t.TempDir(), "missing")
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no command", nil, 2, "usage:"},
		{"unknown command", []string{"renew"}, 2, `unknown command "renew"`},
		{"unknown flag", []string{"init", dir, "--ecdsa"}, 2, "flag provided but not defined: -ecdsa"},
		{"help", []string{"init", "-h"}, 0, "usage: meridian certs init DIR"},
		{"init without dir", []string{"init"}, 2, "want 1 argument(s)"},
		{"issue without cn", []string{"issue", "--dir", dir, "--client"}, 2, "--cn is required"},
		{"issue without usage", []string{"issue", "--dir", dir, "--cn", "x"}, 2, "--client or --server"},
		{"issue bad ip", []string{"issue", "--dir", dir, "--server", "--cn", "x", "--ip", "1.2.3"}, 2, `--ip "1.2.3" is not an IP address`},
		{"issue negative days", []string{"issue", "--dir", dir, "--client", "--cn", "x", "--days", "-1"}, 2, "--days -1 is negative"},
		{"issue over the CA", []string{"issue", "--dir", dir, "--client", "--cn", "x", "--out", "intermediate"}, 2, "would overwrite the CA's files"},
		{"issue path as name", []string{"issue", "--dir", dir, "--client", "--cn", "../x"}, 2, `--cn "../x" is not a plain file name`},
		{"issue server without names", []string{"issue", "--dir", dir, "--server", "--cn", "x"}, 1, "needs a DNS name or an IP address"},
		{"issue without CA", []string{"issue", "--dir", missing, "--client", "--cn", "x"}, 1, "no such file or directory"},
		{"inspect missing file", []string{"inspect", missing}, 1, "no such file or directory"},
		{"inspect bad CA file", []string{"inspect", filepath.Join(dir, "root.pem"), "--ca", filepath.Join(dir, "root.key")}, 1, "no certificate found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errOut := certsMustRun(t, tt.code, tt.args...)
			if !strings.Contains(errOut, tt.want) {
				t.Errorf("stderr lacks %q:\n%s", tt.want, errOut)
			}
		})
	}
}

func TestCertsParseInterspersed(t *testing.T) {
	fs := certsFlagSet("test", "", &bytes.Buffer{})
	rsaFlag := fs.Bool("rsa", false, "")
	positional, err := certsParseInterspersed(fs, []string{"a", "--rsa", "b", "--", "--c"})
	if err != nil || !*rsaFlag || strings.Join(positional, " ") != "a b --c" {
		t.Errorf("positional %q, rsa %v, error %v", positional, *rsaFlag, err)
	}
}
