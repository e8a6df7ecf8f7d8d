// Package certtest mints throwaway mutual-TLS material for tests: a fresh pki
// Authority per test, tls.Configs for loopback servers and clients, and PEM files
// under the test's temporary directory for code configured from files.
//
// Every helper fails the test (t.Fatal) on error, so callers need no checks.
package certtest

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"meridian/pki"
)

// defaultNames are the names a loopback server certificate carries by default.
var defaultNames = []string{"127.0.0.1", "localhost"}

// fileSeq numbers the files written by all CAs, so no call overwrites another's.
var fileSeq atomic.Int64

// CA is a test certificate authority. Its files are written to Dir.
type CA struct {
	*pki.Authority
	Dir string // t.TempDir() of the test that created the CA
}

// New mints a fresh Authority for the test (ECDSA, fast) and writes its root
// certificate to Dir/ca.pem, the caFile the *Files helpers return.
func New(t testing.TB) *CA {
	t.Helper()
	a, err := pki.NewAuthority(pki.AuthorityOptions{CommonName: "certtest root CA", KeyType: pki.ECDSA})
	if err != nil {
		t.Fatalf("certtest: %v", err)
	}
	c := &CA{Authority: a, Dir: t.TempDir()}
	if err := os.WriteFile(c.caFile(), a.RootPEM(), 0o644); err != nil {
		t.Fatalf("certtest: write root CA: %v", err)
	}
	return c
}

func (c *CA) caFile() string { return filepath.Join(c.Dir, "ca.pem") }

// ServerTLS returns a tls.Config for a loopback server presenting a certificate for
// names (DNS names or IP strings; default "127.0.0.1" and "localhost") that
// requires and verifies client certificates from this CA.
func (c *CA) ServerTLS(t testing.TB, names ...string) *tls.Config {
	t.Helper()
	return c.serverTLS(t, tls.RequireAndVerifyClientCert, names)
}

// ServerTLSOptional is ServerTLS with client certificates optional: one that is
// given must still verify (tls.VerifyClientCertIfGiven).
func (c *CA) ServerTLSOptional(t testing.TB, names ...string) *tls.Config {
	t.Helper()
	return c.serverTLS(t, tls.VerifyClientCertIfGiven, names)
}

func (c *CA) serverTLS(t testing.TB, auth tls.ClientAuthType, names []string) *tls.Config {
	t.Helper()
	return &tls.Config{
		Certificates: []tls.Certificate{c.tlsCert(t, c.issue(t, serverRequest(names)))},
		ClientAuth:   auth,
		ClientCAs:    c.RootPool(),
		MinVersion:   tls.VersionTLS12,
	}
}

// ClientTLS returns a client tls.Config presenting a client certificate with
// common name cn and trusting only this CA. ServerName is left for the caller
// (tls.Dial derives it from the address).
func (c *CA) ClientTLS(t testing.TB, cn string) *tls.Config {
	t.Helper()
	return &tls.Config{
		Certificates: []tls.Certificate{c.tlsCert(t, c.issue(t, clientRequest(cn)))},
		RootCAs:      c.RootPool(),
		MinVersion:   tls.VersionTLS12,
	}
}

// ClientFiles writes a client certificate with common name cn (chain included) and
// its key to Dir and returns their paths with the root CA's.
func (c *CA) ClientFiles(t testing.TB, cn string) (caFile, certFile, keyFile string) {
	t.Helper()
	return c.writeLeaf(t, "client", c.issue(t, clientRequest(cn)))
}

// ExpiredClientFiles is ClientFiles with a certificate that expired yesterday.
func (c *CA) ExpiredClientFiles(t testing.TB, cn string) (caFile, certFile, keyFile string) {
	t.Helper()
	req := clientRequest(cn)
	now := time.Now()
	req.NotBefore, req.NotAfter = now.Add(-48*time.Hour), now.Add(-24*time.Hour)
	return c.writeLeaf(t, "expired-client", c.issue(t, req))
}

// ServerFiles writes a server certificate for names (as for ServerTLS) and its key
// to Dir and returns their paths with the root CA's, for servers configured from
// files such as PostgreSQL. The key file has mode 0600.
func (c *CA) ServerFiles(t testing.TB, names ...string) (caFile, certFile, keyFile string) {
	t.Helper()
	return c.writeLeaf(t, "server", c.issue(t, serverRequest(names)))
}

// writeLeaf saves leaf under a name unique to this call.
func (c *CA) writeLeaf(t testing.TB, kind string, leaf *pki.Leaf) (caFile, certFile, keyFile string) {
	t.Helper()
	name := fmt.Sprintf("%s-%d", kind, fileSeq.Add(1))
	if err := leaf.Save(c.Dir, name); err != nil {
		t.Fatalf("certtest: %v", err)
	}
	return c.caFile(), filepath.Join(c.Dir, name+".pem"), filepath.Join(c.Dir, name+".key")
}

func (c *CA) issue(t testing.TB, req pki.LeafRequest) *pki.Leaf {
	t.Helper()
	leaf, err := c.Issue(req)
	if err != nil {
		t.Fatalf("certtest: %v", err)
	}
	return leaf
}

func (c *CA) tlsCert(t testing.TB, leaf *pki.Leaf) tls.Certificate {
	t.Helper()
	cert, err := leaf.TLSCertificate()
	if err != nil {
		t.Fatalf("certtest: %v", err)
	}
	return cert
}

func clientRequest(cn string) pki.LeafRequest {
	return pki.LeafRequest{CommonName: cn, Client: true}
}

// serverRequest splits names into IP and DNS subject alternative names; the first
// name is also the common name.
func serverRequest(names []string) pki.LeafRequest {
	if len(names) == 0 {
		names = defaultNames
	}
	req := pki.LeafRequest{CommonName: names[0], Server: true}
	for _, name := range names {
		if ip := net.ParseIP(name); ip != nil {
			req.IPs = append(req.IPs, ip)
		} else {
			req.DNSNames = append(req.DNSNames, name)
		}
	}
	return req
}
