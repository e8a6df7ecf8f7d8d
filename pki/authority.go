// Package pki is the small public-key infrastructure a meridian deployment needs for
// mutual TLS: a root CA, an intermediate CA that signs server and client leaf
// certificates, PEM files on disk, and Inspect, which reports a certificate chain's
// depth and expiry the way an operator checks it before a gateway rejects it.
//
// Only crypto/x509 is used. Keys are ECDSA P-256 by default, RSA on request.
package pki

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"strings"
	"time"
)

const (
	defaultRootName     = "meridian root CA"
	defaultRootValidity = 10 * 365 * 24 * time.Hour
	// backdate is how far before "now" certificates start, to tolerate clock skew.
	backdate = time.Hour
)

// AuthorityOptions configures NewAuthority. The zero value is usable.
type AuthorityOptions struct {
	// CommonName names the root CA; default "meridian root CA". The intermediate is
	// named after it: "root" becomes "intermediate", or " intermediate" is appended.
	CommonName string
	// KeyType of both CA keys; default ECDSA.
	KeyType KeyType
	// Validity of the root CA; default 10 years. The intermediate is valid for half
	// as long (5 years by default), so it always expires before the root.
	Validity time.Duration
	// Now is the clock; default time.Now. Issue also uses it for leaf defaults.
	Now func() time.Time
}

// withDefaults returns opts with zero fields replaced by their defaults.
func (opts AuthorityOptions) withDefaults() AuthorityOptions {
	if opts.CommonName == "" {
		opts.CommonName = defaultRootName
	}
	if opts.KeyType == "" {
		opts.KeyType = ECDSA
	}
	if opts.Validity == 0 {
		opts.Validity = defaultRootValidity
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return opts
}

// intermediateName derives the intermediate CA's common name from the root's.
func intermediateName(rootName string) string {
	if strings.Contains(rootName, "root") {
		return strings.Replace(rootName, "root", "intermediate", 1)
	}
	return rootName + " intermediate"
}

// Authority is a two-level certificate authority: a self-signed root CA that signs
// only the intermediate, and an intermediate CA that signs leaves. Leaves carry the
// intermediate in their chain, so peers need to trust only the root.
//
// An Authority is safe for concurrent use; its fields must not be changed after
// creation. RootKey is nil when the authority was loaded from a directory without
// root.key (the root key kept offline); it is not needed to issue leaves.
type Authority struct {
	Root            *x509.Certificate
	RootKey         crypto.Signer
	Intermediate    *x509.Certificate
	IntermediateKey crypto.Signer

	now func() time.Time
}

// NewAuthority creates a new root CA and an intermediate CA signed by it.
func NewAuthority(opts AuthorityOptions) (*Authority, error) {
	opts = opts.withDefaults()
	if opts.Validity < 0 {
		return nil, fmt.Errorf("pki: create authority: negative validity %s", opts.Validity)
	}
	a := &Authority{now: opts.Now}
	start := opts.Now().Add(-backdate)
	var err error
	root := caSpec{name: opts.CommonName, keyType: opts.KeyType, start: start, validity: opts.Validity, maxPathLen: 1}
	if a.Root, a.RootKey, err = root.create(nil, nil); err != nil {
		return nil, fmt.Errorf("pki: create root CA %q: %w", root.name, err)
	}
	inter := caSpec{name: intermediateName(opts.CommonName), keyType: opts.KeyType, start: start, validity: opts.Validity / 2}
	if a.Intermediate, a.IntermediateKey, err = inter.create(a.Root, a.RootKey); err != nil {
		return nil, fmt.Errorf("pki: create intermediate CA %q: %w", inter.name, err)
	}
	return a, nil
}

// caSpec describes a CA certificate to create.
type caSpec struct {
	name       string
	keyType    KeyType
	start      time.Time
	validity   time.Duration
	maxPathLen int // 0 means no CA may follow (MaxPathLenZero)
}

// create generates the CA's key and certificate, signed by parent, or self-signed
// when parent is nil.
func (s caSpec) create(parent *x509.Certificate, parentKey crypto.Signer) (*x509.Certificate, crypto.Signer, error) {
	key, err := generateKey(s.keyType, rsaCABits)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	tmpl, err := newTemplate(s.name, key.Public(), s.start, s.start.Add(s.validity))
	if err != nil {
		return nil, nil, err
	}
	tmpl.IsCA = true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	tmpl.MaxPathLen, tmpl.MaxPathLenZero = s.maxPathLen, s.maxPathLen == 0
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	cert, err := sign(tmpl, parent, key.Public(), parentKey)
	return cert, key, err
}

// newTemplate returns the fields every certificate shares: a random serial, the
// subject, the validity and the subject key identifier.
func newTemplate(cn string, pub crypto.PublicKey, notBefore, notAfter time.Time) (*x509.Certificate, error) {
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	ski, err := subjectKeyID(pub)
	if err != nil {
		return nil, err
	}
	return &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		BasicConstraintsValid: true,
		SubjectKeyId:          ski,
	}, nil
}

// sign creates the certificate tmpl for pub, signed by parent's key.
func sign(tmpl, parent *x509.Certificate, pub crypto.PublicKey, parentKey crypto.Signer) (*x509.Certificate, error) {
	tmpl.AuthorityKeyId = parent.SubjectKeyId
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		return nil, fmt.Errorf("sign certificate: %w", err)
	}
	return x509.ParseCertificate(der)
}

// serialLimit bounds serial numbers to 128 bits.
var serialLimit = new(big.Int).Lsh(big.NewInt(1), 128)

// randomSerial returns a random positive serial number of at most 128 bits.
func randomSerial() (*big.Int, error) {
	for {
		n, err := rand.Int(rand.Reader, serialLimit)
		if err != nil {
			return nil, fmt.Errorf("generate serial number: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

// RootPEM returns the root CA certificate in PEM form: the trust anchor for peers.
func (a *Authority) RootPEM() []byte {
	return encodeCerts(a.Root)
}

// RootPool returns a new pool holding only the root CA certificate.
func (a *Authority) RootPool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(a.Root)
	return pool
}
