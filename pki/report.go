package pki

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// WriteText writes the report for a terminal: each certificate, the chain, whether
// it verified, the earliest expiry and the warnings.
func (r *Report) WriteText(w io.Writer) error {
	p := &printer{w: w}
	for i, c := range r.Certificates {
		p.printf("certificate %d of %d\n", i+1, len(r.Certificates))
		p.writeCert(c)
	}
	p.printf("%-17s%s\n", "chain:", chainText(r.Chain))
	p.printf("%-17s%d\n", "depth:", r.Depth)
	p.printf("%-17s%s\n", "verified:", r.verifiedText())
	p.printf("%-17s%s\n", "earliest expiry:", stamp(r.EarliestExpiry))
	if len(r.Warnings) == 0 {
		p.printf("%-17s%s\n", "warnings:", "none")
	}
	for _, warning := range r.Warnings {
		p.printf("WARNING: %s\n", warning)
	}
	return p.err
}

// writeCert writes one certificate's fields, indented.
func (p *printer) writeCert(c CertInfo) {
	p.field("subject", c.Subject)
	p.field("issuer", c.Issuer)
	p.field("serial", c.Serial)
	p.field("valid", stamp(c.NotBefore)+" to "+stamp(c.NotAfter))
	p.field("key", c.KeyType)
	p.field("CA", fmt.Sprint(c.IsCA))
	if len(c.Usages) > 0 {
		p.field("usage", strings.Join(c.Usages, ", "))
	}
	if len(c.DNSNames) > 0 {
		p.field("DNS names", strings.Join(c.DNSNames, ", "))
	}
	if len(c.IPs) > 0 {
		ips := make([]string, len(c.IPs))
		for i, ip := range c.IPs {
			ips[i] = ip.String()
		}
		p.field("IPs", strings.Join(ips, ", "))
	}
}

// chainText lists the chain's subjects from leaf to root.
func chainText(chain []CertInfo) string {
	subjects := make([]string, len(chain))
	for i, c := range chain {
		subjects[i] = c.Subject
	}
	return strings.Join(subjects, " -> ")
}

// verifiedText says whether and how verification went.
func (r *Report) verifiedText() string {
	switch {
	case r.Verified:
		return "yes"
	case r.VerifyError != "":
		return "no: " + r.VerifyError
	default:
		return "not checked (no roots given)"
	}
}

// printer writes formatted text and keeps the first error.
type printer struct {
	w   io.Writer
	err error
}

func (p *printer) printf(format string, args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, args...)
	}
}

func (p *printer) field(name, value string) {
	p.printf("  %-11s%s\n", name+":", value)
}

// stamp formats a certificate time in UTC.
func stamp(t time.Time) string {
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// approx rounds a duration to days, hours or seconds, whichever reads best.
func approx(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%d days", d.Round(24*time.Hour)/(24*time.Hour))
	case d >= 2*time.Hour:
		return fmt.Sprintf("%d hours", d.Round(time.Hour)/time.Hour)
	default:
		return d.Round(time.Second).String()
	}
}
