package probe

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"meridian/config"
	"meridian/internal/certtest"
)

// startTLS serves TLS with cfg on loopback: each connection completes the
// handshake, then waits for the client to close. Handshake errors are sent
// on the returned channel, unread ones dropped.
func startTLS(t testing.TB, cfg *tls.Config) net.Listener {
	t.Helper()
	l := listen(t)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go serveTLS(tls.Server(c, cfg))
		}
	}()
	return l
}

// serveTLS completes the handshake and holds the connection until the
// client closes it (or 10 s pass, bounding the test).
func serveTLS(c *tls.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if c.Handshake() != nil {
		return
	}
	var b [1]byte
	c.Read(b[:])
}

func TestTCP(t *testing.T) {
	s := newSpec(t, config.Check{Type: "tcp"}, config.TLSFiles{})
	r := run(s, targetOf(t, listen(t).Addr()))
	wantReason(t, r, ReasonOK)
	if r.RTT <= 0 || r.Phases.Connect != r.RTT || r.Duration <= 0 {
		t.Errorf("RTT %v, phases %+v, duration %v: want the connect time", r.RTT, r.Phases, r.Duration)
	}
	wantReason(t, run(s, targetOf(t, closedPort(t))), ReasonRefused)
}

func TestTLS(t *testing.T) {
	for _, v := range tlsVersions {
		t.Run(v.name, func(t *testing.T) {
			ca := certtest.New(t)
			tg := targetOf(t, startTLS(t, withMaxVersion(ca.ServerTLS(t), v.v)).Addr())
			check := config.Check{Type: "tls"}

			r := run(newSpec(t, check, clientFiles(t, ca, ca, "probe")), tg)
			wantReason(t, r, ReasonOK)
			if r.Phases.TLSHandshake <= 0 || r.CertExpiry.IsZero() || len(r.Chain) != 2 {
				t.Errorf("handshake %v, expiry %v, chain %+v: want all recorded", r.Phases.TLSHandshake, r.CertExpiry, r.Chain)
			}
			wantReason(t, run(newSpec(t, check, clientFiles(t, certtest.New(t), ca, "probe")), tg), ReasonTLSBadCertificate)
			wantReason(t, run(newSpec(t, check, trustOnly(t, ca)), tg), ReasonTLSBadCertificate)
			wantReason(t, run(newSpec(t, check, clientFiles(t, ca, certtest.New(t), "probe")), tg), ReasonTLSUnknownAuthority)
		})
	}
}

func TestTLSTimeout(t *testing.T) {
	ca := certtest.New(t)
	const timeout = 200 * time.Millisecond
	c := config.Check{Type: "tls"}
	c.Timeout.Duration = timeout
	s := newSpec(t, c, clientFiles(t, ca, ca, "probe"))

	start := time.Now()
	r := run(s, targetOf(t, hangingListener(t).Addr()))
	wantReason(t, r, ReasonTimeout)
	if elapsed := time.Since(start); elapsed > timeout+250*time.Millisecond {
		t.Errorf("probe took %v, want about the %v timeout", elapsed, timeout)
	}
	if r.Detail != "tls handshake: timed out" {
		t.Errorf("detail %q", r.Detail)
	}
}

// TestRotation replaces the client certificate files on disk, as a
// rotation tool does, and expects the next probe to present the new one.
func TestRotation(t *testing.T) {
	for _, check := range []string{"tls", "https"} {
		t.Run(check, func(t *testing.T) {
			ca, other := certtest.New(t), certtest.New(t)
			srv := startHTTPS(t, ca.ServerTLS(t), true, okHandler)
			tg := targetOf(t, srv.Listener.Addr())
			dir := t.TempDir()
			files := config.TLSFiles{CA: rootFile(t, ca), Cert: filepath.Join(dir, "probe.pem"), Key: filepath.Join(dir, "probe.key")}
			install(t, other, files) // a certificate the server does not trust
			s := newSpec(t, config.Check{Type: check}, files)
			wantReason(t, run(s, tg), ReasonTLSBadCertificate)

			install(t, ca, files)
			wantReason(t, run(s, tg), ReasonOK)
			install(t, other, files)
			wantReason(t, run(s, tg), ReasonTLSBadCertificate)
		})
	}
}

// install writes a new client certificate from ca over files' cert and
// key, each by rename, as rotation tools do.
func install(t *testing.T, ca *certtest.CA, files config.TLSFiles) {
	t.Helper()
	_, cert, key := ca.ClientFiles(t, "probe")
	for src, dst := range map[string]string{cert: files.Cert, key: files.Key} {
		b, err := os.ReadFile(src)
		if err == nil {
			err = os.WriteFile(dst+".new", b, 0o600)
		}
		if err == nil {
			err = os.Rename(dst+".new", dst)
		}
		if err != nil {
			t.Fatalf("install %s: %v", dst, err)
		}
	}
}
