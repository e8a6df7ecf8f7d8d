package probe

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"meridian/config"
	"meridian/internal/certtest"
	"meridian/pki"
)

func httpsCheck() config.Check {
	return config.Check{Type: "https", Path: "/healthz", ExpectStatus: []int{200}}
}

func TestHTTPSAccepted(t *testing.T) {
	for _, tc := range []struct {
		name  string
		h2    bool
		proto string
	}{{"http1.1", false, "HTTP/1.1"}, {"h2", true, "HTTP/2.0"}} {
		t.Run(tc.name, func(t *testing.T) {
			ca := certtest.New(t)
			srv := startHTTPS(t, ca.ServerTLS(t), tc.h2, okHandler)
			c := httpsCheck()
			c.ExpectBody = "over " + tc.proto + "$" // the body names the protocol used
			s := newSpec(t, c, clientFiles(t, ca, ca, "probe"))

			r := run(s, targetOf(t, srv.Listener.Addr()))
			wantReason(t, r, ReasonOK)
			checkTimings(t, r)
			checkChain(t, r)
		})
	}
}

// checkTimings asserts that a successful TLS probe measured every phase.
func checkTimings(t *testing.T, r Result) {
	t.Helper()
	if r.RTT <= 0 || r.RTT != r.Phases.Connect {
		t.Errorf("RTT %v, connect %v: want equal and positive", r.RTT, r.Phases.Connect)
	}
	if r.Phases.TLSHandshake <= 0 || r.Phases.FirstByte <= 0 {
		t.Errorf("phases %+v: want every phase positive", r.Phases)
	}
	if r.Start.IsZero() || r.Duration < r.Phases.Connect+r.Phases.TLSHandshake {
		t.Errorf("start %v, duration %v: want set and covering the phases %+v", r.Start, r.Duration, r.Phases)
	}
}

// checkChain asserts that r recorded the server's chain: leaf, then the
// intermediate, with the earliest expiry.
func checkChain(t *testing.T, r Result) {
	t.Helper()
	if len(r.Chain) != 2 {
		t.Fatalf("chain has %d certificates, want leaf and intermediate: %+v", len(r.Chain), r.Chain)
	}
	if !r.CertExpiry.Equal(r.Chain[0].NotAfter) || r.CertExpiry.IsZero() {
		t.Errorf("CertExpiry %v, want the leaf's NotAfter %v", r.CertExpiry, r.Chain[0].NotAfter)
	}
	if !strings.Contains(r.Chain[1].Subject, "intermediate") || r.Chain[0].Issuer != r.Chain[1].Subject {
		t.Errorf("chain %+v: want leaf issued by the intermediate", r.Chain)
	}
}

func TestHTTPSClientCertRejected(t *testing.T) {
	cases := []struct {
		name  string
		files func(t *testing.T, ca *certtest.CA) config.TLSFiles
	}{
		{"no client cert", func(t *testing.T, ca *certtest.CA) config.TLSFiles { return trustOnly(t, ca) }},
		{"expired client cert", func(t *testing.T, ca *certtest.CA) config.TLSFiles {
			_, cert, key := ca.ExpiredClientFiles(t, "probe")
			return config.TLSFiles{CA: rootFile(t, ca), Cert: cert, Key: key}
		}},
		{"client cert from another CA", func(t *testing.T, ca *certtest.CA) config.TLSFiles {
			return clientFiles(t, certtest.New(t), ca, "probe")
		}},
	}
	for _, v := range tlsVersions {
		for _, tc := range cases {
			for _, h2 := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/h2=%v", v.name, tc.name, h2), func(t *testing.T) {
					ca := certtest.New(t)
					srv := startHTTPS(t, withMaxVersion(ca.ServerTLS(t), v.v), h2, okHandler)
					s := newSpec(t, httpsCheck(), tc.files(t, ca))

					r := run(s, targetOf(t, srv.Listener.Addr()))
					wantReason(t, r, ReasonTLSBadCertificate)
					if r.Detail != "tls: server rejected our client certificate" {
						t.Errorf("detail %q", r.Detail)
					}
				})
			}
		}
	}
}

func TestHTTPSServerCertRejected(t *testing.T) {
	ca := certtest.New(t)
	past := time.Now().Add(-24 * time.Hour)
	expired := serverTLS(t, ca, pki.LeafRequest{CommonName: "127.0.0.1", IPs: []net.IP{net.IPv4(127, 0, 0, 1)},
		Server: true, NotBefore: past.Add(-24 * time.Hour), NotAfter: past})
	for _, tc := range []struct {
		name   string
		cfg    *tls.Config
		reason Reason
		detail string
	}{
		{"name mismatch", ca.ServerTLS(t, "other.example"), ReasonTLSNameMismatch, `tls: server certificate is not valid for "127.0.0.1"`},
		{"unknown authority", certtest.New(t).ServerTLS(t), ReasonTLSUnknownAuthority, "tls: server certificate signed by an unknown authority"},
		{"expired", expired, ReasonTLSExpired, `tls: server certificate "127.0.0.1" expired at`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startHTTPS(t, tc.cfg, false, okHandler)
			s := newSpec(t, httpsCheck(), clientFiles(t, ca, ca, "probe"))

			r := run(s, targetOf(t, srv.Listener.Addr()))
			wantReason(t, r, tc.reason)
			if !strings.HasPrefix(r.Detail, tc.detail) {
				t.Errorf("detail %q, want prefix %q", r.Detail, tc.detail)
			}
			if r.CertExpiry.IsZero() || len(r.Chain) == 0 {
				t.Errorf("the rejected chain was not recorded: expiry %v, chain %+v", r.CertExpiry, r.Chain)
			}
		})
	}
}

// serverTLS is certtest.ServerTLS with a certificate issued for req.
func serverTLS(t *testing.T, ca *certtest.CA, req pki.LeafRequest) *tls.Config {
	t.Helper()
	leaf, err := ca.Issue(req)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := leaf.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	cfg := ca.ServerTLS(t)
	cfg.Certificates = []tls.Certificate{cert}
	return cfg
}

func TestHTTPSServerNameAndInsecure(t *testing.T) {
	ca := certtest.New(t)
	srv := startHTTPS(t, ca.ServerTLS(t, "api.internal"), false, okHandler)
	tg := targetOf(t, srv.Listener.Addr())

	c := httpsCheck()
	c.ServerName = "api.internal"
	wantReason(t, run(newSpec(t, c, clientFiles(t, ca, ca, "probe")), tg), ReasonOK)

	other := certtest.New(t)
	c = httpsCheck()
	c.InsecureSkipVerify = true // the name and the CA are both wrong, and not checked
	wantReason(t, run(newSpec(t, c, clientFiles(t, ca, other, "probe")), tg), ReasonOK)
}

func TestHTTPSStatusBodyAndRequest(t *testing.T) {
	ca := certtest.New(t)
	srv := startHTTPS(t, ca.ServerTLS(t), false, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/down" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		io.WriteString(w, r.Method+" "+r.Host+" "+r.URL.Path+" "+r.Header.Get("X-Probe"))
	}))
	tg := targetOf(t, srv.Listener.Addr())
	files := clientFiles(t, ca, ca, "probe")
	for _, tc := range []struct {
		name   string
		edit   func(c *config.Check)
		reason Reason
		detail string
	}{
		{"503", func(c *config.Check) { c.Path = "/down" }, ReasonHTTPStatus, "http status 503"},
		{"503 expected", func(c *config.Check) { c.Path, c.ExpectStatus = "/down", []int{503} }, ReasonOK, ""},
		{"body mismatch", func(c *config.Check) { c.ExpectBody = "^healthy" }, ReasonHTTPBody, `http body does not match "^healthy"`},
		{"host and headers", func(c *config.Check) {
			c.Host, c.Headers = "api.example", map[string]string{"X-Probe": "meridian"}
			c.ExpectBody = "^GET api.example /healthz meridian$"
		}, ReasonOK, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := httpsCheck()
			tc.edit(&c)
			r := run(newSpec(t, c, files), tg)
			wantReason(t, r, tc.reason)
			if r.Detail != tc.detail {
				t.Errorf("detail %q, want %q", r.Detail, tc.detail)
			}
		})
	}
}

func TestHTTPSTimeout(t *testing.T) {
	ca := certtest.New(t)
	hung := make(chan struct{})
	t.Cleanup(func() { close(hung) })
	slow := startHTTPS(t, ca.ServerTLS(t), false, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-hung:
		}
	}))
	for _, tc := range []struct {
		name string
		addr net.Addr
	}{
		{"handshake hangs", hangingListener(t).Addr()},
		{"response hangs", slow.Listener.Addr()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const timeout = 300 * time.Millisecond
			c := httpsCheck()
			c.Timeout.Duration = timeout
			s := newSpec(t, c, clientFiles(t, ca, ca, "probe"))

			start := time.Now()
			r := run(s, targetOf(t, tc.addr))
			elapsed := time.Since(start)
			wantReason(t, r, ReasonTimeout)
			if elapsed > timeout+250*time.Millisecond {
				t.Errorf("probe took %v, want at most the %v timeout plus a margin", elapsed, timeout)
			}
		})
	}
}

func TestHTTPSRefused(t *testing.T) {
	ca := certtest.New(t)
	r := run(newSpec(t, httpsCheck(), clientFiles(t, ca, ca, "probe")), targetOf(t, closedPort(t)))
	wantReason(t, r, ReasonRefused)
	if r.Detail != "connect: connection refused" {
		t.Errorf("detail %q", r.Detail)
	}
}
