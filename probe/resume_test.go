package probe

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"meridian/config"
	"meridian/internal/certtest"
)

// resumeServer is an mTLS server that counts full, resumed and denied
// handshakes (server side: tls.ConnectionState.DidResume) and can start
// refusing every client certificate by a deny rule, which, like most
// servers' deny lists, runs only on full handshakes.
type resumeServer struct {
	full, resumed, denied atomic.Int64
	deny                  atomic.Bool
}

// config returns ca's server configuration limited to TLS version v, with
// the counting and the deny rule.
func (rs *resumeServer) config(t *testing.T, ca *certtest.CA, v uint16) *tls.Config {
	cfg := withMaxVersion(ca.ServerTLS(t), v)
	cfg.VerifyPeerCertificate = func([][]byte, [][]*x509.Certificate) error {
		if rs.deny.Load() {
			rs.denied.Add(1)
			return errors.New("client certificate denied")
		}
		return nil
	}
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if cs.DidResume {
			rs.resumed.Add(1)
		} else {
			rs.full.Add(1)
		}
		return nil
	}
	return cfg
}

func (rs *resumeServer) handshakes() int64 {
	return rs.full.Load() + rs.resumed.Load() + rs.denied.Load()
}

// resumeProbe is one probe as the server saw it.
type resumeProbe struct {
	at      time.Time
	r       Result
	resumed bool
}

// probe runs s against tg and reports whether the server saw a resumed
// handshake. Probes run one at a time, so the counters tell, once the
// server has judged the probe's handshake: a client that resumed a TLS 1.3
// session may be done before the server has read its last flight.
func (rs *resumeServer) probe(t *testing.T, s *Spec, tg Target) resumeProbe {
	t.Helper()
	resumed, total := rs.resumed.Load(), rs.handshakes()
	p := resumeProbe{at: time.Now(), r: run(s, tg)}
	for deadline := time.Now().Add(5 * time.Second); rs.handshakes() == total; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the server did not judge the probe's handshake (result %+v)", p.r)
		}
	}
	p.resumed = rs.resumed.Load() > resumed
	return p
}

// TestSessionResumption probes every 40 ms with a full handshake forced
// every 400 ms: most probes resume, a full handshake comes within the bound,
// and a server that starts refusing our certificate (on full handshakes
// only) is detected within the bound, after which no probe resumes.
func TestSessionResumption(t *testing.T) {
	const every, interval = 400 * time.Millisecond, 40 * time.Millisecond
	// A full handshake is due at the first probe that starts every after the
	// last accepted one; the slack covers slow probes on a loaded machine.
	const bound = every + interval + 300*time.Millisecond
	for _, v := range tlsVersions {
		for _, kind := range []string{"tls", "https/http1.1", "https/h2"} {
			t.Run(v.name+"/"+kind, func(t *testing.T) {
				ca := certtest.New(t)
				rs := &resumeServer{}
				var tg Target
				check := config.Check{Type: "tls"}
				if kind == "tls" {
					tg = targetOf(t, startTLS(t, rs.config(t, ca, v.v)).Addr())
				} else {
					check = httpsCheck()
					srv := startHTTPS(t, rs.config(t, ca, v.v), kind == "https/h2", okHandler)
					tg = targetOf(t, srv.Listener.Addr())
				}
				s := newSpec(t, check, clientFiles(t, ca, ca, "probe"))
				s.sessions.every = every

				var probes []resumeProbe
				for start := time.Now(); time.Since(start) < 3*every; time.Sleep(interval) {
					p := rs.probe(t, s, tg)
					wantReason(t, p.r, ReasonOK)
					if p.resumed && len(p.r.Chain) != 2 {
						t.Errorf("a resumed probe reports the chain %+v, want the session's leaf and intermediate", p.r.Chain)
					}
					probes = append(probes, p)
				}
				checkFullEvery(t, probes, bound)

				rs.deny.Store(true)
				denied := time.Now()
				var p resumeProbe
				for p = rs.probe(t, s, tg); p.r.OK; p = rs.probe(t, s, tg) {
					if !p.resumed {
						t.Fatal("a full handshake succeeded although the server denies our certificate")
					}
					if time.Since(denied) > 2*bound {
						t.Fatalf("the denial is not detected after %v", time.Since(denied))
					}
					time.Sleep(interval)
				}
				wantReason(t, p.r, ReasonTLSBadCertificate)
				if late := p.at.Sub(denied); late > bound {
					t.Errorf("denial detected %v after it began, want within %v", late, bound)
				}
				for range 3 { // failed: every probe does a full handshake, and fails
					if p := rs.probe(t, s, tg); p.r.Reason != ReasonTLSBadCertificate || p.resumed {
						t.Fatalf("after the denial: reason %q, resumed %v; want a full handshake, rejected", p.r.Reason, p.resumed)
					}
				}
			})
		}
	}
}

// checkFullEvery asserts that probes began with a full handshake, that most
// resumed, and that full handshakes came no further apart than bound.
func checkFullEvery(t *testing.T, probes []resumeProbe, bound time.Duration) {
	t.Helper()
	var fulls []time.Time
	for _, p := range probes {
		if !p.resumed {
			fulls = append(fulls, p.at)
		}
	}
	trace := fmt.Sprintf("%d probes, full handshakes at %v", len(probes), fulls)
	if probes[0].resumed || len(fulls) < 2 || len(probes)-len(fulls) < len(probes)/2 {
		t.Fatalf("want the first probe full, at least two full handshakes and most probes resumed: %s", trace)
	}
	for i := 1; i < len(fulls); i++ {
		if gap := fulls[i].Sub(fulls[i-1]); gap > bound {
			t.Errorf("full handshakes %v apart, want at most %v: %s", gap, bound, trace)
		}
	}
}

// TestSessionResumptionIdentityChange checks that a new client certificate
// or CA pool on disk forces a full handshake on the next probe.
func TestSessionResumptionIdentityChange(t *testing.T) {
	ca := certtest.New(t)
	rs := &resumeServer{}
	srv := startHTTPS(t, rs.config(t, ca, tls.VersionTLS13), true, okHandler)
	tg := targetOf(t, srv.Listener.Addr())
	dir := t.TempDir()
	files := config.TLSFiles{CA: rootFile(t, ca), Cert: filepath.Join(dir, "probe.pem"), Key: filepath.Join(dir, "probe.key")}
	install(t, ca, files)
	s := newSpec(t, httpsCheck(), files)

	want := func(what string, resumed bool) {
		t.Helper()
		p := rs.probe(t, s, tg)
		wantReason(t, p.r, ReasonOK)
		if p.resumed != resumed {
			t.Errorf("%s: resumed %v, want %v", what, p.resumed, resumed)
		}
	}
	want("first probe", false)
	want("second probe", true)
	install(t, ca, files)
	want("after a new client certificate", false)
	want("then", true)
	copyFile(t, rootFile(t, ca), files.CA)
	want("after a new CA file", false)
	want("then", true)
}

// copyFile replaces dst with src's content by rename.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err == nil {
		err = os.WriteFile(dst+".new", b, 0o600)
	}
	if err == nil {
		err = os.Rename(dst+".new", dst)
	}
	if err != nil {
		t.Fatalf("copy %s to %s: %v", src, dst, err)
	}
}

// TestSessionsPerTarget checks that two targets sharing a server name (one
// crypto/tls cache key) and a ticket key keep separate sessions: the second
// target's first probe is a full handshake, although it would accept the
// first target's ticket.
func TestSessionsPerTarget(t *testing.T) {
	ca := certtest.New(t)
	rs := &resumeServer{}
	cfg := rs.config(t, ca, tls.VersionTLS13)
	cfg.SetSessionTicketKeys([][32]byte{{1, 2, 3}})
	a, b := startHTTPS(t, cfg, true, okHandler), startHTTPS(t, cfg, true, okHandler)
	check := httpsCheck()
	check.ServerName = "127.0.0.1"
	s := newSpec(t, check, clientFiles(t, ca, ca, "probe"))
	for i, srv := range []*httptest.Server{a, a, b, b} {
		p := rs.probe(t, s, targetOf(t, srv.Listener.Addr()))
		wantReason(t, p.r, ReasonOK)
		if p.resumed != (i%2 == 1) {
			t.Errorf("probe %d resumed %v, want a full handshake first on each target, then resumption", i, p.resumed)
		}
	}
}
