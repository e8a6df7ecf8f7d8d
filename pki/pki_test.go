package pki_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"meridian/pki"
)

func newAuthority(t testing.TB, kt pki.KeyType) *pki.Authority {
	t.Helper()
	a, err := pki.NewAuthority(pki.AuthorityOptions{KeyType: kt})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func issue(t testing.TB, a *pki.Authority, req pki.LeafRequest) *pki.Leaf {
	t.Helper()
	leaf, err := a.Issue(req)
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}

func clientReq(cn string) pki.LeafRequest {
	return pki.LeafRequest{CommonName: cn, Client: true}
}

func serverReq(names ...string) pki.LeafRequest {
	return pki.LeafRequest{CommonName: names[0], DNSNames: names, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true}
}

// verify checks leaf against a's root for one extended key usage.
func verify(a *pki.Authority, leaf *pki.Leaf, usage x509.ExtKeyUsage) error {
	intermediates := x509.NewCertPool()
	for _, c := range leaf.Chain {
		intermediates.AddCert(c)
	}
	_, err := leaf.Cert.Verify(x509.VerifyOptions{
		Roots:         a.RootPool(),
		Intermediates: intermediates,
		KeyUsages:     []x509.ExtKeyUsage{usage},
	})
	return err
}

func TestIssuedChainsVerifyForTheirUsageOnly(t *testing.T) {
	for _, kt := range []pki.KeyType{pki.ECDSA, pki.RSA} {
		t.Run(string(kt), func(t *testing.T) {
			t.Parallel()
			a := newAuthority(t, kt)
			client := issue(t, a, pki.LeafRequest{CommonName: "probe", Client: true, KeyType: kt})
			server := issue(t, a, pki.LeafRequest{DNSNames: []string{"api.internal"}, Server: true, KeyType: kt})
			checkUsage(t, a, client, x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth)
			checkUsage(t, a, server, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
			checkKeyType(t, client, kt)
		})
	}
}

func checkUsage(t *testing.T, a *pki.Authority, leaf *pki.Leaf, right, wrong x509.ExtKeyUsage) {
	t.Helper()
	if err := verify(a, leaf, right); err != nil {
		t.Errorf("verify %v for usage %v: %v", leaf.Cert.Subject, right, err)
	}
	var invalid x509.CertificateInvalidError
	err := verify(a, leaf, wrong)
	if !errors.As(err, &invalid) || invalid.Reason != x509.IncompatibleUsage {
		t.Errorf("verify %v for usage %v: got %v, want incompatible usage", leaf.Cert.Subject, wrong, err)
	}
}

func checkKeyType(t *testing.T, leaf *pki.Leaf, kt pki.KeyType) {
	t.Helper()
	switch k := leaf.Key.(type) {
	case *ecdsa.PrivateKey:
		if kt != pki.ECDSA || k.Curve.Params().Name != "P-256" {
			t.Errorf("got ECDSA %s key, want %s", k.Curve.Params().Name, kt)
		}
	case *rsa.PrivateKey:
		if kt != pki.RSA || k.N.BitLen() != 2048 {
			t.Errorf("got RSA %d key, want %s", k.N.BitLen(), kt)
		}
	default:
		t.Errorf("got %T key, want %s", k, kt)
	}
}

func TestAuthorityHasCAExtensions(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	a, err := pki.NewAuthority(pki.AuthorityOptions{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	root, inter := a.Root, a.Intermediate
	if !root.IsCA || root.MaxPathLen != 1 || root.Subject.CommonName != "meridian root CA" {
		t.Errorf("root: IsCA %v, MaxPathLen %d, CN %q", root.IsCA, root.MaxPathLen, root.Subject.CommonName)
	}
	if !inter.IsCA || inter.MaxPathLen != 0 || !inter.MaxPathLenZero || inter.Subject.CommonName != "meridian intermediate CA" {
		t.Errorf("intermediate: IsCA %v, MaxPathLen %d (zero %v), CN %q", inter.IsCA, inter.MaxPathLen, inter.MaxPathLenZero, inter.Subject.CommonName)
	}
	for _, c := range []*x509.Certificate{root, inter} {
		if c.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
			t.Errorf("%v: key usage %b", c.Subject, c.KeyUsage)
		}
		if len(c.SubjectKeyId) == 0 || c.SerialNumber.BitLen() > 128 || c.SerialNumber.Sign() <= 0 {
			t.Errorf("%v: subject key id %x, serial %v", c.Subject, c.SubjectKeyId, c.SerialNumber)
		}
	}
	if !bytes.Equal(inter.AuthorityKeyId, root.SubjectKeyId) || root.SerialNumber.Cmp(inter.SerialNumber) == 0 {
		t.Errorf("intermediate AKI %x, root SKI %x; serials %v %v", inter.AuthorityKeyId, root.SubjectKeyId, inter.SerialNumber, root.SerialNumber)
	}
	wantRoot, wantInter := now.AddDate(10, 0, 0), now.AddDate(5, 0, 0)
	if d := root.NotAfter.Sub(wantRoot); d.Abs() > 72*time.Hour {
		t.Errorf("root expires %v, want about %v", root.NotAfter, wantRoot)
	}
	if d := inter.NotAfter.Sub(wantInter); d.Abs() > 72*time.Hour {
		t.Errorf("intermediate expires %v, want about %v", inter.NotAfter, wantInter)
	}
}

func TestIssueDefaultsAndLeafExtensions(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	a, err := pki.NewAuthority(pki.AuthorityOptions{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	leaf := issue(t, a, serverReq("api.internal"))
	c := leaf.Cert
	if !c.NotBefore.Equal(now.Add(-time.Hour)) || !c.NotAfter.Equal(now.Add(397*24*time.Hour)) {
		t.Errorf("validity %v .. %v, want now-1h .. now+397d", c.NotBefore, c.NotAfter)
	}
	if c.IsCA || c.KeyUsage != x509.KeyUsageDigitalSignature || len(c.SubjectKeyId) == 0 {
		t.Errorf("IsCA %v, key usage %b, SKI %x", c.IsCA, c.KeyUsage, c.SubjectKeyId)
	}
	if !bytes.Equal(c.AuthorityKeyId, a.Intermediate.SubjectKeyId) || len(leaf.Chain) != 1 || leaf.Chain[0] != a.Intermediate {
		t.Errorf("leaf is not chained to the intermediate")
	}
}

func TestIssueRejectsBadRequests(t *testing.T) {
	a := newAuthority(t, pki.ECDSA)
	now := time.Now()
	tests := []struct {
		name string
		req  pki.LeafRequest
		want string
	}{
		{"no usage", pki.LeafRequest{CommonName: "x"}, `pki: issue certificate "x": neither client nor server usage requested`},
		{"server without SAN", pki.LeafRequest{CommonName: "x", Server: true}, "needs a DNS name or an IP address"},
		{"no name", pki.LeafRequest{Client: true}, "neither a common name nor"},
		{"inverted validity", pki.LeafRequest{CommonName: "x", Client: true, NotBefore: now, NotAfter: now.Add(-time.Hour)}, "is not later than not before"},
		{"outlives intermediate", pki.LeafRequest{CommonName: "x", Client: true, NotAfter: now.AddDate(20, 0, 0)}, "later than the intermediate CA's"},
		{"unknown key type", pki.LeafRequest{CommonName: "x", Client: true, KeyType: "dsa"}, `unknown key type "dsa"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := a.Issue(tt.req)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestPEMEncoding(t *testing.T) {
	a := newAuthority(t, pki.ECDSA)
	leaf := issue(t, a, clientReq("probe"))
	blocks := pemBlocks(t, leaf.CertPEM())
	if len(blocks) != 2 || !bytes.Equal(blocks[0].Bytes, leaf.Cert.Raw) || !bytes.Equal(blocks[1].Bytes, a.Intermediate.Raw) {
		t.Fatalf("CertPEM holds %d blocks, want leaf then intermediate", len(blocks))
	}
	key, err := leaf.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	if blocks := pemBlocks(t, key); len(blocks) != 1 || blocks[0].Type != "PRIVATE KEY" {
		t.Fatalf("KeyPEM is not one PKCS #8 block: %s", key)
	}
	if blocks := pemBlocks(t, a.RootPEM()); len(blocks) != 1 || !bytes.Equal(blocks[0].Bytes, a.Root.Raw) {
		t.Fatalf("RootPEM is not the root certificate")
	}
	cert, err := leaf.TLSCertificate()
	if err != nil || len(cert.Certificate) != 2 {
		t.Fatalf("TLSCertificate: %d certificates, error %v", len(cert.Certificate), err)
	}
}

func pemBlocks(t *testing.T, data []byte) []*pem.Block {
	t.Helper()
	var blocks []*pem.Block
	for {
		block, rest := pem.Decode(data)
		if block == nil {
			if len(bytes.TrimSpace(rest)) > 0 {
				t.Fatalf("trailing data after PEM blocks: %q", rest)
			}
			return blocks
		}
		blocks, data = append(blocks, block), rest
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	a := newAuthority(t, pki.ECDSA)
	dir := filepath.Join(t.TempDir(), "ca")
	if err := a.Save(dir); err != nil {
		t.Fatal(err)
	}
	checkMode(t, dir, fs.ModeDir|0o700)
	checkMode(t, filepath.Join(dir, "root.pem"), 0o644)
	checkMode(t, filepath.Join(dir, "intermediate.pem"), 0o644)
	checkMode(t, filepath.Join(dir, "root.key"), 0o600)
	checkMode(t, filepath.Join(dir, "intermediate.key"), 0o600)

	loaded, err := pki.LoadAuthority(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.Root.Equal(a.Root) || !loaded.Intermediate.Equal(a.Intermediate) {
		t.Error("loaded certificates differ from the saved ones")
	}
	if !a.RootKey.Public().(*ecdsa.PublicKey).Equal(loaded.RootKey.Public()) ||
		!a.IntermediateKey.Public().(*ecdsa.PublicKey).Equal(loaded.IntermediateKey.Public()) {
		t.Error("loaded keys differ from the saved ones")
	}
	leaf := issue(t, loaded, clientReq("after-load"))
	if err := verify(a, leaf, x509.ExtKeyUsageClientAuth); err != nil {
		t.Errorf("leaf issued by the loaded authority: %v", err)
	}
}

func TestSaveOverwritesKeepingKeyMode(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "intermediate.key")
	if err := os.WriteFile(keyFile, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := newAuthority(t, pki.ECDSA).Save(dir); err != nil {
		t.Fatal(err)
	}
	checkMode(t, keyFile, 0o600)
	if entries, _ := os.ReadDir(dir); len(entries) != 4 {
		t.Errorf("dir holds %d entries, want 4 (no temporary files left)", len(entries))
	}
}

func TestLoadAuthorityWithoutRootKey(t *testing.T) {
	dir := t.TempDir()
	if err := newAuthority(t, pki.ECDSA).Save(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "root.key")); err != nil {
		t.Fatal(err)
	}
	a, err := pki.LoadAuthority(dir)
	if err != nil {
		t.Fatal(err)
	}
	if a.RootKey != nil {
		t.Error("RootKey is set without root.key")
	}
	issue(t, a, clientReq("offline-root"))
}

func TestLoadAuthorityRejectsMismatchedFiles(t *testing.T) {
	ours, theirs := t.TempDir(), t.TempDir()
	for dir, a := range map[string]*pki.Authority{ours: newAuthority(t, pki.ECDSA), theirs: newAuthority(t, pki.ECDSA)} {
		if err := a.Save(dir); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name       string
		fromTheirs []string
		want       string
	}{
		{"foreign key", []string{"intermediate.key"}, "intermediate.key does not belong to intermediate.pem"},
		{"foreign root", []string{"root.pem", "root.key"}, "intermediate.pem is not signed by root.pem"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, name := range []string{"root.pem", "root.key", "intermediate.pem", "intermediate.key"} {
				from := ours
				if slices.Contains(tt.fromTheirs, name) {
					from = theirs
				}
				copyFile(t, filepath.Join(from, name), filepath.Join(dir, name))
			}
			if _, err := pki.LoadAuthority(dir); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
	if _, err := pki.LoadAuthority(t.TempDir()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("empty dir: got %v, want fs.ErrNotExist", err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err == nil {
		err = os.WriteFile(to, data, 0o600)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func checkMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Mode(); got != want {
		t.Errorf("%s: mode %v, want %v", path, got, want)
	}
}

func TestLeafSave(t *testing.T) {
	a := newAuthority(t, pki.ECDSA)
	dir := filepath.Join(t.TempDir(), "certs")
	if err := issue(t, a, clientReq("probe")).Save(dir, "probe"); err != nil {
		t.Fatal(err)
	}
	checkMode(t, filepath.Join(dir, "probe.key"), 0o600)
	checkMode(t, filepath.Join(dir, "probe.pem"), 0o644)
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "probe.pem"), filepath.Join(dir, "probe.key"))
	if err != nil {
		t.Fatal(err)
	}
	if len(cert.Certificate) != 2 || cert.Leaf.Subject.CommonName != "probe" {
		t.Errorf("saved pair: %d certificates, CN %q", len(cert.Certificate), cert.Leaf.Subject.CommonName)
	}
}

func TestInspectValidChain(t *testing.T) {
	a := newAuthority(t, pki.ECDSA)
	leaf := issue(t, a, serverReq("api.internal", "api"))
	now := time.Now()
	r, err := pki.Inspect(leaf.CertPEM(), pki.InspectOptions{Roots: a.RootPool(), Now: now, MaxDepth: 4})
	if err != nil {
		t.Fatal(err)
	}
	if r.Depth != 3 || len(r.Chain) != 3 || r.Chain[2].Subject != "CN=meridian root CA" || !r.Verified {
		t.Errorf("depth %d, chain %v, verified %v (%s)", r.Depth, r.Chain, r.Verified, r.VerifyError)
	}
	if len(r.Certificates) != 2 || len(r.Warnings) != 0 || r.Expired || r.TooDeep {
		t.Errorf("%d certificates, warnings %q", len(r.Certificates), r.Warnings)
	}
	c := r.Certificates[0]
	if strings.Join(c.DNSNames, ",") != "api.internal,api" || len(c.IPs) != 1 || !c.IPs[0].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("SANs: DNS %v, IP %v", c.DNSNames, c.IPs)
	}
	if c.IsCA || !r.Certificates[1].IsCA || c.KeyType != "ECDSA P-256" || c.Issuer != "CN=meridian intermediate CA" || c.Usages[0] != "server" {
		t.Errorf("leaf info %+v", c)
	}
	if !r.EarliestExpiry.Equal(leaf.Cert.NotAfter) {
		t.Errorf("earliest expiry %v, want the leaf's %v", r.EarliestExpiry, leaf.Cert.NotAfter)
	}
}

func TestInspectWarnings(t *testing.T) {
	a := newAuthority(t, pki.ECDSA)
	now := time.Now().Truncate(time.Second)
	expired := pki.LeafRequest{CommonName: "old", Client: true, NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-24 * time.Hour)}
	soon := pki.LeafRequest{CommonName: "soon", Client: true, NotAfter: now.Add(72 * time.Hour)}
	tests := []struct {
		name          string
		req           pki.LeafRequest
		maxDepth      int
		want          string
		expired, deep bool
	}{
		{"expired", expired, 4, `"CN=old" expired 24 hours ago`, true, false},
		{"expiring soon", soon, 4, `"CN=soon" expires in 3 days`, false, false},
		{"too deep", clientReq("deep"), 2, "chain depth 3 exceeds the limit of 2", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leaf := issue(t, a, tt.req)
			r, err := pki.Inspect(leaf.CertPEM(), pki.InspectOptions{Roots: a.RootPool(), Now: now, MaxDepth: tt.maxDepth})
			if err != nil {
				t.Fatal(err)
			}
			if r.Depth != 3 || r.Expired != tt.expired || r.TooDeep != tt.deep || !containsPrefix(r.Warnings, tt.want) {
				t.Errorf("depth %d, expired %v, too deep %v, warnings %q; want %q", r.Depth, r.Expired, r.TooDeep, r.Warnings, tt.want)
			}
		})
	}
}

func containsPrefix(list []string, prefix string) bool {
	for _, s := range list {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}

func TestInspectWithoutOrWithWrongRoots(t *testing.T) {
	a := newAuthority(t, pki.ECDSA)
	pemData := issue(t, a, clientReq("probe")).CertPEM()
	r, err := pki.Inspect(pemData, pki.InspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Depth != 2 || r.Verified || r.VerifyError != "" || len(r.Warnings) != 0 {
		t.Errorf("no roots: depth %d, verified %v %q, warnings %q", r.Depth, r.Verified, r.VerifyError, r.Warnings)
	}
	r, err = pki.Inspect(pemData, pki.InspectOptions{Roots: newAuthority(t, pki.ECDSA).RootPool()})
	if err != nil {
		t.Fatal(err)
	}
	if r.Depth != 2 || r.Verified || !containsPrefix(r.Warnings, "chain does not verify against the given roots: x509: certificate signed by unknown authority") {
		t.Errorf("wrong roots: depth %d, verified %v, warnings %q", r.Depth, r.Verified, r.Warnings)
	}
	full := append(pemData, a.RootPEM()...)
	if r, err := pki.Inspect(full, pki.InspectOptions{}); err != nil || r.Depth != 3 {
		t.Errorf("bundle with root: depth %d, error %v", r.Depth, err)
	}
	if _, err := pki.Inspect([]byte("not a certificate"), pki.InspectOptions{}); err == nil || err.Error() != "pki: inspect certificates: no certificate found" {
		t.Errorf("garbage: got %v", err)
	}
}

func TestReportWriteText(t *testing.T) {
	a := newAuthority(t, pki.ECDSA)
	now := time.Now()
	leaf := issue(t, a, pki.LeafRequest{CommonName: "old", DNSNames: []string{"db.internal"}, Server: true, NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-24 * time.Hour)})
	r, err := pki.Inspect(leaf.CertPEM(), pki.InspectOptions{Roots: a.RootPool(), Now: now})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := r.WriteText(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"certificate 1 of 2\n  subject:   CN=old\n",
		"  DNS names: db.internal\n",
		"chain:           CN=old -> CN=meridian intermediate CA -> CN=meridian root CA\n",
		"depth:           3\n",
		"verified:        no: x509: certificate has expired",
		`WARNING: "CN=old" expired 24 hours ago`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestReportWriteTextReturnsWriteError(t *testing.T) {
	a := newAuthority(t, pki.ECDSA)
	r, err := pki.Inspect(a.RootPEM(), pki.InspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.WriteText(failingWriter{}); !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("got %v, want the writer's error", err)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }

func TestMutualTLSHandshake(t *testing.T) {
	a := newAuthority(t, pki.ECDSA)
	server := tlsCert(t, issue(t, a, serverReq("localhost")))
	serverConfig := &tls.Config{
		Certificates: []tls.Certificate{server},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    a.RootPool(),
	}
	clientConfig := func(leaf *pki.Leaf) *tls.Config {
		return &tls.Config{Certificates: []tls.Certificate{tlsCert(t, leaf)}, RootCAs: a.RootPool()}
	}

	t.Run("same authority", func(t *testing.T) {
		serverErr, clientErr := handshake(t, serverConfig, clientConfig(issue(t, a, clientReq("probe"))))
		if serverErr != nil || clientErr != nil {
			t.Errorf("server: %v; client: %v", serverErr, clientErr)
		}
	})
	t.Run("other authority", func(t *testing.T) {
		stranger := issue(t, newAuthority(t, pki.ECDSA), clientReq("intruder"))
		serverErr, clientErr := handshake(t, serverConfig, clientConfig(stranger))
		if !errors.As(serverErr, new(x509.UnknownAuthorityError)) || clientErr == nil {
			t.Errorf("server: %v (want unknown authority); client: %v", serverErr, clientErr)
		}
	})
}

func tlsCert(t *testing.T, leaf *pki.Leaf) tls.Certificate {
	t.Helper()
	cert, err := leaf.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// handshake connects a client to a one-connection loopback server. After a
// successful handshake the server sends one byte, which the client reads, so that
// the client also sees a TLS 1.3 rejection of its certificate.
func handshake(t *testing.T, server, client *tls.Config) (serverErr, clientErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() { done <- serveOne(ln, server) }()
	clientErr = dialAndRead(ln.Addr().String(), client)
	return <-done, clientErr
}

func serveOne(ln net.Listener, config *tls.Config) error {
	raw, err := ln.Accept()
	if err != nil {
		return err
	}
	conn := tls.Server(raw, config)
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return err
	}
	if err := conn.Handshake(); err != nil {
		return err
	}
	_, err = conn.Write([]byte{1})
	return err
}

func dialAndRead(addr string, config *tls.Config) error {
	dialer := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: config}
	conn, err := dialer.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return err
	}
	_, err = conn.Read(make([]byte, 1))
	return err
}
