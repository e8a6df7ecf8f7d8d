package pki

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"net"
	"slices"
	"time"
)

// DefaultExpiryWarning is how close to expiry a certificate must be for Inspect to
// warn, unless InspectOptions.ExpiryWarning says otherwise.
const DefaultExpiryWarning = 14 * 24 * time.Hour

// InspectOptions configures Inspect. The zero value is usable.
type InspectOptions struct {
	// Roots verifies the chain and supplies its root when the PEM does not hold it.
	// When nil, the chain is only resolved within the PEM and not verified.
	Roots *x509.CertPool
	// Now is the time expiry is judged at; default time.Now().
	Now time.Time
	// MaxDepth, when positive, is the deepest chain (leaf + intermediates + root)
	// accepted without a warning. Some gateways accept no more than 4.
	MaxDepth int
	// ExpiryWarning is how close to expiry a certificate must be to be warned about;
	// default DefaultExpiryWarning (14 days).
	ExpiryWarning time.Duration
}

// CertInfo describes one certificate.
type CertInfo struct {
	Subject   string // distinguished name, e.g. "CN=probe"
	Issuer    string
	Serial    string // hexadecimal
	NotBefore time.Time
	NotAfter  time.Time
	IsCA      bool
	KeyType   string // e.g. "ECDSA P-256", "RSA 2048"
	DNSNames  []string
	IPs       []net.IP
	Usages    []string // extended key usages, e.g. "server", "client"
}

// Report is the result of Inspect.
type Report struct {
	// Certificates describes every certificate in the PEM, in file order.
	Certificates []CertInfo
	// Chain runs from the first certificate (the leaf) through the intermediates
	// found in the PEM to the root, when the PEM or Roots holds it.
	Chain []CertInfo
	// Depth is len(Chain).
	Depth int
	// Verified reports whether the chain verifies against Roots at Now for any
	// usage; VerifyError says why not. Both are zero when Roots is nil.
	Verified    bool
	VerifyError string
	// EarliestExpiry is the first NotAfter among Certificates and Chain.
	EarliestExpiry time.Time
	// Expired is set when some certificate has expired (or is not yet valid) at Now.
	Expired bool
	// TooDeep is set when Depth exceeds InspectOptions.MaxDepth.
	TooDeep bool
	// Warnings are human-readable problems: expired, expiring soon, not yet
	// valid, too deep, not verified.
	Warnings []string
}

// Inspect describes the certificates in pemData, resolves and verifies the chain of
// the first one (the leaf), and warns about expiry and depth.
func Inspect(pemData []byte, opts InspectOptions) (*Report, error) {
	certs, err := parseCerts(pemData)
	if err != nil {
		return nil, fmt.Errorf("pki: inspect certificates: %w", err)
	}
	opts = opts.withDefaults()
	chain := resolveChain(certs, opts.Roots, opts.Now)
	r := &Report{Certificates: describeAll(certs), Chain: describeAll(chain), Depth: len(chain)}
	r.verify(certs, opts)
	r.checkValidity(union(certs, chain), opts)
	if opts.MaxDepth > 0 && r.Depth > opts.MaxDepth {
		r.TooDeep = true
		r.Warnings = append(r.Warnings, fmt.Sprintf("chain depth %d exceeds the limit of %d", r.Depth, opts.MaxDepth))
	}
	return r, nil
}

// withDefaults returns opts with zero fields replaced by their defaults.
func (opts InspectOptions) withDefaults() InspectOptions {
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	if opts.ExpiryWarning == 0 {
		opts.ExpiryWarning = DefaultExpiryWarning
	}
	return opts
}

// resolveChain links certs[0] to its issuers among certs by signature, regardless of
// validity dates, then adds the root from roots if the PEM does not end in one.
func resolveChain(certs []*x509.Certificate, roots *x509.CertPool, now time.Time) []*x509.Certificate {
	chain := []*x509.Certificate{certs[0]}
	for top := certs[0]; !isSelfSigned(top); {
		issuer := findIssuer(top, certs, chain)
		if issuer == nil {
			break
		}
		chain = append(chain, issuer)
		top = issuer
	}
	if top := chain[len(chain)-1]; roots != nil && !isSelfSigned(top) {
		if root := findRoot(top, roots, now); root != nil {
			chain = append(chain, root)
		}
	}
	return chain
}

// findIssuer returns the certificate among candidates, not already in chain, that
// signed c.
func findIssuer(c *x509.Certificate, candidates, chain []*x509.Certificate) *x509.Certificate {
	for _, cand := range candidates {
		if slices.Contains(chain, cand) || !bytes.Equal(c.RawIssuer, cand.RawSubject) {
			continue
		}
		if c.CheckSignatureFrom(cand) == nil {
			return cand
		}
	}
	return nil
}

// findRoot returns the root in roots that signed c. It verifies c at now, or at the
// nearest moment c is valid, so that an expired certificate still finds its root.
func findRoot(c *x509.Certificate, roots *x509.CertPool, now time.Time) *x509.Certificate {
	at := now
	if at.Before(c.NotBefore) {
		at = c.NotBefore
	}
	if at.After(c.NotAfter) {
		at = c.NotAfter
	}
	chains, err := c.Verify(x509.VerifyOptions{
		Roots:       roots,
		CurrentTime: at,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil
	}
	return chains[0][len(chains[0])-1]
}

// isSelfSigned reports whether c is signed by its own key.
func isSelfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil
}

// union returns a followed by the certificates of b not in a.
func union(a, b []*x509.Certificate) []*x509.Certificate {
	all := slices.Clone(a)
	for _, c := range b {
		if !slices.Contains(all, c) {
			all = append(all, c)
		}
	}
	return all
}

// verify checks the leaf against opts.Roots, with the rest of certs as intermediates.
func (r *Report) verify(certs []*x509.Certificate, opts InspectOptions) {
	if opts.Roots == nil {
		return
	}
	intermediates := x509.NewCertPool()
	for _, c := range certs[1:] {
		intermediates.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{
		Roots:         opts.Roots,
		Intermediates: intermediates,
		CurrentTime:   opts.Now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	r.Verified = err == nil
	if err != nil {
		r.VerifyError = err.Error()
		r.Warnings = append(r.Warnings, "chain does not verify against the given roots: "+r.VerifyError)
	}
}

// checkValidity sets EarliestExpiry and Expired and warns about each certificate
// that is expired, not yet valid, or expiring within opts.ExpiryWarning.
func (r *Report) checkValidity(certs []*x509.Certificate, opts InspectOptions) {
	for _, c := range certs {
		if r.EarliestExpiry.IsZero() || c.NotAfter.Before(r.EarliestExpiry) {
			r.EarliestExpiry = c.NotAfter
		}
		if warning, invalid := validityWarning(c, opts); warning != "" {
			r.Warnings = append(r.Warnings, warning)
			r.Expired = r.Expired || invalid
		}
	}
}

// validityWarning describes a validity problem of c at opts.Now, if any; invalid is
// set when c is expired or not yet valid rather than merely expiring soon.
func validityWarning(c *x509.Certificate, opts InspectOptions) (warning string, invalid bool) {
	name := c.Subject.String()
	left := c.NotAfter.Sub(opts.Now)
	switch {
	case left < 0:
		return fmt.Sprintf("%q expired %s ago, on %s", name, approx(-left), stamp(c.NotAfter)), true
	case opts.Now.Before(c.NotBefore):
		return fmt.Sprintf("%q is not valid until %s", name, stamp(c.NotBefore)), true
	case left < opts.ExpiryWarning:
		return fmt.Sprintf("%q expires in %s, on %s", name, approx(left), stamp(c.NotAfter)), false
	}
	return "", false
}

// describeAll describes each certificate.
func describeAll(certs []*x509.Certificate) []CertInfo {
	infos := make([]CertInfo, len(certs))
	for i, c := range certs {
		infos[i] = describe(c)
	}
	return infos
}

// describe summarizes one certificate.
func describe(c *x509.Certificate) CertInfo {
	return CertInfo{
		Subject:   c.Subject.String(),
		Issuer:    c.Issuer.String(),
		Serial:    fmt.Sprintf("%X", c.SerialNumber),
		NotBefore: c.NotBefore,
		NotAfter:  c.NotAfter,
		IsCA:      c.IsCA,
		KeyType:   describeKey(c.PublicKey),
		DNSNames:  c.DNSNames,
		IPs:       c.IPAddresses,
		Usages:    usageNames(c.ExtKeyUsage),
	}
}

// usageNames names the extended key usages that matter for TLS.
func usageNames(usages []x509.ExtKeyUsage) []string {
	var names []string
	for _, u := range usages {
		switch u {
		case x509.ExtKeyUsageServerAuth:
			names = append(names, "server")
		case x509.ExtKeyUsageClientAuth:
			names = append(names, "client")
		case x509.ExtKeyUsageAny:
			names = append(names, "any")
		default:
			names = append(names, fmt.Sprintf("other(%d)", u))
		}
	}
	return names
}
