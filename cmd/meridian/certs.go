package main

import (
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"meridian/pki"
)

// certsUsage summarizes the `meridian certs` subcommands.
const certsUsage = `usage:
  meridian certs init DIR [--rsa]
  meridian certs issue [--dir DIR] --client|--server --cn NAME [--dns NAME]... [--ip IP]...
                       [--days N] [--rsa] [--out NAME]
  meridian certs inspect FILE [--max-depth N] [--ca FILE]
`

// Exit codes of runCerts.
const (
	certsExitOK     = 0
	certsExitFailed = 1
	certsExitUsage  = 2
)

// Flag defaults of `meridian certs issue` and `inspect`.
const (
	certsDefaultDir      = "certs"
	certsDefaultMaxDepth = 4 // the deepest chain some gateways accept
)

// runCerts implements `meridian certs init|issue|inspect`.
func runCerts(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, certsUsage)
		return certsExitUsage
	}
	switch args[0] {
	case "init":
		return certsInit(args[1:], stdout, stderr)
	case "issue":
		return certsIssue(args[1:], stdout, stderr)
	case "inspect":
		return certsInspect(args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, certsUsage)
		return certsExitOK
	default:
		fmt.Fprintf(stderr, "meridian certs: unknown command %q\n%s", args[0], certsUsage)
		return certsExitUsage
	}
}

// certsInit implements `meridian certs init DIR [--rsa]`.
func certsInit(args []string, stdout, stderr io.Writer) int {
	fs := certsFlagSet("init", "DIR [--rsa]", stderr)
	useRSA := fs.Bool("rsa", false, "RSA keys (3072 bits) instead of ECDSA P-256")
	positional, code, ok := certsParse(fs, args, 1)
	if !ok {
		return code
	}
	dir := positional[0]
	if _, err := os.Stat(filepath.Join(dir, pki.RootCertFile)); err == nil {
		fmt.Fprintf(stderr, "meridian certs init: %s already holds a CA; refusing to overwrite it\n", dir)
		return certsExitFailed
	}
	a, err := pki.NewAuthority(pki.AuthorityOptions{KeyType: certsKeyType(*useRSA)})
	if err == nil {
		err = a.Save(dir)
	}
	if err != nil {
		fmt.Fprintln(stderr, "meridian certs init:", err)
		return certsExitFailed
	}
	certsPrintAuthority(stdout, dir, a)
	return certsExitOK
}

// certsPrintAuthority lists the files certsInit wrote.
func certsPrintAuthority(w io.Writer, dir string, a *pki.Authority) {
	path := func(name string) string { return filepath.Join(dir, name) }
	fmt.Fprintf(w, "wrote %s: root CA %q, expires %s\n", path(pki.RootCertFile), a.Root.Subject.CommonName, certsStamp(a.Root.NotAfter))
	fmt.Fprintf(w, "wrote %s: root CA key, mode 0600 (issuing needs only the intermediate: keep it offline)\n", path(pki.RootKeyFile))
	fmt.Fprintf(w, "wrote %s: intermediate CA %q, expires %s\n", path(pki.IntermediateCertFile), a.Intermediate.Subject.CommonName, certsStamp(a.Intermediate.NotAfter))
	fmt.Fprintf(w, "wrote %s: intermediate CA key, mode 0600\n", path(pki.IntermediateKeyFile))
	fmt.Fprintf(w, "peers trust %s (the ca setting); issue leaves with: meridian certs issue --dir %s\n", path(pki.RootCertFile), dir)
}

// certsIssueFlags holds the flags of `meridian certs issue`.
type certsIssueFlags struct {
	dir, cn, out        string
	client, server, rsa bool
	dns, ips            certsList
	days                int
}

// register defines the flags on fs.
func (f *certsIssueFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.dir, "dir", certsDefaultDir, "directory holding the CA; the certificate is written there too")
	fs.BoolVar(&f.client, "client", false, "a client certificate (TLS client authentication)")
	fs.BoolVar(&f.server, "server", false, "a server certificate (TLS server authentication)")
	fs.StringVar(&f.cn, "cn", "", "common name (required): a client's identity")
	fs.Var(&f.dns, "dns", "DNS name the certificate is valid for (repeatable)")
	fs.Var(&f.ips, "ip", "IP address the certificate is valid for (repeatable)")
	fs.IntVar(&f.days, "days", 0, "validity in days (default 397)")
	fs.BoolVar(&f.rsa, "rsa", false, "an RSA key (2048 bits) instead of ECDSA P-256")
	fs.StringVar(&f.out, "out", "", "base name of the written NAME.pem and NAME.key (default: the common name)")
}

// request validates the flags and returns the leaf request and the output base name.
func (f *certsIssueFlags) request(now time.Time) (pki.LeafRequest, string, error) {
	req := pki.LeafRequest{CommonName: f.cn, DNSNames: f.dns, Client: f.client, Server: f.server, KeyType: certsKeyType(f.rsa)}
	switch {
	case f.cn == "":
		return req, "", errors.New("--cn is required")
	case !f.client && !f.server:
		return req, "", errors.New("--client or --server (or both) is required")
	case f.days < 0:
		return req, "", fmt.Errorf("--days %d is negative", f.days)
	}
	for _, s := range f.ips {
		ip := net.ParseIP(s)
		if ip == nil {
			return req, "", fmt.Errorf("--ip %q is not an IP address", s)
		}
		req.IPs = append(req.IPs, ip)
	}
	if f.days > 0 {
		req.NotAfter = now.Add(time.Duration(f.days) * 24 * time.Hour)
	}
	out, err := certsOutName(f.out, f.cn)
	return req, out, err
}

// certsOutName returns the base name of the files to write: out, or the common
// name. It must be a plain file name that does not clobber the CA's files.
func certsOutName(out, cn string) (string, error) {
	flagName := "--out"
	if out == "" {
		out, flagName = cn, "--cn"
	}
	if out == "." || out == ".." || strings.ContainsAny(out, "/\\\x00") {
		return "", fmt.Errorf("%s %q is not a plain file name; choose one with --out", flagName, out)
	}
	switch out + ".pem" {
	case pki.RootCertFile, pki.IntermediateCertFile:
		return "", fmt.Errorf("%s %q would overwrite the CA's files; choose another with --out", flagName, out)
	}
	return out, nil
}

// certsIssue implements `meridian certs issue`.
func certsIssue(args []string, stdout, stderr io.Writer) int {
	fs := certsFlagSet("issue", "[--dir DIR] --client|--server --cn NAME [flags]", stderr)
	var f certsIssueFlags
	f.register(fs)
	if _, code, ok := certsParse(fs, args, 0); !ok {
		return code
	}
	req, out, err := f.request(time.Now())
	if err != nil {
		fmt.Fprintln(stderr, "meridian certs issue:", err)
		fs.Usage()
		return certsExitUsage
	}
	leaf, err := certsIssueLeaf(f.dir, out, req)
	if err != nil {
		fmt.Fprintln(stderr, "meridian certs issue:", err)
		return certsExitFailed
	}
	certPath, keyPath := filepath.Join(f.dir, out+".pem"), filepath.Join(f.dir, out+".key")
	fmt.Fprintf(stdout, "wrote %s: %s certificate %q followed by the intermediate CA, expires %s\n",
		certPath, certsRole(req), leaf.Cert.Subject.CommonName, certsStamp(leaf.Cert.NotAfter))
	fmt.Fprintf(stdout, "wrote %s: private key, mode 0600\n", keyPath)
	return certsExitOK
}

// certsIssueLeaf loads the CA in dir, issues the leaf and saves it as out.pem/out.key.
func certsIssueLeaf(dir, out string, req pki.LeafRequest) (*pki.Leaf, error) {
	a, err := pki.LoadAuthority(dir)
	if err != nil {
		return nil, err
	}
	leaf, err := a.Issue(req)
	if err != nil {
		return nil, err
	}
	return leaf, leaf.Save(dir, out)
}

// certsRole names the usages of a leaf request.
func certsRole(req pki.LeafRequest) string {
	switch {
	case req.Client && req.Server:
		return "client and server"
	case req.Client:
		return "client"
	default:
		return "server"
	}
}

// certsInspect implements `meridian certs inspect FILE [--max-depth N] [--ca FILE]`.
// It fails when a certificate is expired (or not yet valid), the chain is deeper
// than --max-depth, or the chain does not verify against --ca.
func certsInspect(args []string, stdout, stderr io.Writer) int {
	fs := certsFlagSet("inspect", "FILE [--max-depth N] [--ca FILE]", stderr)
	maxDepth := fs.Int("max-depth", certsDefaultMaxDepth, "warn and fail when the chain (leaf to root) is deeper; 0 disables")
	caFile := fs.String("ca", "", "PEM file of trusted roots to resolve and verify the chain against")
	positional, code, ok := certsParse(fs, args, 1)
	if !ok {
		return code
	}
	report, err := certsInspectFile(positional[0], *caFile, *maxDepth)
	if err == nil {
		err = report.WriteText(stdout)
	}
	if err != nil {
		fmt.Fprintln(stderr, "meridian certs inspect:", err)
		return certsExitFailed
	}
	if report.Expired || report.TooDeep || (*caFile != "" && !report.Verified) {
		fmt.Fprintf(stderr, "meridian certs inspect: %s fails the check (see the warnings)\n", positional[0])
		return certsExitFailed
	}
	return certsExitOK
}

// certsInspectFile reads and inspects a PEM file, against the roots in caFile if set.
func certsInspectFile(file, caFile string, maxDepth int) (*pki.Report, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	opts := pki.InspectOptions{MaxDepth: maxDepth}
	if caFile != "" {
		if opts.Roots, err = certsReadPool(caFile); err != nil {
			return nil, err
		}
	}
	return pki.Inspect(data, opts)
}

// certsReadPool reads a PEM file of trusted certificates.
func certsReadPool(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("read CA file %s: no certificate found", path)
	}
	return pool, nil
}

// certsFlagSet returns a flag set for `meridian certs <name>` that reports errors
// and usage to stderr instead of exiting.
func certsFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("meridian certs "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: meridian certs %s %s\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// certsParse parses args, allowing flags after positional arguments, and checks that
// want positional arguments remain. When ok is false the command ends with code.
func certsParse(fs *flag.FlagSet, args []string, want int) (positional []string, code int, ok bool) {
	positional, err := certsParseInterspersed(fs, args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return nil, certsExitOK, false
	case err != nil:
		return nil, certsExitUsage, false
	case len(positional) != want:
		fmt.Fprintf(fs.Output(), "%s: want %d argument(s), got %q\n", fs.Name(), want, positional)
		fs.Usage()
		return nil, certsExitUsage, false
	}
	return positional, certsExitOK, true
}

// certsParseInterspersed parses flags wherever they appear among the positional
// arguments (`init DIR --rsa`), which it returns. After "--" all arguments are
// positional.
func certsParseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(positional, rest...), nil
		}
		if len(rest) == 0 {
			return positional, nil
		}
		positional, args = append(positional, rest[0]), rest[1:]
	}
}

// certsList is a flag.Value that collects every use of a repeatable flag.
type certsList []string

func (l *certsList) String() string { return strings.Join(*l, ",") }

func (l *certsList) Set(value string) error {
	*l = append(*l, value)
	return nil
}

// certsKeyType maps the --rsa flag to a key type.
func certsKeyType(useRSA bool) pki.KeyType {
	if useRSA {
		return pki.RSA
	}
	return pki.ECDSA
}

// certsStamp formats an expiry time.
func certsStamp(t time.Time) string {
	return t.UTC().Format("2006-01-02 15:04 UTC")
}
