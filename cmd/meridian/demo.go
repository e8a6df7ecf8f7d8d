package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	stdlog "log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sync/errgroup"

	"meridian/config"
	"meridian/health"
	"meridian/pki"
)

// demoUsage describes `meridian demo`.
const demoUsage = `usage: meridian demo [-fail-after 30s] [-dns-port 5353] [-http-port 9153] [-gossip-port 7946] [-backend-port 8443]

Runs a whole meridian cluster on this machine, with no files needed: a CA and
certificates in a temporary folder, three regions (us-east, eu-west,
ap-south) of one node each on loopback ports with encrypted gossip, and an
HTTPS backend per region (127.0.0.11-13) that demands a client certificate.
The nodes serve gslb.example.test on ports dns-port, +1 and +2 and their
admin API on http-port, +1, +2. After -fail-after (0: never) one backend
stops, and the log shows the failover. Ctrl-C stops everything and removes
the temporary folder.
`

// demoRegion is one region of the demo: its node and its backend.
type demoRegion struct {
	region, node, endpoint string
	location               [2]float64
	backendIP              string
	dnsPort, httpPort      int
	gossipPort             int
}

// demoFlags are the flags of `meridian demo`.
type demoFlags struct {
	failAfter                                  time.Duration
	dnsPort, httpPort, gossipPort, backendPort int
	logLevel                                   string
}

func parseDemoFlags(args []string, stderr io.Writer) (demoFlags, error) {
	var f demoFlags
	fs := flag.NewFlagSet("meridian demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, demoUsage); fs.PrintDefaults() }
	fs.DurationVar(&f.failAfter, "fail-after", 30*time.Second, "stop the eu-west backend after this long; 0: never")
	fs.IntVar(&f.dnsPort, "dns-port", 5353, "DNS port of the first node (the others use the next two)")
	fs.IntVar(&f.httpPort, "http-port", 9153, "admin HTTP port of the first node (the others use the next two)")
	fs.IntVar(&f.gossipPort, "gossip-port", 7946, "gossip port of the first node (the others use the next two)")
	fs.IntVar(&f.backendPort, "backend-port", 8443, "port of the three HTTPS backends")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if fs.NArg() > 0 {
		return f, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return f, nil
}

// demoRegions lays out the three regions on consecutive ports.
func demoRegions(f demoFlags) []demoRegion {
	base := []demoRegion{
		{region: "us-east", node: "use1-a", endpoint: "use1", location: [2]float64{39.04, -77.49}, backendIP: "127.0.0.11"},
		{region: "eu-west", node: "euw1-a", endpoint: "euw1", location: [2]float64{53.35, -6.26}, backendIP: "127.0.0.12"},
		{region: "ap-south", node: "aps1-a", endpoint: "aps1", location: [2]float64{19.08, 72.88}, backendIP: "127.0.0.13"},
	}
	for i := range base {
		base[i].dnsPort, base[i].httpPort, base[i].gossipPort = f.dnsPort+i, f.httpPort+i, f.gossipPort+i
	}
	return base
}

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f, err := parseDemoFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "meridian demo:", err)
		return 2
	}
	log, err := newLogger(stderr, "text", f.logLevel)
	if err != nil {
		fmt.Fprintln(stderr, "meridian demo:", err)
		return 2
	}
	if err := demo(ctx, f, stdout, log); err != nil {
		fmt.Fprintln(stderr, "meridian demo:", err)
		return 1
	}
	return 0
}

// demo runs the demo cluster until ctx ends.
func demo(ctx context.Context, f demoFlags, stdout io.Writer, log *slog.Logger) error {
	start := time.Now()
	dir, err := os.MkdirTemp("", "meridian-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	regions := demoRegions(f)
	backendTLS, err := demoPKI(dir, regions)
	if err != nil {
		return err
	}
	if err := demoKeyring(filepath.Join(dir, "keyring")); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	backends := map[string]*http.Server{}
	for _, r := range regions {
		srv, l, err := demoBackend(r, f.backendPort, backendTLS)
		if err != nil {
			return err
		}
		backends[r.endpoint] = srv
		g.Go(func() error { return ignoreClosed(srv.Serve(l)) })
		g.Go(func() error { <-gctx.Done(); return srv.Close() })
	}
	for _, r := range regions {
		file := filepath.Join(dir, r.node+".toml")
		if err := os.WriteFile(file, []byte(demoConfig(r, regions, f.backendPort)), 0o600); err != nil {
			return err
		}
		cfg, err := config.Load(file)
		if err != nil {
			return fmt.Errorf("demo configuration of %s: %w", r.node, err)
		}
		nlog := log.With("node", r.node)
		g.Go(func() error { return serve(gctx, cfg, serveFlags{config: file}, nlog) })
	}
	g.Go(func() error {
		if err := demoWaitReady(gctx, regions); err != nil {
			return err
		}
		demoBanner(stdout, regions, dir, time.Since(start))
		return demoFail(gctx, f.failAfter, backends["euw1"], log)
	})
	err = g.Wait()
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		err = nil
	}
	fmt.Fprintln(stdout, "meridian demo: stopped; removed", dir)
	return err
}

// ignoreClosed turns the error of a server that was closed on purpose into nil.
func ignoreClosed(err error) error {
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// demoPKI creates the CA in dir (ca.pem), the probes' client certificate
// (probe.pem, probe.key) and the backends' server certificate, which it
// returns as a TLS configuration demanding client certificates.
func demoPKI(dir string, regions []demoRegion) (*tls.Config, error) {
	ca, err := pki.NewAuthority(pki.AuthorityOptions{CommonName: "meridian demo root CA"})
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), ca.RootPEM(), 0o644); err != nil {
		return nil, err
	}
	probe, err := ca.Issue(pki.LeafRequest{CommonName: "meridian-probe", Client: true})
	if err != nil {
		return nil, err
	}
	if err := probe.Save(dir, "probe"); err != nil {
		return nil, err
	}
	req := pki.LeafRequest{CommonName: "demo backend", Server: true}
	for _, r := range regions {
		req.IPs = append(req.IPs, net.ParseIP(r.backendIP))
	}
	backend, err := ca.Issue(req)
	if err != nil {
		return nil, err
	}
	if err := backend.Save(dir, "backend"); err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "backend.pem"), filepath.Join(dir, "backend.key"))
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert,
		ClientCAs: ca.RootPool(), MinVersion: tls.VersionTLS12}, nil
}

// demoKeyring writes a gossip keyring with one random AES-256 key.
func demoKeyring(file string) error {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	return keygenWrite(file, base64.StdEncoding.EncodeToString(key)+"\n")
}

// demoBackend listens for region r's HTTPS backend, which answers every
// request with "ok" to clients presenting a certificate from the demo CA.
func demoBackend(r demoRegion, port int, conf *tls.Config) (*http.Server, net.Listener, error) {
	addr := net.JoinHostPort(r.backendIP, strconv.Itoa(port))
	l, err := tls.Listen("tcp", addr, conf)
	if err != nil {
		return nil, nil, fmt.Errorf("backend %s: %w", r.endpoint, err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, ErrorLog: slogDiscard(),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprintf(w, "ok from %s\n", r.endpoint)
		})}
	return srv, l, nil
}

// demoConfig is node r's configuration file.
func demoConfig(r demoRegion, all []demoRegion, backendPort int) string {
	var b strings.Builder
	var join, endpoints []string
	for _, o := range all {
		join = append(join, fmt.Sprintf("%q", net.JoinHostPort("127.0.0.1", strconv.Itoa(o.gossipPort))))
		endpoints = append(endpoints, fmt.Sprintf("  { name = %q, region = %q, address = %q, weight = 100 },", o.endpoint, o.region, o.backendIP))
	}
	fmt.Fprintf(&b, `# meridian demo: node %s of region %s.
[node]
name   = %q
region = %q

[dns]
listen = ["127.0.0.1:%d"]
nsid   = true

[http]
listen = "127.0.0.1:%d"

[gossip]
bind    = "127.0.0.1:%d"
join    = [%s]
profile = "local"
cluster = "meridian-demo"
keyring = "keyring"
stale_after = "10s"

[tls]
ca   = "ca.pem"
cert = "probe.pem"
key  = "probe.key"

[checks.api]
type     = "https"
port     = %d
path     = "/healthz"
interval = "1s"
timeout  = "500ms"
rise     = 2
fall     = 2

`, r.node, r.region, r.node, r.region, r.dnsPort, r.httpPort, r.gossipPort, strings.Join(join, ", "), backendPort)
	for _, o := range all {
		fmt.Fprintf(&b, "[regions.%s]\nlocation = [%g, %g]\n\n", o.region, o.location[0], o.location[1])
	}
	fmt.Fprintf(&b, `[[zones]]
origin     = "gslb.example.test."
ttl        = 30
ns         = ["ns1.gslb.example.test.", "ns2.gslb.example.test.", "ns3.gslb.example.test."]
hostmaster = "hostmaster.gslb.example.test."

# Every healthy endpoint, so a failover shows in one dig.
[[services]]
name        = "all.gslb.example.test."
policy      = "multivalue"
ttl         = 10
check       = "api"
quorum      = "majority"
endpoints = [
%s
]

# One endpoint, drawn by weight among the healthy ones.
[[services]]
name        = "api.gslb.example.test."
policy      = "weighted"
ttl         = 10
check       = "api"
quorum      = "majority"
endpoints = [
%s
]
`, strings.Join(endpoints, "\n"), strings.Join(endpoints, "\n"))
	return b.String()
}

// demoWaitReady waits until every node answers all.gslb.example.test with
// the three backends and its status shows every endpoint up: probes over
// mutual TLS, gossip and DNS all work.
func demoWaitReady(ctx context.Context, regions []demoRegion) error {
	deadline := time.Now().Add(30 * time.Second)
	for _, r := range regions {
		for {
			n, err := demoAnswers(r.dnsPort, "all.gslb.example.test.")
			if err == nil && n == len(regions) {
				err = demoAllUp(r.httpPort, len(regions))
			}
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("node %s not ready within 30 s: %v", r.node, err)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

// demoAllUp checks that the node's /api/v1/status shows every endpoint up,
// voted up by every region.
func demoAllUp(httpPort, regions int) error {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/api/v1/status", httpPort))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var st health.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return err
	}
	for _, s := range st.Services {
		for _, e := range s.Endpoints {
			ups := 0
			for _, v := range e.Votes {
				if v.State == "up" {
					ups++
				}
			}
			if e.State != "up" || ups != regions {
				return fmt.Errorf("%s %s is %s, voted up by %d regions of %d", s.Name, e.Name, e.State, ups, regions)
			}
		}
	}
	return nil
}

// demoBanner prints what to try.
func demoBanner(w io.Writer, regions []demoRegion, dir string, took time.Duration) {
	first := regions[0]
	fmt.Fprintf(w, `
meridian demo: ready in %s — three regions, each node probing every backend over mutual TLS.
  files: %s (removed on exit)

Try, in another terminal:
  dig @127.0.0.1 -p %d all.gslb.example.test          every healthy backend
  dig @127.0.0.1 -p %d api.gslb.example.test          one, by weight
  dig @127.0.0.1 -p %d api.gslb.example.test +nsid    ask another region's node
  meridian status -http 127.0.0.1:%d                 region x endpoint health matrix
  meridian skew -http 127.0.0.1:%d                   client-skew report: where the traffic goes (after a few digs)
  curl -s 127.0.0.1:%d/metrics | grep meridian_endpoint
  curl -sX POST 127.0.0.1:%d/api/v1/reload            reload a node's configuration

Open http://127.0.0.1:%d/ui for the status page: health matrix, members, skew report.

Ctrl-C stops the demo.
`, took.Round(time.Millisecond), dir, first.dnsPort, first.dnsPort, regions[1].dnsPort,
		first.httpPort, first.httpPort, first.httpPort, first.httpPort, first.httpPort)
}

// demoFail stops backend after d (never when d is 0), so the log shows the
// cluster fail over.
func demoFail(ctx context.Context, d time.Duration, backend *http.Server, log *slog.Logger) error {
	if d <= 0 {
		return nil
	}
	select {
	case <-ctx.Done():
		return nil
	case <-time.After(d):
	}
	log.Warn("demo: stopping the eu-west backend (euw1, 127.0.0.12) to show a failover; watch for \"endpoint verdict changed\"")
	return backend.Close()
}

// demoAnswers asks the node on 127.0.0.1:port for name's A records and
// returns how many it answered.
func demoAnswers(port int, name string) (int, error) {
	c := &dns.Client{Net: "udp", Timeout: time.Second}
	r, _, err := c.Exchange(new(dns.Msg).SetQuestion(name, dns.TypeA), net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return 0, err
	}
	return len(r.Answer), nil
}

// slogDiscard is an http.Server error log that drops everything: the
// backends' TLS errors (a client without a certificate) are expected.
func slogDiscard() *stdlog.Logger { return stdlog.New(io.Discard, "", 0) }
