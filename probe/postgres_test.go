package probe

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"meridian/config"
	"meridian/internal/certtest"
)

// startFakePostgres answers every connection's SSLRequest with answer and,
// for 'S', serves TLS with cfg: just enough of PostgreSQL for the probe.
func startFakePostgres(t *testing.T, answer byte, cfg *tls.Config) Target {
	t.Helper()
	l := listen(t)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go fakePostgresConn(t, c, answer, cfg)
		}
	}()
	return targetOf(t, l.Addr())
}

func fakePostgresConn(t *testing.T, c net.Conn, answer byte, cfg *tls.Config) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var req [8]byte
	if _, err := io.ReadFull(c, req[:]); err != nil || !bytes.Equal(req[:], []byte{0, 0, 0, 8, 4, 210, 22, 47}) {
		t.Errorf("fake postgres: got SSLRequest %v, %v", req, err)
		return
	}
	if _, err := c.Write([]byte{answer}); err != nil || answer != 'S' {
		return
	}
	serveTLS(tls.Server(c, cfg))
}

func TestPostgresFake(t *testing.T) {
	ca := certtest.New(t)
	check := config.Check{Type: "postgres"}
	ours := clientFiles(t, ca, ca, "probe")

	r := run(newSpec(t, check, ours), startFakePostgres(t, 'N', nil))
	wantReason(t, r, ReasonPostgresNoSSL)
	if r.Detail != "postgres: ssl not supported" || r.Phases.FirstByte <= 0 {
		t.Errorf("detail %q, first byte %v", r.Detail, r.Phases.FirstByte)
	}
	wantReason(t, run(newSpec(t, check, ours), startFakePostgres(t, 'E', nil)), ReasonPostgresError)

	for _, v := range tlsVersions {
		t.Run(v.name, func(t *testing.T) {
			tg := startFakePostgres(t, 'S', withMaxVersion(ca.ServerTLS(t), v.v))
			r := run(newSpec(t, check, ours), tg)
			wantReason(t, r, ReasonOK)
			checkTimings(t, r)
			wantReason(t, run(newSpec(t, check, clientFiles(t, certtest.New(t), ca, "probe")), tg), ReasonTLSBadCertificate)
		})
	}
}
