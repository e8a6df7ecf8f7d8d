package probe

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"meridian/config"
	"meridian/internal/certtest"
)

// TestPostgresReal starts a real PostgreSQL server that demands client
// certificates ("hostssl all all 127.0.0.1/32 cert") and probes it: our
// certificate is accepted, another CA's is rejected during the handshake.
func TestPostgresReal(t *testing.T) {
	bin := postgresBin(t)
	ca := certtest.New(t)
	tg := startPostgres(t, bin, ca)
	check := config.Check{Type: "postgres"}

	r := run(newSpec(t, check, clientFiles(t, ca, ca, "probe")), tg)
	wantReason(t, r, ReasonOK)
	checkTimings(t, r)
	checkChain(t, r)

	r = run(newSpec(t, check, clientFiles(t, certtest.New(t), ca, "probe")), tg)
	wantReason(t, r, ReasonTLSBadCertificate)
	if r.Detail != "tls: server rejected our client certificate" {
		t.Errorf("detail %q", r.Detail)
	}
	wantReason(t, run(newSpec(t, check, clientFiles(t, ca, certtest.New(t), "probe")), tg), ReasonTLSUnknownAuthority)
}

// postgresBin returns the folder holding initdb and postgres, failing the
// test when PostgreSQL is not installed.
func postgresBin(t *testing.T) string {
	t.Helper()
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	if len(found) == 0 {
		t.Fatal("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres): apt-get install postgresql")
	}
	return filepath.Dir(found[len(found)-1]) // the newest version
}

// startPostgres initialises a cluster in a fresh folder, starts it on a
// free loopback port with TLS from ca, and stops it at cleanup. As root, it
// runs PostgreSQL as the postgres user, since PostgreSQL refuses root.
func startPostgres(t *testing.T, bin string, ca *certtest.CA) Target {
	t.Helper()
	cred, dir := postgresUser(t), postgresDir(t)
	caFile, certFile, keyFile := ca.ServerFiles(t)
	for name, src := range map[string]string{"ca.pem": caFile, "server.pem": certFile, "server.key": keyFile} {
		copyOwned(t, src, filepath.Join(dir, name), cred)
	}
	data := filepath.Join(dir, "data")
	pgRun(t, cred, exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "-A", "trust", "--no-sync"))
	writeOwned(t, filepath.Join(data, "pg_hba.conf"), "hostssl all all 127.0.0.1/32 cert\n", cred)

	port := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "postgres"), "-D", data,
		"-c", "listen_addresses=127.0.0.1", "-c", "port="+strconv.Itoa(port),
		"-c", "unix_socket_directories="+dir, "-c", "ssl=on",
		"-c", "ssl_cert_file="+filepath.Join(dir, "server.pem"),
		"-c", "ssl_key_file="+filepath.Join(dir, "server.key"),
		"-c", "ssl_ca_file="+filepath.Join(dir, "ca.pem"), "-c", "fsync=off")
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGINT) } // fast shutdown
	cmd.WaitDelay = 10 * time.Second
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr, cmd.SysProcAttr = &log, &log, &syscall.SysProcAttr{Credential: cred}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start postgres: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { cancel(); <-exited })
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	waitListening(t, addr, exited, &log)
	return Target{Check: "test", Address: netip.MustParseAddr("127.0.0.1"), Port: port}
}

// waitListening polls addr until it accepts connections, failing the test
// if the server exits or 30 s pass.
func waitListening(t *testing.T, addr string, exited <-chan error, log *bytes.Buffer) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	giveUp := time.After(30 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return
		}
		select {
		case err := <-exited:
			t.Fatalf("postgres exited: %v\n%s", err, log)
		case <-giveUp:
			t.Fatalf("postgres did not listen on %s within 30s\n%s", addr, log)
		case <-tick.C:
		}
	}
}

// postgresUser returns the credentials to run PostgreSQL with: those of
// the postgres user when the test runs as root, else nil (this user).
func postgresUser(t *testing.T) *syscall.Credential {
	t.Helper()
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("running as root, PostgreSQL needs a non-root user: %v (apt-get install postgresql creates \"postgres\")", err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
}

// postgresDir makes a folder the server's user can reach: t.TempDir's
// parents are private to the test's user.
func postgresDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "meridian-pg-*")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if cred := postgresUser(t); cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// pgRun runs cmd as cred, failing the test with its output on error.
func pgRun(t *testing.T, cred *syscall.Credential, cmd *exec.Cmd) {
	t.Helper()
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, out)
	}
}

// copyOwned copies src to dst, mode 0600, owned by cred's user.
func copyOwned(t *testing.T, src, dst string, cred *syscall.Credential) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	writeOwned(t, dst, string(b), cred)
}

// writeOwned writes content to path, mode 0600, owned by cred's user.
func writeOwned(t *testing.T, path, content string, cred *syscall.Credential) {
	t.Helper()
	err := os.WriteFile(path, []byte(content), 0o600)
	if err == nil && cred != nil {
		err = os.Chown(path, int(cred.Uid), int(cred.Gid))
	}
	if err != nil {
		t.Fatal(fmt.Errorf("write %s: %w", path, err))
	}
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	addr := closedPort(t).(*net.TCPAddr)
	return addr.Port
}
