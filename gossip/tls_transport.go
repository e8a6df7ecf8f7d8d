// TLSTransport: memberlist over mutual TLS on TCP.
//
// Modelled on prometheus/alertmanager cluster/tls_transport.go and tls_connection.go
// (itself forked from mxinden/memberlist-tls-transport): memberlist's UDP packets are
// carried as framed messages over TLS connections, and its TCP streams become TLS
// streams. Every connection opens, after the handshake, with one byte saying what it
// carries:
//
//	tlsConnPacket: frames until EOF, each  uint32 length (big endian) | uint8 n | from (n bytes, "ip:port") | payload
//	tlsConnStream: the rest of the connection belongs to memberlist (push/pull, SendReliable, TCP pings)
//
// The length counts everything after itself and is at most tlsMaxFrame (10 MiB);
// "from" is the sender's advertise address, to which memberlist sends its replies
// (the TCP source port is ephemeral, so it cannot serve). The peer is authenticated
// by its certificate before a single byte of it is read, so "from" is as trusted as
// the address a member advertises in its own alive messages.
//
// Differences from alertmanager, on purpose:
//   - WriteTo never waits for the network. Each destination has a sender goroutine
//     with a bounded queue and one long-lived connection (dialled on demand, closed
//     after tlsSendIdle without traffic). A handshake per packet would cost a round
//     trip or two and an ECDSA signature per ping and skew memberlist's probe RTTs;
//     and a synchronous dial, as in alertmanager's pool, stalls memberlist's probe and
//     gossip loops for the whole dial timeout whenever a peer is blackholed. Like UDP,
//     a packet that cannot be delivered (dial failed, queue full) is lost; memberlist
//     is built for that.
//   - Nodes are addressed by IP and their certificates need not name those IPs, so
//     the client does not match host names: it verifies the chain against the CA
//     itself (tlsVerifyNodeCert). The server uses tls.RequireAndVerifyClientCert and
//     the same check on top. Both sides also demand that the peer's leaf carries both
//     server and client auth usages (a node certificate, `meridian certs issue
//     --server --client`), so a probe's client-only certificate from the same CA
//     cannot join the cluster. Membership is therefore "holds a node certificate from
//     this CA"; the CA is the cluster's trust boundary.
//   - Session tickets are off, so every connection runs the full verification.
//   - Certificates and the CA are read once, by NewTLSTransport; a renewed
//     certificate takes effect when the transport is recreated (restart), not when
//     the files change.
//
// Limits against slow or hostile peers: at most tlsMaxHandshakes connections may be
// in their handshake at once (more are closed on accept); the handshake and first
// byte must arrive within Timeout; a frame's body within Timeout of its length; an
// idle packet connection is closed after tlsRecvIdle (longer than the sender's
// tlsSendIdle, so a healthy sender always closes first); frames above tlsMaxFrame
// close the connection, and buffers grow only as bytes arrive.

package gossip

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	sockaddr "github.com/hashicorp/go-sockaddr"
	"github.com/hashicorp/memberlist"
)

const (
	tlsConnPacket byte = 'P' // first byte of a connection carrying packet frames
	tlsConnStream byte = 'S' // first byte of a connection handed to memberlist as a stream

	tlsMaxFrame      = 10 << 20 // largest frame accepted or sent (length field value)
	tlsFrameHeader   = 4        // uint32 length
	tlsSmallFrame    = 64 << 10 // frames up to this size are read into one allocation
	tlsPeerQueue     = 128      // packets queued per destination before WriteTo fails
	tlsMaxHandshakes = 64       // inbound connections allowed in their handshake at once
	tlsSendIdle      = 30 * time.Second
	tlsRecvIdle      = 90 * time.Second
	tlsAcceptBackoff = time.Second // longest wait after a failed Accept

	tlsDefaultTimeout = 5 * time.Second
)

// TLSTransportConfig configures NewTLSTransport.
type TLSTransportConfig struct {
	// BindAddr is the IP address to listen on ("0.0.0.0" for all interfaces).
	// BindPort 0 picks a free port; GetAutoBindPort reports it.
	BindAddr string
	BindPort int
	// CAFile holds the CA (PEM) that signs every node's certificate; CertFile and
	// KeyFile hold this node's certificate (with its chain) and key, issued with
	// both server and client auth usages (`meridian certs issue --server --client`).
	CAFile, CertFile, KeyFile string
	// Logger receives connection errors at debug level; nil discards them.
	Logger *slog.Logger
	// Timeout bounds dials, handshakes, writes and the arrival of a frame once its
	// length has been read; default 5s.
	Timeout time.Duration
}

// TLSTransport is a memberlist.Transport (and NodeAwareTransport) that carries
// both packets and streams over mutually authenticated TLS on TCP. Only peers
// holding a node certificate from the configured CA get anything through; see the
// comment at the top of tls_transport.go for the wire format and limits.
//
// It is safe for concurrent use. Shutdown closes the listener and every
// connection, including streams handed to memberlist, and waits for all of its
// goroutines to exit.
type TLSTransport struct {
	ctx       context.Context // done on Shutdown
	cancel    context.CancelFunc
	log       *slog.Logger
	timeout   time.Duration
	bindIP    net.IP
	listener  net.Listener
	serverCfg *tls.Config
	clientCfg *tls.Config

	packetCh   chan *memberlist.Packet
	streamCh   chan net.Conn
	handshakes chan struct{} // semaphore: inbound connections in their handshake
	advertise  atomic.Pointer[string]
	conns      tlsConnSet
	wg         sync.WaitGroup

	mu        sync.Mutex // guards peers, closed and stopAfter
	peers     map[string]*tlsPeer
	closed    bool
	stopAfter func() bool // detaches Shutdown from the constructor's context

	shutdownOnce sync.Once
	shutdownErr  error

	packetsIn, packetsOut, bytesIn, bytesOut atomic.Uint64
	rejected                                 atomic.Uint64 // inbound connections refused before memberlist saw them
}

var (
	_ memberlist.Transport          = (*TLSTransport)(nil)
	_ memberlist.NodeAwareTransport = (*TLSTransport)(nil)
)

// NewTLSTransport loads the certificates, checks that this node's own certificate
// is a node certificate signed by the CA, and starts listening. The transport is
// shut down, as by Shutdown, when ctx is done.
func NewTLSTransport(ctx context.Context, cfg TLSTransportConfig) (*TLSTransport, error) {
	serverCfg, clientCfg, err := cfg.tlsConfigs()
	if err != nil {
		return nil, err
	}
	timeout, ip, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort(ip.String(), strconv.Itoa(cfg.BindPort))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("gossip tls: listen on %s: %w", addr, err)
	}
	t := &TLSTransport{
		log:        cfg.logger(),
		timeout:    timeout,
		bindIP:     ip,
		listener:   ln,
		serverCfg:  serverCfg,
		clientCfg:  clientCfg,
		packetCh:   make(chan *memberlist.Packet),
		streamCh:   make(chan net.Conn),
		handshakes: make(chan struct{}, tlsMaxHandshakes),
		conns:      tlsConnSet{conns: make(map[net.Conn]struct{})},
		peers:      make(map[string]*tlsPeer),
	}
	t.ctx, t.cancel = context.WithCancel(context.WithoutCancel(ctx))
	t.wg.Go(t.acceptLoop)
	stop := context.AfterFunc(ctx, func() { _ = t.Shutdown() })
	t.mu.Lock()
	t.stopAfter = stop // nil in Shutdown only if ctx was done already and the AfterFunc ran
	t.mu.Unlock()
	return t, nil
}

func (cfg TLSTransportConfig) validate() (time.Duration, net.IP, error) {
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = tlsDefaultTimeout
	}
	if timeout < 0 {
		return 0, nil, fmt.Errorf("gossip tls: negative timeout %s", cfg.Timeout)
	}
	ip := net.ParseIP(cfg.BindAddr)
	if ip == nil {
		return 0, nil, fmt.Errorf("gossip tls: bind address %q is not an IP address", cfg.BindAddr)
	}
	if cfg.BindPort < 0 || cfg.BindPort > 65535 {
		return 0, nil, fmt.Errorf("gossip tls: bind port %d out of range", cfg.BindPort)
	}
	return timeout, ip, nil
}

func (cfg TLSTransportConfig) logger() *slog.Logger {
	if cfg.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return cfg.Logger.With("component", "gossip/tls")
}

// tlsConfigs reads the CA and the node certificate and returns the server and
// client sides of the mutual TLS configuration.
func (cfg TLSTransportConfig) tlsConfigs() (server, client *tls.Config, err error) {
	roots, err := tlsLoadCAPool(cfg.CAFile)
	if err != nil {
		return nil, nil, err
	}
	cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("gossip tls: load node certificate: %w", err)
	}
	if err := tlsVerifyNodeCert(roots, cert.Certificate, x509.ExtKeyUsageServerAuth); err != nil {
		return nil, nil, fmt.Errorf("gossip tls: own certificate %s: %w", cfg.CertFile, err)
	}
	server = &tls.Config{
		Certificates:           []tls.Certificate{cert},
		ClientAuth:             tls.RequireAndVerifyClientCert,
		ClientCAs:              roots,
		VerifyConnection:       tlsVerifyNodeConn(roots, x509.ExtKeyUsageClientAuth),
		SessionTicketsDisabled: true,
		MinVersion:             tls.VersionTLS13,
	}
	client = &tls.Config{
		Certificates: []tls.Certificate{cert},
		// Host names are not matched (peers are dialled by IP); VerifyConnection
		// verifies the chain against roots instead. See the top of this file.
		InsecureSkipVerify: true,
		VerifyConnection:   tlsVerifyNodeConn(roots, x509.ExtKeyUsageServerAuth),
		MinVersion:         tls.VersionTLS13,
	}
	return server, client, nil
}

func tlsLoadCAPool(file string) (*x509.CertPool, error) {
	pemData, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("gossip tls: read CA: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pemData) {
		return nil, fmt.Errorf("gossip tls: read CA %s: no PEM certificate found", file)
	}
	return roots, nil
}

// tlsVerifyNodeConn returns a tls.Config.VerifyConnection that accepts only a peer
// presenting a node certificate that chains to roots, for usage.
func tlsVerifyNodeConn(roots *x509.CertPool, usage x509.ExtKeyUsage) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		chain := make([][]byte, len(cs.PeerCertificates))
		for i, c := range cs.PeerCertificates {
			chain[i] = c.Raw
		}
		return tlsVerifyNodeCert(roots, chain, usage)
	}
}

// tlsVerifyNodeCert verifies the DER chain (leaf first) against roots without
// matching a host name, and checks that the leaf is a node certificate: one
// with both the server and client auth extended key usages.
func tlsVerifyNodeCert(roots *x509.CertPool, chain [][]byte, usage x509.ExtKeyUsage) error {
	if len(chain) == 0 {
		return errors.New("no certificate presented")
	}
	certs := make([]*x509.Certificate, len(chain))
	for i, der := range chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("parse certificate: %w", err)
		}
		certs[i] = c
	}
	intermediates := x509.NewCertPool()
	for _, c := range certs[1:] {
		intermediates.AddCert(c)
	}
	leaf := certs[0]
	opts := x509.VerifyOptions{Roots: roots, Intermediates: intermediates, KeyUsages: []x509.ExtKeyUsage{usage}}
	if _, err := leaf.Verify(opts); err != nil {
		return fmt.Errorf("certificate %q: %w", leaf.Subject.CommonName, err)
	}
	if !tlsHasUsage(leaf, x509.ExtKeyUsageServerAuth) || !tlsHasUsage(leaf, x509.ExtKeyUsageClientAuth) {
		return fmt.Errorf("certificate %q is not a node certificate: it needs both server and client auth usages", leaf.Subject.CommonName)
	}
	return nil
}

func tlsHasUsage(c *x509.Certificate, want x509.ExtKeyUsage) bool {
	for _, u := range c.ExtKeyUsage {
		if u == want || u == x509.ExtKeyUsageAny {
			return true
		}
	}
	return false
}

// GetAutoBindPort returns the port the transport listens on: BindPort, or the
// one the system picked when BindPort was 0.
func (t *TLSTransport) GetAutoBindPort() int {
	return t.listener.Addr().(*net.TCPAddr).Port
}

// FinalAdvertiseAddr implements memberlist.Transport: ip and port when ip is
// given, else the bound address (a private IP when bound to all interfaces)
// and port. The result is also the "from" address of packets this node sends.
func (t *TLSTransport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	advIP, advPort, err := t.finalAdvertiseAddr(ip, port)
	if err != nil {
		return nil, 0, err
	}
	addr := net.JoinHostPort(advIP.String(), strconv.Itoa(advPort))
	t.advertise.Store(&addr)
	return advIP, advPort, nil
}

func (t *TLSTransport) finalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	if ip != "" {
		advIP := net.ParseIP(ip)
		if advIP == nil {
			return nil, 0, fmt.Errorf("gossip tls: advertise address %q is not an IP address", ip)
		}
		if ip4 := advIP.To4(); ip4 != nil {
			advIP = ip4
		}
		return advIP, port, nil
	}
	if !t.bindIP.IsUnspecified() {
		return t.listener.Addr().(*net.TCPAddr).IP, t.GetAutoBindPort(), nil
	}
	private, err := sockaddr.GetPrivateIP()
	if err != nil {
		return nil, 0, fmt.Errorf("gossip tls: find a private IP to advertise: %w", err)
	}
	advIP := net.ParseIP(private)
	if advIP == nil {
		return nil, 0, errors.New("gossip tls: no private IP address found, and no advertise address given")
	}
	return advIP, t.GetAutoBindPort(), nil
}

// fromAddr is the address packets are sent from: the advertise address once
// memberlist has asked for it, the listener's address before.
func (t *TLSTransport) fromAddr() string {
	if a := t.advertise.Load(); a != nil {
		return *a
	}
	return t.listener.Addr().String()
}

// PacketCh implements memberlist.Transport.
func (t *TLSTransport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }

// StreamCh implements memberlist.Transport. Each connection received belongs to
// the reader, who must close it.
func (t *TLSTransport) StreamCh() <-chan net.Conn { return t.streamCh }

// Stats reports the packets (WriteTo messages) received and sent, and the
// memberlist bytes received and sent in packets and streams together, excluding
// this transport's framing and TLS overhead. Sent counts only what reached the
// connection.
func (t *TLSTransport) Stats() (packetsIn, packetsOut, bytesIn, bytesOut uint64) {
	return t.packetsIn.Load(), t.packetsOut.Load(), t.bytesIn.Load(), t.bytesOut.Load()
}

// Shutdown closes the listener and every connection and waits until all the
// transport's goroutines have exited. Later calls return the first call's result.
func (t *TLSTransport) Shutdown() error {
	t.shutdownOnce.Do(func() {
		t.mu.Lock()
		t.closed = true
		stop := t.stopAfter
		t.mu.Unlock()
		if stop != nil {
			stop()
		}
		t.cancel()
		if err := t.listener.Close(); err != nil {
			t.shutdownErr = fmt.Errorf("gossip tls: close listener: %w", err)
		}
		t.conns.closeAll()
		t.wg.Wait()
	})
	return t.shutdownErr
}

// dial connects to addr, completes the TLS handshake and announces kind, all
// within timeout. The returned connection is registered in t.conns.
func (t *TLSTransport) dial(addr string, kind byte, timeout time.Duration) (*tls.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	raw, err := d.DialContext(t.ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if !t.conns.add(raw) {
		_ = raw.Close()
		return nil, net.ErrClosed
	}
	tc := tls.Client(raw, t.clientCfg)
	if err := t.open(tc, kind, timeout); err != nil {
		t.conns.close(raw)
		return nil, err
	}
	return tc, nil
}

func (t *TLSTransport) open(tc *tls.Conn, kind byte, timeout time.Duration) error {
	if err := tc.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("tls handshake: %w", err)
	}
	if _, err := tc.Write([]byte{kind}); err != nil {
		return err
	}
	return tc.SetDeadline(time.Time{})
}

// DialTimeout implements memberlist.Transport: a stream connection to addr.
func (t *TLSTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if timeout <= 0 {
		timeout = t.timeout
	}
	tc, err := t.dial(addr, tlsConnStream, timeout)
	if err != nil {
		return nil, fmt.Errorf("gossip tls: dial stream %s: %w", addr, err)
	}
	return &tlsStreamConn{Conn: tc, t: t}, nil
}

// DialAddressTimeout implements memberlist.NodeAwareTransport; the node name is
// not used (any node certificate from the CA is accepted).
func (t *TLSTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return t.DialTimeout(a.Addr, timeout)
}

// WriteTo implements memberlist.Transport. It queues b for addr's sender and
// returns at once; like a UDP datagram, the packet may still be lost. It fails
// when b is empty or larger than 10 MiB, when addr's queue is full, and after
// Shutdown (net.ErrClosed).
func (t *TLSTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	frame, err := tlsEncodeFrame(t.fromAddr(), b)
	if err != nil {
		return time.Now(), fmt.Errorf("gossip tls: write to %s: %w", addr, err)
	}
	if err := t.enqueue(addr, frame); err != nil {
		return time.Now(), fmt.Errorf("gossip tls: write to %s: %w", addr, err)
	}
	return time.Now(), nil
}

// WriteToAddress implements memberlist.NodeAwareTransport, as WriteTo.
func (t *TLSTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	return t.WriteTo(b, a.Addr)
}

// tlsEncodeFrame builds one packet frame: length, from and a copy of b.
func tlsEncodeFrame(from string, b []byte) ([]byte, error) {
	if len(b) == 0 {
		return nil, errors.New("empty packet")
	}
	if len(from) == 0 || len(from) > 255 {
		return nil, fmt.Errorf("sender address %q does not fit a frame", from)
	}
	n := 1 + len(from) + len(b)
	if n > tlsMaxFrame {
		return nil, fmt.Errorf("packet of %d bytes exceeds the %d byte limit", len(b), tlsMaxFrame-1-len(from))
	}
	frame := make([]byte, tlsFrameHeader, tlsFrameHeader+n)
	binary.BigEndian.PutUint32(frame, uint32(n))
	frame = append(frame, byte(len(from)))
	frame = append(frame, from...)
	return append(frame, b...), nil
}

// tlsPeer is the sender for one destination address: a bounded queue of frames
// drained by one goroutine (sendLoop) that owns the connection.
type tlsPeer struct {
	addr  string
	queue chan []byte
}

var errTLSQueueFull = errors.New("send queue full")

// enqueue hands frame to addr's sender, starting one if there is none. The
// queue is only filled and retired under t.mu, so no frame is left behind in a
// retired peer's queue.
func (t *TLSTransport) enqueue(addr string, frame []byte) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return net.ErrClosed
	}
	p := t.peers[addr]
	if p == nil {
		p = &tlsPeer{addr: addr, queue: make(chan []byte, tlsPeerQueue)}
		t.peers[addr] = p
		t.wg.Go(func() { t.sendLoop(p) })
	}
	select {
	case p.queue <- frame:
		return nil
	default:
		return errTLSQueueFull
	}
}

// sendLoop writes p's frames to one connection, dialling it when needed, and
// retires p after tlsSendIdle without frames.
func (t *TLSTransport) sendLoop(p *tlsPeer) {
	var conn *tls.Conn
	defer func() {
		if conn != nil {
			t.conns.close(conn.NetConn())
		}
	}()
	idle := time.NewTimer(tlsSendIdle)
	defer idle.Stop()
	for {
		select {
		case <-t.ctx.Done():
			return
		case frame := <-p.queue:
			conn = t.send(p, conn, frame)
			idle.Reset(tlsSendIdle)
		case <-idle.C:
			if t.retire(p) {
				return
			}
			idle.Reset(tlsSendIdle)
		}
	}
}

// send writes frame on conn, dialling a connection if conn is nil and redialling
// once if a reused conn fails. It returns the connection to reuse, or nil.
func (t *TLSTransport) send(p *tlsPeer, conn *tls.Conn, frame []byte) *tls.Conn {
	for {
		fresh := conn == nil
		if fresh {
			var err error
			if conn, err = t.dial(p.addr, tlsConnPacket, t.timeout); err != nil {
				t.log.Debug("dial packet connection", "peer", p.addr, "err", err)
				t.drain(p) // queued behind a failed dial: stale, and would dial again
				return nil
			}
		}
		err := t.writeFrame(conn, frame)
		if err == nil {
			return conn
		}
		t.log.Debug("write packet", "peer", p.addr, "err", err)
		t.conns.close(conn.NetConn())
		conn = nil
		if fresh {
			return nil
		}
	}
}

func (t *TLSTransport) writeFrame(conn *tls.Conn, frame []byte) error {
	if err := conn.SetWriteDeadline(time.Now().Add(t.timeout)); err != nil {
		return err
	}
	if _, err := conn.Write(frame); err != nil {
		return err
	}
	from := int(frame[tlsFrameHeader])
	t.packetsOut.Add(1)
	t.bytesOut.Add(uint64(len(frame) - tlsFrameHeader - 1 - from))
	return nil
}

// drain drops the frames queued for p.
func (t *TLSTransport) drain(p *tlsPeer) {
	for {
		select {
		case <-p.queue:
		default:
			return
		}
	}
}

// retire removes p from t.peers unless frames arrived meanwhile.
func (t *TLSTransport) retire(p *tlsPeer) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(p.queue) > 0 {
		return false
	}
	delete(t.peers, p.addr)
	return true
}

// acceptLoop accepts connections until the listener is closed and serves each
// in its own goroutine.
func (t *TLSTransport) acceptLoop() {
	var backoff time.Duration
	for {
		raw, err := t.listener.Accept()
		if err != nil {
			if t.ctx.Err() != nil {
				return
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), tlsAcceptBackoff)
			t.log.Error("accept gossip connection", "err", err, "retry_in", backoff)
			if !t.wait(backoff) {
				return
			}
			continue
		}
		backoff = 0
		select {
		case t.handshakes <- struct{}{}:
		default:
			t.rejected.Add(1)
			t.log.Debug("too many handshakes in progress, closing connection", "peer", raw.RemoteAddr())
			_ = raw.Close()
			continue
		}
		if !t.conns.add(raw) {
			<-t.handshakes
			_ = raw.Close()
			return
		}
		t.wg.Go(func() { t.serve(raw) })
	}
}

// wait sleeps for d unless the transport shuts down first; it reports whether
// the transport is still open.
func (t *TLSTransport) wait(d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-t.ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// serve authenticates an inbound connection and then reads its packets or hands
// it to memberlist as a stream.
func (t *TLSTransport) serve(raw net.Conn) {
	tc := tls.Server(raw, t.serverCfg)
	kind, err := t.handshake(tc)
	if err != nil {
		t.rejected.Add(1)
		t.log.Debug("reject gossip connection", "peer", raw.RemoteAddr(), "err", err)
		t.conns.close(raw)
		return
	}
	switch kind {
	case tlsConnStream:
		stream := &tlsStreamConn{Conn: tc, t: t}
		select {
		case t.streamCh <- stream:
		case <-t.ctx.Done():
			_ = stream.Close()
		}
	case tlsConnPacket:
		err := t.readPackets(tc)
		if err != nil && t.ctx.Err() == nil {
			t.log.Debug("read packets", "peer", raw.RemoteAddr(), "err", err)
		}
		t.conns.close(raw)
	default:
		t.log.Debug("unknown connection kind", "peer", raw.RemoteAddr(), "kind", kind)
		t.conns.close(raw)
	}
}

// handshake runs the server handshake and reads the connection kind, both within
// the timeout, holding a slot of the handshake semaphore.
func (t *TLSTransport) handshake(tc *tls.Conn) (byte, error) {
	defer func() { <-t.handshakes }()
	if err := tc.SetDeadline(time.Now().Add(t.timeout)); err != nil {
		return 0, err
	}
	if err := tc.Handshake(); err != nil {
		return 0, fmt.Errorf("tls handshake: %w", err)
	}
	var kind [1]byte
	if _, err := io.ReadFull(tc, kind[:]); err != nil {
		return 0, fmt.Errorf("read connection kind: %w", err)
	}
	return kind[0], tc.SetDeadline(time.Time{})
}

// readPackets delivers the frames of a packet connection to PacketCh until the
// peer closes it (nil error), a frame is malformed, or a deadline passes.
func (t *TLSTransport) readPackets(tc *tls.Conn) error {
	r := bufio.NewReader(tc)
	for {
		p, err := t.readPacket(tc, r)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		select {
		case t.packetCh <- p:
			t.packetsIn.Add(1)
			t.bytesIn.Add(uint64(len(p.Buf)))
		case <-t.ctx.Done():
			return nil
		}
	}
}

// readPacket reads one frame: its length within tlsRecvIdle, the rest within the
// timeout. A clean end of the connection between frames returns io.EOF.
func (t *TLSTransport) readPacket(tc *tls.Conn, r *bufio.Reader) (*memberlist.Packet, error) {
	if err := tc.SetReadDeadline(time.Now().Add(tlsRecvIdle)); err != nil {
		return nil, err
	}
	var hdr [tlsFrameHeader]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err // io.EOF only when no byte of a new frame arrived
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n < 3 || n > tlsMaxFrame {
		return nil, fmt.Errorf("frame length %d out of range [3, %d]", n, tlsMaxFrame)
	}
	if err := tc.SetReadDeadline(time.Now().Add(t.timeout)); err != nil {
		return nil, err
	}
	body, err := tlsReadN(r, int(n))
	if err != nil {
		return nil, fmt.Errorf("read frame of %d bytes: %w", n, tlsNoEOF(err))
	}
	now := time.Now()
	fromLen := int(body[0])
	if fromLen == 0 || 1+fromLen >= len(body) {
		return nil, fmt.Errorf("frame of %d bytes with a %d byte sender address", n, fromLen)
	}
	from, err := netip.ParseAddrPort(string(body[1 : 1+fromLen]))
	if err != nil {
		return nil, fmt.Errorf("frame sender address: %w", err)
	}
	return &memberlist.Packet{Buf: body[1+fromLen:], From: net.TCPAddrFromAddrPort(from), Timestamp: now}, nil
}

// tlsReadN reads exactly n bytes, growing the buffer only as bytes arrive for
// frames above tlsSmallFrame, so an announced length costs nothing by itself.
func tlsReadN(r io.Reader, n int) ([]byte, error) {
	if n <= tlsSmallFrame {
		buf := make([]byte, n)
		_, err := io.ReadFull(r, buf)
		return buf, err
	}
	var buf bytes.Buffer
	buf.Grow(tlsSmallFrame)
	if _, err := buf.ReadFrom(io.LimitReader(r, int64(n))); err != nil {
		return nil, err
	}
	if buf.Len() < n {
		return nil, io.ErrUnexpectedEOF
	}
	return buf.Bytes(), nil
}

// tlsNoEOF turns an end of stream inside a frame into io.ErrUnexpectedEOF.
func tlsNoEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// tlsStreamConn is a stream connection as memberlist sees it: it counts bytes
// and leaves t.conns when closed.
type tlsStreamConn struct {
	*tls.Conn
	t    *TLSTransport
	once sync.Once
}

func (c *tlsStreamConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.t.bytesIn.Add(uint64(n))
	return n, err
}

func (c *tlsStreamConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.t.bytesOut.Add(uint64(n))
	return n, err
}

// Close sends the TLS close_notify and closes the connection; later calls
// return nil.
func (c *tlsStreamConn) Close() error {
	var err error
	c.once.Do(func() {
		err = c.Conn.Close()
		c.t.conns.remove(c.NetConn())
	})
	return err
}

// tlsConnSet holds every open connection of a transport, keyed by the TCP
// connection, so Shutdown can close them all.
type tlsConnSet struct {
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// add registers c; it reports false after closeAll, and the caller must close c.
func (s *tlsConnSet) add(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *tlsConnSet) remove(c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
}

// close closes c and forgets it.
func (s *tlsConnSet) close(c net.Conn) {
	s.remove(c)
	_ = c.Close()
}

// closeAll closes every registered connection; later adds fail.
func (s *tlsConnSet) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for c := range s.conns {
		_ = c.Close()
	}
	clear(s.conns)
}
