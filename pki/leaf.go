package pki

import (
	"crypto"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"
)

// defaultLeafValidity is the longest validity browsers accept for a TLS server
// certificate (CA/Browser Forum baseline requirements); also used for clients.
const defaultLeafValidity = 397 * 24 * time.Hour

// LeafRequest describes an end-entity certificate for Authority.Issue.
type LeafRequest struct {
	// CommonName is the subject CN: for a client certificate, the identity the
	// server sees. It may be empty only when SANs are given.
	CommonName string
	// DNSNames and IPs are the subject alternative names a server is verified by.
	// A server certificate needs at least one.
	DNSNames []string
	IPs      []net.IP
	// Client and Server select the extended key usages (TLS client and server
	// authentication); at least one must be set.
	Client, Server bool
	// NotBefore defaults to an hour before now and NotAfter to 397 days after now.
	// Both may lie in the past, e.g. to mint an expired certificate for a test.
	NotBefore, NotAfter time.Time
	// KeyType of the leaf key; default ECDSA.
	KeyType KeyType
}

// Leaf is an issued end-entity certificate with its private key and chain.
type Leaf struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	// Chain holds the certificates between Cert and the root: the intermediate.
	Chain []*x509.Certificate
}

// Issue creates a key and a leaf certificate signed by the intermediate CA.
func (a *Authority) Issue(req LeafRequest) (*Leaf, error) {
	req = req.withDefaults(a.now())
	if err := a.check(req); err != nil {
		return nil, fmt.Errorf("pki: issue certificate %q: %w", req.CommonName, err)
	}
	leaf, err := a.sign(req)
	if err != nil {
		return nil, fmt.Errorf("pki: issue certificate %q: %w", req.CommonName, err)
	}
	return leaf, nil
}

// withDefaults fills in the validity period around now.
func (req LeafRequest) withDefaults(now time.Time) LeafRequest {
	if req.NotBefore.IsZero() {
		req.NotBefore = now.Add(-backdate)
	}
	if req.NotAfter.IsZero() {
		req.NotAfter = now.Add(defaultLeafValidity)
	}
	return req
}

// check rejects requests that would yield a certificate no peer accepts.
func (a *Authority) check(req LeafRequest) error {
	hasSAN := len(req.DNSNames) > 0 || len(req.IPs) > 0
	switch {
	case !req.Client && !req.Server:
		return errors.New("neither client nor server usage requested")
	case req.Server && !hasSAN:
		return errors.New("a server certificate needs a DNS name or an IP address")
	case req.CommonName == "" && !hasSAN:
		return errors.New("neither a common name nor a DNS name or IP address given")
	case !req.NotAfter.After(req.NotBefore):
		return fmt.Errorf("not after (%s) is not later than not before (%s)", req.NotAfter, req.NotBefore)
	case req.NotAfter.After(a.Intermediate.NotAfter):
		return fmt.Errorf("not after (%s) is later than the intermediate CA's (%s)", req.NotAfter, a.Intermediate.NotAfter)
	}
	return nil
}

// sign generates the leaf key and has the intermediate sign its certificate.
func (a *Authority) sign(req LeafRequest) (*Leaf, error) {
	key, err := generateKey(req.KeyType, rsaLeafBits)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	tmpl, err := newTemplate(req.CommonName, key.Public(), req.NotBefore, req.NotAfter)
	if err != nil {
		return nil, err
	}
	tmpl.DNSNames, tmpl.IPAddresses = req.DNSNames, req.IPs
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	if _, isRSA := key.(*rsa.PrivateKey); isRSA {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment // TLS 1.2 RSA key exchange
	}
	tmpl.ExtKeyUsage = extKeyUsages(req.Client, req.Server)
	cert, err := sign(tmpl, a.Intermediate, key.Public(), a.IntermediateKey)
	if err != nil {
		return nil, err
	}
	return &Leaf{Cert: cert, Key: key, Chain: []*x509.Certificate{a.Intermediate}}, nil
}

// extKeyUsages maps the requested roles to extended key usages.
func extKeyUsages(client, server bool) []x509.ExtKeyUsage {
	var usages []x509.ExtKeyUsage
	if server {
		usages = append(usages, x509.ExtKeyUsageServerAuth)
	}
	if client {
		usages = append(usages, x509.ExtKeyUsageClientAuth)
	}
	return usages
}

// CertPEM returns the leaf certificate followed by its chain (the intermediate), the
// bundle a TLS peer presents.
func (l *Leaf) CertPEM() []byte {
	return encodeCerts(append([]*x509.Certificate{l.Cert}, l.Chain...)...)
}

// KeyPEM returns the private key in PKCS #8 PEM form.
func (l *Leaf) KeyPEM() ([]byte, error) {
	key, err := encodeKey(l.Key)
	if err != nil {
		return nil, fmt.Errorf("pki: encode key of %q: %w", l.Cert.Subject.CommonName, err)
	}
	return key, nil
}

// TLSCertificate returns the leaf, its chain and key for tls.Config.Certificates.
func (l *Leaf) TLSCertificate() (tls.Certificate, error) {
	key, err := l.KeyPEM()
	if err != nil {
		return tls.Certificate{}, err
	}
	cert, err := tls.X509KeyPair(l.CertPEM(), key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: build TLS certificate %q: %w", l.Cert.Subject.CommonName, err)
	}
	return cert, nil
}
