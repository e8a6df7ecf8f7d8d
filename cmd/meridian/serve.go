package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"meridian/admin"
	"meridian/config"
	"meridian/gossip"
	"meridian/health"
	"meridian/probe"
	"meridian/resolver"
	"meridian/ui"
)

// serveFlags are the flags of `meridian serve`.
type serveFlags struct {
	config   string
	logFmt   string
	logLevel string
	lameduck time.Duration
}

func parseServeFlags(args []string, stderr io.Writer) (serveFlags, error) {
	var f serveFlags
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.config, "config", "config.toml", "configuration file")
	fs.StringVar(&f.logFmt, "log-format", "text", "log format: text or json")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.DurationVar(&f.lameduck, "lameduck", 0, "keep answering this long after a stop signal, reporting not ready")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if fs.NArg() > 0 {
		return f, fmt.Errorf("serve: unexpected argument %q", fs.Arg(0))
	}
	return f, nil
}

// newLogger builds the process logger: text or JSON on w.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("bad -log-level %q", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("bad -log-format %q: text or json", format)
}

func runServe(ctx context.Context, args []string, _, stderr io.Writer) int {
	f, err := parseServeFlags(args, stderr)
	if err != nil {
		return 2
	}
	log, err := newLogger(stderr, f.logFmt, f.logLevel)
	if err != nil {
		fmt.Fprintln(stderr, "meridian:", err)
		return 2
	}
	cfg, err := config.Load(f.config)
	if err != nil {
		log.Error("configuration rejected", "err", err)
		return 1
	}
	for _, w := range cfg.Warnings {
		log.Warn("configuration", "key", w.Key, "warning", w.Msg)
	}
	if err := serve(ctx, cfg, f, log); err != nil {
		log.Error("stopped", "err", err)
		return 1
	}
	return 0
}

// node is one running meridian: its components, wired together.
//
//	probe.Scheduler ─Result─▶ health.Local ─Changed─▶ publishHealth ─Snapshot─▶ resolver.Server
//	                              │                       ▲
//	                              ▼                       │ Changed
//	                         gossip.Node ◀──▶ peers ─▶ health.Table
type node struct {
	log        *slog.Logger
	reg        *prometheus.Registry
	file       string
	cfg        atomic.Pointer[config.Config]
	dns        *resolver.Server
	admin      *admin.Server
	local      *health.Local
	table      *health.Table
	localSub   <-chan struct{}
	snapshot   atomic.Pointer[health.Snapshot]
	probes     *probe.Scheduler
	gossip     *gossip.Node // nil without [gossip]
	encrypted  bool         // gossip was started with a keyring
	skew       *skewNode    // nil with skew.enabled = false
	endpointUp *prometheus.GaugeVec
	regionUp   *prometheus.GaugeVec
	reloadMu   sync.Mutex // serializes reloads
	reloadOK   prometheus.Gauge
	reloadTime prometheus.Gauge
}

func newNode(cfg *config.Config, f serveFlags, log *slog.Logger) (*node, error) {
	n := &node{log: log, reg: prometheus.NewRegistry(), file: f.config}
	n.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfo())
	n.endpointUp = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "meridian_endpoint_up",
		Help: "1 if the endpoint may be answered (up, unknown or unchecked), 0 if down."}, []string{"service", "endpoint"})
	n.regionUp = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "meridian_endpoint_region_up",
		Help: "1 if the region's nodes vote the endpoint up, 0 if down; no series while the region does not vote."},
		[]string{"service", "endpoint", "region"})
	n.reloadOK = prometheus.NewGauge(prometheus.GaugeOpts{Name: "meridian_config_last_reload_successful",
		Help: "1 if the last configuration load (start or reload) succeeded, 0 if it was rejected."})
	n.reloadTime = prometheus.NewGauge(prometheus.GaugeOpts{Name: "meridian_config_last_reload_success_timestamp_seconds",
		Help: "When the configuration was last loaded successfully, as a Unix time."})
	n.reloadOK.Set(1)
	n.reloadTime.SetToCurrentTime()
	n.reg.MustRegister(n.endpointUp, n.regionUp, n.reloadOK, n.reloadTime)
	n.admin = admin.New(admin.Options{HTTP: cfg.HTTP, Gatherer: n.reg, Logger: log.With("component", "admin")})
	n.local = health.NewLocal(log.With("component", "health"), nil)
	n.localSub = n.local.Subscribe()
	n.table = health.NewTable(n.local, health.TableOptions{Self: cfg.Node.Name, Region: cfg.Node.Region,
		StaleAfter: cfg.Gossip.StaleAfter.Duration})
	n.probes = probe.NewScheduler(probe.SchedulerOptions{Observer: n.local, Logger: log.With("component", "probe"),
		Metrics: probe.NewMetrics(n.reg)})
	var members func() []health.Member
	if cfg.Gossip.Enabled {
		members = func() []health.Member { return n.gossip.Members() }
	}
	var err error
	if n.skew, err = newSkewNode(cfg, log.With("component", "skew"), n.reg, members); err != nil {
		return nil, err
	}
	if cfg.Gossip.Enabled {
		n.encrypted = cfg.Gossip.Keyring != ""
		n.gossip, err = gossip.New(gossip.Options{Config: cfg.Gossip, Name: cfg.Node.Name, Region: cfg.Node.Region,
			Local: n.local, Table: n.table, Logger: log, Registerer: n.reg,
			Exchange: n.skew.exchange(), ExchangeInterval: cfg.Skew.ExchangeInterval.Duration})
		if err != nil {
			return nil, err
		}
	}
	n.snapshot.Store(health.NewSnapshot(cfg, n.table))
	n.admin.Handle("GET /api/v1/status", admin.JSON(func() any {
		return health.BuildStatus(n.cfg.Load(), n.snapshot.Load(), n.table, time.Now())
	}))
	n.dns, err = resolver.New(cfg, resolver.Options{Logger: log.With("component", "dns"),
		Metrics: resolver.NewMetrics(n.reg), Lameduck: f.lameduck, Started: func() { n.admin.SetReady(true) },
		Recorder: n.skew.recorder()})
	if err != nil {
		return nil, err
	}
	n.admin.Handle("GET /api/v1/explain", explainHandler(n.dns))
	n.admin.Handle("GET /api/v1/skew", n.skew.handler())
	n.admin.Handle("POST /api/v1/reload", n.reloadHandler())
	n.admin.Handle("GET /ui", ui.Handler(ui.Options{
		Status: func() health.Status {
			return health.BuildStatus(n.cfg.Load(), n.snapshot.Load(), n.table, time.Now())
		},
		Services: func() []string { return ui.ServiceNames(n.cfg.Load()) },
	}))
	return n, n.apply(cfg)
}

// apply makes cfg the running configuration. Every fallible part is tried
// before anything changes, and a failure leaves probes, health rules and
// answers as they were: first the checks (certificate files, via
// probe.BuildSpecs), then the answer table with its skew recorder (zones
// compiled, GeoIP opened: the resolver swaps only when that succeeds).
// Then the configuration is stored before the health rules change, so
// that the snapshot rebuild their change signals reads the new one; the
// probes switch last. probes.Update builds the checks again and fails only
// if a certificate file changed on disk since; then the rest is put back.
func (n *node) apply(cfg *config.Config) error {
	if _, err := probe.BuildSpecs(cfg); err != nil {
		return err
	}
	prev := n.cfg.Load()
	if err := n.skew.update(n.dns, cfg, n.snapshot.Load()); err != nil {
		return err
	}
	n.cfg.Store(cfg)
	n.local.Configure(cfg)
	if err := n.probes.Update(cfg); err != nil {
		return errors.Join(err, n.restore(prev))
	}
	return nil
}

// restore puts prev back as the running configuration after a reload
// failed late (a file changed on disk between the checks and the switch);
// nil prev (the first apply) has nothing to restore. Observations of
// targets only prev has start over from unknown.
func (n *node) restore(prev *config.Config) error {
	if prev == nil {
		return nil
	}
	if err := n.skew.update(n.dns, prev, n.snapshot.Load()); err != nil {
		return fmt.Errorf("restore the previous answer table: %w", err)
	}
	n.cfg.Store(prev)
	n.local.Configure(prev)
	if err := n.probes.Update(prev); err != nil {
		return fmt.Errorf("restore the previous probes: %w", err)
	}
	return nil
}

// publishHealth rebuilds the health snapshot whenever a verdict changes and
// hands it to the resolver, which swaps its answer table.
func (n *node) publishHealth(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.localSub:
		case <-n.table.Changed():
		}
		snap := health.NewSnapshot(n.cfg.Load(), n.table)
		if err := n.dns.SetHealth(snap); err != nil {
			n.log.Error("health snapshot rejected", "err", err)
			continue
		}
		prev := n.snapshot.Swap(snap)
		n.skew.healthChanged(snap)
		for _, c := range health.Changes(prev, snap) {
			n.log.Info("endpoint verdict changed", "service", c.Service, "endpoint", c.Endpoint,
				"from", c.From.String(), "to", c.To.String(), "votes", c.Votes())
		}
		snap.ExportUp(n.endpointUp)
		snap.ExportRegionUp(n.regionUp)
	}
}

func buildInfo() prometheus.Collector {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "meridian_build_info",
		Help: "Always 1, labelled with the build's version and Go version."}, []string{"version", "goversion"})
	g.WithLabelValues(version, runtime.Version()).Set(1)
	return g
}

// serve runs the node until ctx ends.
func serve(ctx context.Context, cfg *config.Config, f serveFlags, log *slog.Logger) error {
	n, err := newNode(cfg, f, log)
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return n.dns.Run(gctx) })
	g.Go(func() error { return n.admin.Run(gctx) })
	g.Go(func() error { return n.probes.Run(gctx) })
	g.Go(func() error { n.publishHealth(gctx); return nil })
	if n.gossip != nil {
		g.Go(func() error { return n.gossip.Run(gctx) })
	}
	if n.skew != nil {
		g.Go(func() error { return n.skew.Run(gctx) })
	}
	g.Go(func() error { n.reloadOnHUP(gctx); return nil })
	g.Go(func() error { <-gctx.Done(); n.admin.SetReady(false); return nil })
	log.Info("meridian started", "node", cfg.Node.Name, "region", cfg.Node.Region, "config", f.config)
	err = g.Wait()
	log.Info("meridian stopped")
	return err
}

// reloadOnHUP reloads the configuration file on SIGHUP. A file that fails to
// load is logged and the running configuration keeps serving.
func (n *node) reloadOnHUP(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			_ = n.reload() // logged

		}
	}
}

// reload loads the configuration file again and applies it. On any error
// the running configuration keeps serving; the error is logged, counted in
// meridian_config_last_reload_successful and returned. Reloads (SIGHUP and
// POST /api/v1/reload) are serialized.
func (n *node) reload() error {
	n.reloadMu.Lock()
	defer n.reloadMu.Unlock()
	old := n.cfg.Load()
	cfg, err := config.Load(n.file)
	if err == nil {
		err = n.checkGossip(cfg)
	}
	if err == nil {
		err = n.apply(cfg)
	}
	if err == nil {
		if err = n.reloadGossip(cfg); err != nil {
			err = errors.Join(err, n.restore(old))
		}
	}
	if err != nil {
		n.reloadOK.Set(0)
		n.log.Error("reload rejected: the previous configuration keeps serving", "err", err)
		return err
	}
	for _, k := range restartKeys(old, cfg) {
		n.log.Warn("configuration key changed: it takes effect at the next restart", "key", k)
	}
	for _, w := range cfg.Warnings {
		n.log.Warn("configuration", "key", w.Key, "warning", w.Msg)
	}
	n.reloadOK.Set(1)
	n.reloadTime.SetToCurrentTime()
	n.log.Info("configuration reloaded", "config", n.file)
	return nil
}

// reloadHandler serves POST /api/v1/reload: 200 when the file was loaded
// and applied, 422 with the error (the old configuration keeps serving).
func (n *node) reloadHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		res := struct {
			OK    bool   `json:"ok"`
			Error string `json:"error,omitempty"`
		}{OK: true}
		if err := n.reload(); err != nil {
			res.OK, res.Error = false, err.Error()
			w.WriteHeader(http.StatusUnprocessableEntity)
		}
		_ = json.NewEncoder(w).Encode(res)
	})
}

// checkGossip tries what reloadGossip will do without changing anything:
// gossip must have been started with a keyring, and the file must read.
func (n *node) checkGossip(cur *config.Config) error {
	if n.gossip == nil || cur.Gossip.Keyring == "" {
		return nil
	}
	if !n.encrypted {
		return errors.New("gossip: keyring: gossip was started without a keyring; encrypting it needs a restart")
	}
	if _, err := gossip.ReadKeyring(cur.Gossip.Keyring); err != nil {
		return fmt.Errorf("gossip: %w", err)
	}
	return nil
}

// reloadGossip applies what a reload can change in gossip: the keyring
// (rotation: add a key everywhere, make it primary, remove the old one).
// Every other [gossip] key, and [node], take effect at the next restart
// (restartKeys, logged by reload).
func (n *node) reloadGossip(cur *config.Config) error {
	if n.gossip == nil || cur.Gossip.Keyring == "" {
		return nil
	}
	return n.gossip.UpdateKeyring(cur.Gossip.Keyring)
}

// restartKeys names the keys that differ between old and cur and that only
// a restart applies.
func restartKeys(old, cur *config.Config) []string {
	var keys []string
	diff := func(key string, changed bool) {
		if changed {
			keys = append(keys, key)
		}
	}
	og, cg := old.Gossip, cur.Gossip
	diff("node.name", old.Node.Name != cur.Node.Name)
	diff("node.region", old.Node.Region != cur.Node.Region)
	diff("dns.listen", !slices.Equal(old.DNS.Listen, cur.DNS.Listen))
	diff("dns.udp_sockets", old.DNS.UDPSockets != cur.DNS.UDPSockets)
	diff("http.listen", old.HTTP.Listen != cur.HTTP.Listen)
	diff("http.tls_cert", old.HTTP.TLSCert != cur.HTTP.TLSCert)
	diff("http.tls_key", old.HTTP.TLSKey != cur.HTTP.TLSKey)
	diff("http.client_ca", old.HTTP.ClientCA != cur.HTTP.ClientCA)
	diff("http.insecure", old.HTTP.Insecure != cur.HTTP.Insecure)
	diff("gossip", og.Enabled != cg.Enabled)
	diff("skew.enabled", old.Skew.Recording() != cur.Skew.Recording())
	diff("skew.exchange_interval", old.Skew.ExchangeInterval != cur.Skew.ExchangeInterval)
	if og.Enabled && cg.Enabled {
		diff("gossip.bind", og.Bind != cg.Bind)
		diff("gossip.advertise", og.Advertise != cg.Advertise)
		diff("gossip.join", !slices.Equal(og.Join, cg.Join))
		diff("gossip.profile", og.Profile != cg.Profile)
		diff("gossip.cluster", og.Cluster != cg.Cluster)
		diff("gossip.transport", og.Transport != cg.Transport)
		diff("gossip.stale_after", og.StaleAfter != cg.StaleAfter)
		diff("gossip.keyring", (og.Keyring == "") != (cg.Keyring == ""))
		diff("gossip.tls", og.TLSFiles != cg.TLSFiles)
	}
	return keys
}
