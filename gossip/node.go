package gossip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"

	"meridian/config"
	"meridian/health"
)

// Timing of a Node's own work (memberlist's comes from the profile).
const (
	leaveTimeout  = 5 * time.Second  // Run's Leave waits at most this for the broadcast
	updateTimeout = 5 * time.Second  // SetDraining waits at most this for the broadcast
	reclaimAfter  = 10 * time.Second // a dead node's name may rejoin from a new address after this
	welcomeQueue  = 256              // joins waiting for our view; more are left to push/pull
)

// minRetransmitMult is the least retransmit multiplier, for memberlist's
// own messages (alive, suspect, dead, leave) and for health broadcasts: each
// goes to RetransmitMult × ⌈log10(N+1)⌉ random peers, and so does each relay
// of it by a node it was news to. memberlist's presets (2 for "local", 4 for
// "lan" and "wan") count on push/pull to reach the nodes that the epidemic
// missed; with 2, a change misses some node of a 7-node cluster about one
// time in six and waits for push/pull (up to a minute on "wan"), which is
// too slow for failover. At 8 a node is missed with probability about
// (1-1/N)^(8·N), under 0.1 %, for a few hundred bytes more per change in
// clusters that count tens of nodes.
const minRetransmitMult = 8

// Options configures a Node.
type Options struct {
	Config       config.Gossip // bind, join, profile, cluster, keyring, transport, TLS files
	Name, Region string        // this node's name and region (config.Node)
	// Local holds this node's own observations: Run gossips its changes.
	Local *health.Local
	// Table receives the peers' views (Merge) and membership (SetMember).
	Table      *health.Table
	Logger     *slog.Logger
	Registerer prometheus.Registerer // may be nil
	// Exchange, if set, is state this node sends every peer each
	// ExchangeInterval (default 15 s) and shortly after a peer joins, and
	// receives theirs into (see Exchange).
	Exchange         Exchange
	ExchangeInterval time.Duration
}

// Node is this process's member of the gossip cluster. New builds it and
// Run runs it, once; the other methods are safe for concurrent use at any
// time.
type Node struct {
	opts    Options
	log     *slog.Logger
	epoch   uint64 // process start: a restart supersedes what the node said before
	conf    *memberlist.Config
	keyring *memberlist.Keyring // nil when gossip is not encrypted
	keyMu   sync.Mutex          // serializes UpdateKeyring
	queue   *memberlist.TransmitLimitedQueue
	metrics *metrics

	started  atomic.Bool
	draining atomic.Bool
	ml       atomic.Pointer[memberlist.Memberlist] // set while Run runs
	addr     atomic.Pointer[string]                // LocalAddr
	others   atomic.Int64                          // peers memberlist sees alive

	mu     sync.Mutex
	peers  map[string]peer     // peers seen alive, copied under memberlist's node lock
	lost   map[string]lostPeer // failed peers Run tries to reconnect to
	joined chan string         // peers that just joined, to send our view to

	// Exchange: peers' exports waiting for Accept; peers that just joined,
	// to send our export to; the seq of our exports (the exchange
	// goroutine's); the size bound.
	inbox          *inbox
	exchangeJoined chan string
	exchangeSeq    uint64
	exchangeLimit  int

	// Test hooks.
	skipLeave      bool          // Run ends without Leave, as if the process were killed
	reconnectEvery time.Duration // how often Run retries lost peers
	// mute, when set, makes the node send no views at all (no broadcasts,
	// push/pull state, welcome or heartbeat) while memberlist keeps it
	// alive: a hung delegate.
	mute atomic.Bool
	// exchangeJoinDelay is how long after a join the export goes out.
	exchangeJoinDelay time.Duration
	// wrapTransport, when set, wraps the "udp" transport (memberlist's
	// NetTransport), e.g. to drop a partitioned peer's traffic.
	wrapTransport func(memberlist.Transport) memberlist.Transport
}

// New validates opts, reads the keyring and builds the memberlist
// configuration. It starts nothing; Run does.
func New(opts Options) (*Node, error) {
	if err := opts.check(); err != nil {
		return nil, fmt.Errorf("gossip: %w", err)
	}
	if opts.ExchangeInterval == 0 {
		opts.ExchangeInterval = defaultExchangeInterval
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "gossip")
	conf, err := memberlistConfig(opts.Config)
	if err != nil {
		return nil, fmt.Errorf("gossip: %w", err)
	}
	n := &Node{
		opts:           opts,
		log:            log,
		epoch:          uint64(time.Now().UnixNano()),
		conf:           conf,
		peers:          map[string]peer{},
		lost:           map[string]lostPeer{},
		joined:         make(chan string, welcomeQueue),
		reconnectEvery: reconnectInterval,

		inbox:             newInbox(),
		exchangeJoined:    make(chan string, welcomeQueue),
		exchangeLimit:     maxExchangeBytes,
		exchangeJoinDelay: exchangeJoinDelay,
	}
	if opts.Config.Keyring != "" {
		if n.keyring, err = openKeyring(opts.Config.Keyring, log); err != nil {
			return nil, fmt.Errorf("gossip: %w", err)
		}
	}
	conf.Name = opts.Name
	conf.Keyring = n.keyring
	conf.GossipVerifyIncoming, conf.GossipVerifyOutgoing = true, true
	conf.Delegate = delegate{n}
	conf.Events = events{n}
	conf.Conflict = conflicts{n}
	conf.Logger = newMemberlistLogger(log.With("lib", "memberlist"))
	n.queue = &memberlist.TransmitLimitedQueue{NumNodes: n.numNodes, RetransmitMult: conf.RetransmitMult}
	if n.metrics, err = newMetrics(opts.Registerer, n.membersGauge, n.queuedGauge); err != nil {
		return nil, err
	}
	return n, nil
}

// check validates what New cannot get wrong later.
func (o Options) check() error {
	g := o.Config
	switch {
	case o.Local == nil || o.Table == nil:
		return errors.New("options need a Local and a Table")
	case o.Name == "" || len(o.Name) > maxOrigin:
		return fmt.Errorf("node name must be 1..%d bytes, not %d", maxOrigin, len(o.Name))
	case o.Region == "" || len(o.Region) > maxRegion:
		return fmt.Errorf("region must be 1..%d bytes, not %d", maxRegion, len(o.Region))
	case len(g.Cluster) > memberlist.LabelMaxSize:
		return fmt.Errorf("cluster label is longer than %d bytes", memberlist.LabelMaxSize)
	case o.ExchangeInterval < 0:
		return fmt.Errorf("exchange interval %s is negative", o.ExchangeInterval)
	}
	host, _, err := splitHostPort("bind", g.Bind)
	if err != nil {
		return err
	}
	switch g.Transport {
	case "udp":
		if g.Keyring == "" && !host.IsLoopback() {
			return fmt.Errorf("bind %q is not a loopback address: gossip needs a keyring", g.Bind)
		}
	case "tls":
		if g.CA == "" || g.Cert == "" || g.Key == "" {
			return errors.New(`transport "tls" needs ca, cert and key`)
		}
	default:
		return fmt.Errorf("transport %q is not udp or tls", g.Transport)
	}
	return nil
}

// memberlistConfig builds the memberlist configuration of a profile, bound
// and advertised as g says and labelled with the cluster name.
func memberlistConfig(g config.Gossip) (*memberlist.Config, error) {
	var conf *memberlist.Config
	switch g.Profile {
	case "wan":
		conf = memberlist.DefaultWANConfig()
	case "lan":
		conf = memberlist.DefaultLANConfig()
	case "local":
		conf = memberlist.DefaultLocalConfig()
	default:
		return nil, fmt.Errorf("profile %q is not wan, lan or local", g.Profile)
	}
	host, port, err := splitHostPort("bind", g.Bind)
	if err != nil {
		return nil, err
	}
	conf.BindAddr, conf.BindPort = host.String(), port
	conf.AdvertiseAddr, conf.AdvertisePort = "", port
	if g.Advertise != "" {
		host, port, err := splitHostPort("advertise", g.Advertise)
		if err != nil {
			return nil, err
		}
		if port == 0 {
			port = conf.BindPort
		}
		conf.AdvertiseAddr, conf.AdvertisePort = host.String(), port
	}
	conf.Label = g.Cluster
	conf.RetransmitMult = max(conf.RetransmitMult, minRetransmitMult)
	conf.DeadNodeReclaimTime = reclaimAfter
	return conf, nil
}

// splitHostPort parses "ip:port"; an empty host means every interface.
func splitHostPort(key, hostport string) (netip.Addr, int, error) {
	h, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("%s %q is not ip:port", key, hostport)
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("%s %q has a bad port", key, hostport)
	}
	if h == "" {
		return netip.IPv4Unspecified(), int(port), nil
	}
	a, err := netip.ParseAddr(h)
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("%s %q: host must be an IP address", key, hostport)
	}
	return a.Unmap(), int(port), nil
}

// openKeyring reads the keyring file into a memberlist keyring, warning
// when the file is readable by others.
func openKeyring(file string, log *slog.Logger) (*memberlist.Keyring, error) {
	keys, err := ReadKeyring(file)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(file); err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.Warn("gossip keyring file is readable by others", "file", file, "mode", fi.Mode().Perm().String())
	}
	return memberlist.NewKeyring(keys[1:], keys[0])
}

// Run creates the memberlist, joins the cluster (retrying with backoff
// until a join address answers) and disseminates this node's changes until
// ctx ends. Then it leaves the cluster (waiting at most 5 s for the leave to
// go out) and shuts memberlist down. It returns once every goroutine it
// started has ended; an error only when gossip could not start. Run may be
// called once.
func (n *Node) Run(ctx context.Context) error {
	if !n.started.CompareAndSwap(false, true) {
		return errors.New("gossip: Run called twice")
	}
	// The transport outlives ctx until memberlist has left and shut down.
	tctx, cancelTransport := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelTransport()
	t, err := n.transport(tctx)
	if err != nil {
		return fmt.Errorf("gossip: start memberlist on %s: %w", n.opts.Config.Bind, err)
	}
	n.conf.Transport = t
	ml, err := memberlist.Create(n.conf)
	if err != nil {
		t.Shutdown() // memberlist shuts it down on some failures, not all
		return fmt.Errorf("gossip: start memberlist on %s: %w", n.opts.Config.Bind, err)
	}
	addr := ml.LocalNode().Address()
	n.addr.Store(&addr)
	n.ml.Store(ml)
	n.log.Info("gossip started", "addr", addr, "cluster", n.conf.Label, "profile", n.opts.Config.Profile,
		"transport", n.opts.Config.Transport, "encrypted", n.keyring != nil, "epoch", n.epoch)

	var wg sync.WaitGroup
	wg.Go(func() { n.disseminate(ctx) })
	wg.Go(func() { n.join(ctx, ml) })
	wg.Go(func() { n.reconnect(ctx, ml) })
	wg.Go(func() { n.welcome(ctx, ml) })
	wg.Go(func() { n.heartbeat(ctx, ml) })
	if n.opts.Exchange != nil {
		wg.Go(func() { n.exchange(ctx, ml) })
		wg.Go(func() { n.deliver(ctx) })
	}
	<-ctx.Done()
	n.stop(ml)
	wg.Wait()
	return nil
}

// transport builds the node's transport: mutual TLS, or memberlist's own
// (through the test hook, if set), with a deadline on every dialed stream.
func (n *Node) transport(ctx context.Context) (memberlist.Transport, error) {
	var t memberlist.Transport
	if n.opts.Config.Transport == "tls" {
		tt, err := NewTLSTransport(ctx, TLSTransportConfig{
			BindAddr: n.conf.BindAddr, BindPort: n.conf.BindPort,
			CAFile: n.opts.Config.CA, CertFile: n.opts.Config.Cert, KeyFile: n.opts.Config.Key,
			Logger: n.log.With("lib", "tls_transport"), Timeout: n.conf.TCPTimeout,
		})
		if err != nil {
			return nil, err
		}
		t = tt
	} else {
		nt, err := netTransport(n.conf)
		if err != nil {
			return nil, err
		}
		t = nt
		if n.wrapTransport != nil {
			t = n.wrapTransport(nt)
		}
	}
	return &deadlineTransport{Transport: t, timeout: n.conf.TCPTimeout}, nil
}

// stop leaves the cluster (unless a test kills the node) and shuts down.
func (n *Node) stop(ml *memberlist.Memberlist) {
	if !n.skipLeave {
		if err := ml.Leave(leaveTimeout); err != nil {
			n.log.Warn("gossip leave", "err", err)
		} else {
			n.log.Info("left the gossip cluster")
		}
	}
	if err := ml.Shutdown(); err != nil {
		n.log.Warn("gossip shutdown", "err", err)
	}
	n.ml.Store(nil)
	n.others.Store(0)
	n.queue.Reset()
}

// Members returns the cluster members memberlist sees alive, this node
// included, sorted by name; nil while Run is not running. Peers of an
// incompatible protocol version are left out. It reads the node's own
// copies of the peers (see peer), never memberlist's nodes, whose fields
// memberlist rewrites in place.
func (n *Node) Members() []health.Member {
	if n.ml.Load() == nil {
		return nil
	}
	out := []health.Member{{Name: n.opts.Name, Region: n.opts.Region, Alive: true}}
	n.mu.Lock()
	for name, p := range n.peers {
		if p.compatible {
			out = append(out, health.Member{Name: name, Region: p.region, Alive: true})
		}
	}
	n.mu.Unlock()
	slices.SortFunc(out, func(a, b health.Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// livePeers returns copies of the live compatible peers (those in to, when
// it is not nil), for sending to.
func (n *Node) livePeers(to map[string]bool) []*memberlist.Node {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []*memberlist.Node
	for name, p := range n.peers {
		if p.compatible && (to == nil || to[name]) {
			nd := p.node
			out = append(out, &nd)
		}
	}
	return out
}

// LocalAddr returns the address peers reach this node at ("ip:port", with
// the port actually bound when bind's port is 0), or "" until Run has
// started memberlist. It keeps its value after Run returns.
func (n *Node) LocalAddr() string {
	if a := n.addr.Load(); a != nil {
		return *a
	}
	return ""
}

// SetDraining announces in this node's metadata whether it is draining. It
// waits (at most 5 s) until the update has gone out when Run is running;
// before Run, the flag is announced when Run starts.
func (n *Node) SetDraining(draining bool) error {
	if n.draining.Swap(draining) == draining {
		return nil
	}
	n.log.Info("gossip draining", "draining", draining)
	ml := n.ml.Load()
	if ml == nil {
		return nil
	}
	if err := ml.UpdateNode(updateTimeout); err != nil {
		return fmt.Errorf("gossip: announce draining=%t: %w", draining, err)
	}
	return nil
}

// numNodes is the cluster size the broadcast queue scales retransmits by.
func (n *Node) numNodes() int { return int(n.others.Load()) + 1 }

func (n *Node) membersGauge() float64 {
	if n.ml.Load() == nil {
		return 0
	}
	return float64(n.numNodes())
}

func (n *Node) queuedGauge() float64 { return float64(n.queue.NumQueued()) }
