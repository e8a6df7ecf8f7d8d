// Package resolver is meridian's authoritative DNS server: it compiles the
// zones and steered services of a configuration, under one health snapshot,
// into an immutable answer table, and answers queries over UDP and TCP from
// whatever table one atomic pointer holds. Probing and gossip never touch the
// answer path: they hand the server a new snapshot, and it swaps tables.
package resolver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"meridian/config"
	"meridian/placement"
)

// Options configures a Server.
type Options struct {
	Logger  *slog.Logger
	Metrics *Metrics
	// Lameduck is how long the server keeps answering after Run's context
	// ends, so that a load balancer or peer notices it is going (0: none).
	Lameduck time.Duration
	// Started, if set, is called once every listener is bound.
	Started func()
	// Recorder, if set, receives every answer sent for a steered service
	// (see AnswerRecorder). UpdateWithRecorder replaces it together with
	// a configuration.
	Recorder AnswerRecorder
	// Clock, if set, replaces time.Now where the answer path reads the time
	// (the TTL slot of low-discrepancy answers). For tests.
	Clock func() time.Time
}

// Server answers DNS queries for one node. Its table is swapped atomically
// by Update and SetHealth; queries never wait for either.
type Server struct {
	opts  Options
	table atomic.Pointer[table]
	rnd   rand64

	mu     sync.Mutex // serialises writers of table; never taken by queries
	cfg    *config.Config
	health Health
	placer *placement.Placer
	rec    AnswerRecorder

	listen  []string
	sockets int
	bound   chan struct{}
	addrs   []net.Addr
}

// New compiles cfg (every endpoint up until SetHealth says otherwise) and
// returns a Server that is not yet listening.
func New(cfg *config.Config, opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics(nil)
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	s := &Server{opts: opts, rnd: rand.Uint64, listen: cfg.DNS.Listen, sockets: cfg.DNS.UDPSockets, bound: make(chan struct{}),
		rec: opts.Recorder}
	if err := s.Update(cfg); err != nil {
		return nil, err
	}
	return s, nil
}

// Update compiles a new configuration under the current health and swaps it
// in, keeping the current recorder. On error the previous table keeps
// serving. Listen addresses are fixed at Run and not changed by Update.
func (s *Server) Update(cfg *config.Config) error {
	return s.update(cfg, nil, false)
}

// UpdateWithRecorder is Update that also replaces the recorder (nil: off),
// in the same atomic swap: every answer from the new configuration goes to
// rec, and an answer still being sent from the previous one to the
// recorder of that configuration. So the service and endpoint indexes a
// recorder receives always refer to the configuration it was given with,
// even while a reload reorders services or endpoints.
func (s *Server) UpdateWithRecorder(cfg *config.Config, rec AnswerRecorder) error {
	return s.update(cfg, rec, true)
}

func (s *Server) update(cfg *config.Config, rec AnswerRecorder, setRec bool) error {
	p, err := placement.New(placement.Options{Regions: cfg.Regions, NodeRegion: cfg.Node.Region, GeoIPFile: cfg.GeoIP.Database})
	if err != nil {
		return fmt.Errorf("resolver: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, oldRec := s.placer, s.rec
	if setRec {
		s.rec = rec
	}
	if err := s.swap(cfg, s.health, p); err != nil {
		s.rec = oldRec
		p.Close()
		return err
	}
	if old != nil {
		old.Close() // safe while old tables still use it: it only drops GeoIP
	}
	return nil
}

// SetHealth compiles the current configuration under h and swaps it in.
func (s *Server) SetHealth(h Health) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.swap(s.cfg, h, s.placer)
}

func (s *Server) swap(cfg *config.Config, h Health, p *placement.Placer) error {
	if h == nil {
		h = AllUp{}
	}
	t, err := compile(cfg, h, s.opts.Metrics, p)
	if err != nil {
		return err
	}
	t.now, t.rec = s.opts.Clock, s.rec
	s.cfg, s.health, s.placer = cfg, h, p
	s.table.Store(t)
	return nil
}

// Addrs returns the bound UDP addresses (useful with port 0) once Run has
// bound them, or nil before.
func (s *Server) Addrs() []net.Addr {
	select {
	case <-s.bound:
		return s.addrs
	default:
		return nil
	}
}

// Run binds every listen address (UDP and TCP on the same port) and answers
// until ctx ends; then it keeps answering for the lameduck period and shuts
// down, letting in-flight answers finish.
func (s *Server) Run(ctx context.Context) error {
	var closers []func(context.Context) error
	var wg sync.WaitGroup
	for _, addr := range s.listen {
		c, err := s.listenAddr(addr, &wg)
		closers = append(closers, c...)
		if err != nil {
			s.shutdown(closers, &wg)
			return err
		}
	}
	close(s.bound)
	if s.opts.Started != nil {
		s.opts.Started()
	}
	s.opts.Logger.Info("dns listening", "addrs", s.listen, "udp_sockets", s.sockets)
	<-ctx.Done()
	if s.opts.Lameduck > 0 {
		time.Sleep(s.opts.Lameduck)
	}
	return s.shutdown(closers, &wg)
}

func (s *Server) shutdown(closers []func(context.Context) error, wg *sync.WaitGroup) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var errs []error
	for _, c := range closers {
		errs = append(errs, c(ctx))
	}
	wg.Wait()
	return errors.Join(errs...)
}

// listenAddr binds TCP and then UDP sockets on addr (the UDP sockets reuse
// the port TCP got, so ":0" works) and starts serving them.
func (s *Server) listenAddr(addr string, wg *sync.WaitGroup) ([]func(context.Context) error, error) {
	lc := net.ListenConfig{Control: reusePort}
	tl, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("resolver: listen tcp %s: %w", addr, err)
	}
	closers := []func(context.Context) error{s.serveTCP(tl, wg)}
	udpAddr := tl.Addr().String()
	for i := 0; i < s.sockets; i++ {
		pc, err := lc.ListenPacket(context.Background(), "udp", udpAddr)
		if err != nil {
			return closers, fmt.Errorf("resolver: listen udp %s: %w", udpAddr, err)
		}
		if i == 0 {
			s.addrs = append(s.addrs, pc.LocalAddr())
		}
		conn := pc.(*net.UDPConn)
		closers = append(closers, func(context.Context) error { return conn.Close() })
		wg.Go(func() { s.serveUDP(conn) })
	}
	return closers, nil
}

func reusePort(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	})
	return errors.Join(err, serr)
}

// serveTCP answers TCP queries (several per connection, pipelined) with
// miekg/dns's server and returns its shutdown function.
func (s *Server) serveTCP(l net.Listener, wg *sync.WaitGroup) func(context.Context) error {
	started := make(chan struct{})
	srv := &dns.Server{Listener: l, Handler: dns.HandlerFunc(s.serveTCPQuery),
		MsgAcceptFunc: acceptAll, IdleTimeout: func() time.Duration { return 10 * time.Second },
		NotifyStartedFunc: func() { close(started) }}
	failed := make(chan struct{})
	wg.Go(func() {
		if err := srv.ActivateAndServe(); err != nil {
			s.opts.Logger.Error("dns tcp server stopped", "addr", l.Addr().String(), "err", err)
		}
		close(failed)
	})
	select { // ShutdownContext before ActivateAndServe would leave it serving
	case <-started:
	case <-failed:
	}
	return func(ctx context.Context) error {
		if err := srv.ShutdownContext(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("resolver: shut down tcp %s: %w", l.Addr(), err)
		}
		return nil
	}
}

// acceptAll lets every query reach the handler, which decides FORMERR and
// NOTIMP itself so that UDP and TCP behave the same.
func acceptAll(dh dns.Header) dns.MsgAcceptAction {
	if dh.Bits&(1<<15) != 0 {
		return dns.MsgIgnore // a response: never answer it
	}
	return dns.MsgAccept
}

func (s *Server) serveTCPQuery(w dns.ResponseWriter, req *dns.Msg) {
	start := time.Now()
	t := s.table.Load()
	s.opts.Metrics.query(protoTCP, qtypeOf(req))
	var snt sent
	resp := t.answer(req, addrOf(w.RemoteAddr()), s.rnd, &snt)
	if resp == nil {
		return
	}
	resp.Compress = true
	if err := w.WriteMsg(resp); err != nil {
		return
	}
	snt.record()
	s.opts.Metrics.response(protoTCP, resp.Rcode)
	s.opts.Metrics.duration[protoTCP].Observe(time.Since(start).Seconds())
}

// addrOf returns the IP of a TCP or UDP address (invalid for others).
func addrOf(a net.Addr) netip.Addr {
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

func qtypeOf(req *dns.Msg) uint16 {
	if len(req.Question) == 0 {
		return 0
	}
	return req.Question[0].Qtype
}
