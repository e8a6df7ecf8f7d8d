package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"testing"
	"time"

	"meridian/config"
	"meridian/internal/certtest"
)

// testTimeout bounds every probe in these tests unless a test sets its own.
const testTimeout = 5 * time.Second

// targetOf returns the Target of a loopback listener's address.
func targetOf(t testing.TB, addr net.Addr) Target {
	t.Helper()
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		t.Fatalf("parse listener address %s: %v", addr, err)
	}
	return Target{Check: "test", Address: ap.Addr(), Port: int(ap.Port())}
}

// newSpec builds a Spec for c with client identity files, failing the test on error.
func newSpec(t testing.TB, c config.Check, files config.TLSFiles) *Spec {
	t.Helper()
	if c.Timeout.Duration == 0 {
		c.Timeout.Duration = testTimeout
	}
	s, err := NewSpec("test", c, files)
	if err != nil {
		t.Fatalf("NewSpec: %v", err)
	}
	return s
}

// clientFiles issues a client certificate with common name cn from ca and
// returns its files, trusting trust's root for servers.
func clientFiles(t testing.TB, ca, trust *certtest.CA, cn string) config.TLSFiles {
	t.Helper()
	_, cert, key := ca.ClientFiles(t, cn)
	return config.TLSFiles{CA: rootFile(t, trust), Cert: cert, Key: key}
}

// trustOnly returns files that trust ca's root and present no certificate.
func trustOnly(t testing.TB, ca *certtest.CA) config.TLSFiles {
	t.Helper()
	return config.TLSFiles{CA: rootFile(t, ca)}
}

// rootFile writes ca's root certificate to a new file and returns its path.
func rootFile(t testing.TB, ca *certtest.CA) string {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "root-*.pem")
	if err == nil {
		_, err = f.Write(ca.RootPEM())
		err = errors.Join(err, f.Close())
	}
	if err != nil {
		t.Fatalf("write root certificate: %v", err)
	}
	return f.Name()
}

// listen opens a TCP listener on a random loopback port, closed at cleanup.
func listen(t testing.TB) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// hangingListener accepts connections and never writes to them: every
// probe against it must end by its deadline.
func hangingListener(t testing.TB) net.Listener {
	t.Helper()
	l := listen(t)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	return l
}

// closedPort returns the address of a loopback port nothing listens on.
func closedPort(t testing.TB) net.Addr {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := l.Addr()
	l.Close()
	return addr
}

// startHTTPS starts an HTTPS server with cfg on loopback; h2 selects
// HTTP/2 by ALPN, else HTTP/1.1.
func startHTTPS(t testing.TB, cfg *tls.Config, h2 bool, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = cfg
	srv.EnableHTTP2 = h2
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // rejected handshakes are expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// okHandler answers 200 with the protocol it was asked over.
var okHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	io.WriteString(w, "healthy over "+r.Proto)
})

// run probes tg with s under the spec's timeout.
func run(s *Spec, tg Target) Result {
	return s.Run(context.Background(), tg)
}

// wantReason fails the test unless r failed with reason (or succeeded, for ReasonOK).
func wantReason(t testing.TB, r Result, reason Reason) {
	t.Helper()
	if r.Reason != reason || r.OK != (reason == ReasonOK) {
		t.Fatalf("got OK=%v reason %q (%s), want reason %q", r.OK, r.Reason, r.Detail, reason)
	}
}

// withMaxVersion returns a copy of cfg limited to TLS version v.
func withMaxVersion(cfg *tls.Config, v uint16) *tls.Config {
	cfg = cfg.Clone()
	cfg.MaxVersion = v
	return cfg
}

// tlsVersions are the versions the mTLS tests run under: TLS 1.2 rejects a
// client certificate inside the handshake, TLS 1.3 after it.
var tlsVersions = []struct {
	name string
	v    uint16
}{{"tls1.2", tls.VersionTLS12}, {"tls1.3", tls.VersionTLS13}}
