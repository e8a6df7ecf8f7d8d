package gossip

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"meridian/internal/certtest"
	"meridian/pki"
)

// tlsWait bounds every "eventually" in these tests.
const tlsWait = 10 * time.Second

// tlsNodeFiles issues a node certificate (server and client auth, IP 127.0.0.1)
// from ca and returns the CA, certificate and key files. certtest's ServerFiles
// issues server-only certificates, which a node cannot use to dial.
func tlsNodeFiles(t *testing.T, ca *certtest.CA, name string) (caFile, certFile, keyFile string) {
	t.Helper()
	leaf, err := ca.Issue(pki.LeafRequest{
		CommonName: name,
		IPs:        []net.IP{net.IPv4(127, 0, 0, 1)},
		Client:     true,
		Server:     true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := leaf.Save(ca.Dir, "node-"+name); err != nil {
		t.Fatal(err)
	}
	return tlsCAFile(ca), filepath.Join(ca.Dir, "node-"+name+".pem"), filepath.Join(ca.Dir, "node-"+name+".key")
}

// tlsNewTransport starts a transport on 127.0.0.1:0 and shuts it down at cleanup.
func tlsNewTransport(t *testing.T, caFile, certFile, keyFile string, timeout time.Duration) *TLSTransport {
	t.Helper()
	tr, err := NewTLSTransport(context.Background(), TLSTransportConfig{
		BindAddr: "127.0.0.1",
		CAFile:   caFile,
		CertFile: certFile,
		KeyFile:  keyFile,
		Timeout:  timeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Shutdown() })
	return tr
}

func tlsAddr(tr *TLSTransport) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(tr.GetAutoBindPort()))
}

// tlsTestDelegate records user messages; NotifyMsg never blocks.
type tlsTestDelegate struct{ msgs chan string }

func (d *tlsTestDelegate) NodeMeta(int) []byte             { return nil }
func (d *tlsTestDelegate) GetBroadcasts(int, int) [][]byte { return nil }
func (d *tlsTestDelegate) LocalState(bool) []byte          { return nil }
func (d *tlsTestDelegate) MergeRemoteState([]byte, bool)   {}

func (d *tlsTestDelegate) NotifyMsg(b []byte) {
	select {
	case d.msgs <- string(b):
	default:
	}
}

// expect waits until every message in want has arrived, in any order; other
// messages are ignored.
func (d *tlsTestDelegate) expect(t *testing.T, want ...string) {
	t.Helper()
	missing := make(map[string]bool, len(want))
	for _, w := range want {
		missing[w] = true
	}
	timeout := time.NewTimer(tlsWait)
	defer timeout.Stop()
	for len(missing) > 0 {
		select {
		case got := <-d.msgs:
			delete(missing, got)
		case <-timeout.C:
			t.Fatalf("messages %v not received within %s", slices.Sorted(maps.Keys(missing)), tlsWait)
		}
	}
}

type tlsTestNode struct {
	ml *memberlist.Memberlist
	tr *TLSTransport
	d  *tlsTestDelegate
}

func (n *tlsTestNode) addr() string { return tlsAddr(n.tr) }

// tlsNewNode starts a memberlist named name over tr, with short intervals, and
// shuts it down at cleanup.
func tlsNewNode(t *testing.T, name string, tr *TLSTransport) *tlsTestNode {
	t.Helper()
	d := &tlsTestDelegate{msgs: make(chan string, 64)}
	conf := memberlist.DefaultLocalConfig()
	conf.Name = name
	conf.Transport = tr
	conf.Delegate = d
	conf.LogOutput = io.Discard
	conf.ProbeInterval = 200 * time.Millisecond
	conf.GossipInterval = 50 * time.Millisecond
	ml, err := memberlist.Create(conf)
	if err != nil {
		t.Fatalf("create memberlist %s: %v", name, err)
	}
	t.Cleanup(func() { _ = ml.Shutdown() })
	return &tlsTestNode{ml: ml, tr: tr, d: d}
}

// tlsNewCluster starts n nodes with certificates from ca and joins them.
func tlsNewCluster(t *testing.T, ca *certtest.CA, n int) []*tlsTestNode {
	t.Helper()
	nodes := make([]*tlsTestNode, n)
	for i := range nodes {
		name := "node-" + strconv.Itoa(i)
		nodes[i] = tlsNewNode(t, name, tlsNodeTransport(t, ca, name, 2*time.Second))
		if i > 0 {
			if _, err := nodes[i].ml.Join([]string{nodes[0].addr()}); err != nil {
				t.Fatalf("%s joins %s: %v", name, nodes[0].ml.LocalNode().Name, err)
			}
		}
	}
	for _, node := range nodes {
		tlsEventually(t, node.ml.LocalNode().Name+" sees all members", func() bool {
			return node.ml.NumMembers() == n
		})
	}
	return nodes
}

// tlsNodeTransport issues a node certificate named name from ca and starts a
// transport with it.
func tlsNodeTransport(t *testing.T, ca *certtest.CA, name string, timeout time.Duration) *TLSTransport {
	t.Helper()
	caFile, certFile, keyFile := tlsNodeFiles(t, ca, name)
	return tlsNewTransport(t, caFile, certFile, keyFile, timeout)
}

func tlsMember(t *testing.T, n *tlsTestNode, name string) *memberlist.Node {
	t.Helper()
	for _, m := range n.ml.Members() {
		if m.Name == name {
			return m
		}
	}
	t.Fatalf("%s does not list %s", n.ml.LocalNode().Name, name)
	return nil
}

func tlsLists(n *tlsTestNode, name string) bool {
	for _, m := range n.ml.Members() {
		if m.Name == name {
			return true
		}
	}
	return false
}

// tlsEventually polls cond until it holds, failing the test after tlsWait.
func tlsEventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(tlsWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, tlsWait)
		}
		<-tick.C
	}
}

// tlsNever polls cond for d and fails the test if it ever holds.
func tlsNever(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); <-tick.C {
		if cond() {
			t.Fatalf("%s", what)
		}
	}
}

// tlsExpectClosed reads c until the peer closes it; a read that would still
// block after tlsWait fails the test.
func tlsExpectClosed(t *testing.T, c net.Conn, what string) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(tlsWait)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, c); errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("%s: connection still open after %s", what, tlsWait)
	}
}

// tlsNextPacket returns the next packet's payload and sender.
func tlsNextPacket(t *testing.T, tr *TLSTransport) (string, string) {
	t.Helper()
	select {
	case p := <-tr.PacketCh():
		return string(p.Buf), p.From.String()
	case <-time.After(tlsWait):
		t.Fatalf("no packet within %s", tlsWait)
		return "", ""
	}
}

func TestTLSTransportCluster(t *testing.T) {
	ca := certtest.New(t)
	nodes := tlsNewCluster(t, ca, 3)

	// Reliable messages travel on a stream, best-effort ones as packets.
	for _, to := range nodes[1:] {
		name := to.ml.LocalNode().Name
		if err := nodes[0].ml.SendReliable(tlsMember(t, nodes[0], name), []byte("reliable to "+name)); err != nil {
			t.Fatalf("SendReliable to %s: %v", name, err)
		}
		if err := nodes[0].ml.SendBestEffort(tlsMember(t, nodes[0], name), []byte("best effort to "+name)); err != nil {
			t.Fatalf("SendBestEffort to %s: %v", name, err)
		}
	}
	for _, to := range nodes[1:] {
		name := to.ml.LocalNode().Name
		to.d.expect(t, "reliable to "+name, "best effort to "+name)
	}

	for _, n := range nodes {
		pIn, pOut, bIn, bOut := n.tr.Stats()
		if pIn == 0 || pOut == 0 || bIn == 0 || bOut == 0 {
			t.Errorf("%s: Stats() = %d, %d, %d, %d; want all > 0", n.ml.LocalNode().Name, pIn, pOut, bIn, bOut)
		}
	}
}

func TestTLSTransportRejectsForeignCertificates(t *testing.T) {
	ca := certtest.New(t)
	nodes := tlsNewCluster(t, ca, 2)

	for _, tc := range []struct {
		name string
		// trustsUs: the rogue trusts our CA, so it accepts our certificate and
		// only our check of its certificate stands between it and the cluster.
		trustsUs bool
	}{
		{name: "foreign-cert-trusting-our-CA", trustsUs: true},
		{name: "foreign-PKI", trustsUs: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			trust := ""
			if tc.trustsUs {
				trust = tlsCAFile(ca)
			}
			rogueName := "rogue-" + tc.name
			rogue := tlsNewNode(t, rogueName, tlsNewRogueTransport(t, certtest.New(t), trust))
			rejectedBefore := nodes[0].tr.rejected.Load()

			if _, err := rogue.ml.Join([]string{nodes[0].addr()}); err == nil {
				t.Fatal("rogue node joined the cluster")
			}
			tlsEventually(t, "node-0 rejects the rogue's connection", func() bool {
				return nodes[0].tr.rejected.Load() > rejectedBefore
			})
			tlsNever(t, time.Second, "a cluster node lists the rogue", func() bool {
				return tlsLists(nodes[0], rogueName) || tlsLists(nodes[1], rogueName)
			})
			if got := rogue.ml.NumMembers(); got != 1 {
				t.Errorf("rogue sees %d members, want 1 (itself)", got)
			}
		})
	}
}

func tlsCAFile(ca *certtest.CA) string { return filepath.Join(ca.Dir, "ca.pem") }

// tlsNewRogueTransport starts a transport holding a node certificate from
// foreign. When trustFile is not empty, the rogue verifies servers against it
// instead of foreign: NewTLSTransport refuses a certificate that does not chain
// to the CA it trusts, a rogue would not.
func tlsNewRogueTransport(t *testing.T, foreign *certtest.CA, trustFile string) *TLSTransport {
	t.Helper()
	tr := tlsNodeTransport(t, foreign, "rogue", time.Second)
	if trustFile != "" {
		roots, err := tlsLoadCAPool(trustFile)
		if err != nil {
			t.Fatal(err)
		}
		tr.clientCfg = tr.clientCfg.Clone() // nothing has dialled yet
		tr.clientCfg.VerifyConnection = tlsVerifyNodeConn(roots, x509.ExtKeyUsageServerAuth)
	}
	return tr
}

func TestTLSTransportPacketsNeedOurCA(t *testing.T) {
	ca := certtest.New(t)
	server := tlsNodeTransport(t, ca, "server", time.Second)
	good := tlsNodeTransport(t, ca, "good", time.Second)
	rogue := tlsNewRogueTransport(t, certtest.New(t), tlsCAFile(ca))

	if _, err := rogue.WriteTo([]byte("rogue packet"), tlsAddr(server)); err != nil {
		t.Fatalf("rogue WriteTo: %v", err) // only queued: the refusal is the server's
	}
	tlsEventually(t, "server rejects the rogue's packet connection", func() bool { return server.rejected.Load() >= 1 })
	if conn, err := rogue.DialTimeout(tlsAddr(server), time.Second); err == nil {
		// TLS 1.3: the client is done before the server has judged its certificate.
		_, _ = conn.Write([]byte("rogue stream"))
		tlsExpectClosed(t, conn, "rogue stream")
		_ = conn.Close()
	}
	tlsEventually(t, "server rejects the rogue's stream", func() bool { return server.rejected.Load() >= 2 })

	// Both rogue connections are closed: the next packet and stream must be the
	// good node's, and its packet names the good node's address as the sender.
	if _, err := good.WriteTo([]byte("good packet"), tlsAddr(server)); err != nil {
		t.Fatal(err)
	}
	payload, from := tlsNextPacket(t, server)
	if payload != "good packet" || from != tlsAddr(good) {
		t.Fatalf("got packet %q from %s, want %q from %s", payload, from, "good packet", tlsAddr(good))
	}
	conn, err := good.DialTimeout(tlsAddr(server), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("good stream")); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-server.StreamCh():
		defer s.Close()
		buf := make([]byte, len("good stream"))
		if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "good stream" {
			t.Fatalf("stream read %q, %v; want %q", buf, err, "good stream")
		}
	case <-time.After(tlsWait):
		t.Fatal("good stream not delivered")
	}
	if pIn, _, _, _ := server.Stats(); pIn != 1 {
		t.Errorf("server received %d packets, want 1", pIn)
	}
}

func TestTLSTransportRejectsProbeCertificate(t *testing.T) {
	// A client-only certificate from our own CA (a prober's) is not a node's.
	ca := certtest.New(t)
	server := tlsNodeTransport(t, ca, "server", time.Second)
	cfg := ca.ClientTLS(t, "probe")
	conn, err := tls.Dial("tcp", tlsAddr(server), cfg)
	if err == nil {
		_, _ = conn.Write(append([]byte{tlsConnPacket}, tlsFrame(t, "127.0.0.1:1", "probe packet")...))
		tlsExpectClosed(t, conn, "probe certificate")
		_ = conn.Close()
	}
	tlsEventually(t, "server rejects the probe certificate", func() bool { return server.rejected.Load() >= 1 })
	select {
	case p := <-server.PacketCh():
		t.Fatalf("packet %q got through", p.Buf)
	default:
	}
}

func tlsFrame(t *testing.T, from, payload string) []byte {
	t.Helper()
	f, err := tlsEncodeFrame(from, []byte(payload))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestTLSTransportRejectsBadInput(t *testing.T) {
	ca := certtest.New(t)
	const timeout = 300 * time.Millisecond
	server := tlsNodeTransport(t, ca, "server", timeout)
	client := tlsNodeTransport(t, ca, "client", timeout)
	addr := tlsAddr(server)

	plain := func(t *testing.T, send []byte) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := conn.Write(send); err != nil {
			t.Fatal(err)
		}
		tlsExpectClosed(t, conn, "plain TCP client")
	}
	authenticated := func(t *testing.T, kind byte, send []byte) {
		conn, err := client.dial(addr, kind, timeout)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := conn.Write(send); err != nil {
			t.Fatal(err)
		}
		tlsExpectClosed(t, conn, "authenticated client")
	}
	header := func(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }

	t.Run("http request", func(t *testing.T) { plain(t, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")) })
	t.Run("garbage", func(t *testing.T) { plain(t, []byte("\x16\x03\x01\xff\xff garbage that claims to be a TLS record")) })
	t.Run("silent client", func(t *testing.T) { plain(t, nil) })
	t.Run("unknown kind", func(t *testing.T) { authenticated(t, 'X', nil) })
	t.Run("oversized frame", func(t *testing.T) { authenticated(t, tlsConnPacket, header(tlsMaxFrame+1)) })
	t.Run("stalled frame", func(t *testing.T) {
		authenticated(t, tlsConnPacket, append(header(100), "only a part"...))
	})
	t.Run("bad sender", func(t *testing.T) { authenticated(t, tlsConnPacket, tlsFrame(t, "not-an-address", "x")) })
	t.Run("sender without payload", func(t *testing.T) {
		authenticated(t, tlsConnPacket, append(header(uint32(1+len("127.0.0.1:1"))), "\x0b127.0.0.1:1"...))
	})

	// The server survived all of it and still delivers.
	if _, err := client.WriteTo([]byte("still here"), addr); err != nil {
		t.Fatal(err)
	}
	if payload, _ := tlsNextPacket(t, server); payload != "still here" {
		t.Fatalf("got %q, want %q", payload, "still here")
	}
}

func TestTLSTransportShutdownLeavesNoGoroutines(t *testing.T) {
	baseline := runtime.NumGoroutine()
	ca := certtest.New(t)
	nodes := tlsNewCluster(t, ca, 3)
	for _, to := range nodes[1:] {
		name := to.ml.LocalNode().Name
		if err := nodes[0].ml.SendReliable(tlsMember(t, nodes[0], name), []byte("hello")); err != nil {
			t.Fatal(err)
		}
		to.d.expect(t, "hello")
	}
	// A connection stuck in its handshake and a stream memberlist never closed
	// must not hold Shutdown up.
	stuck, err := net.Dial("tcp", nodes[0].addr())
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	open, err := nodes[1].tr.DialTimeout(nodes[2].addr(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()

	// Nor must a packet or stream that nobody takes from PacketCh or StreamCh.
	unread := tlsNodeTransport(t, ca, "unread", time.Second)
	sender := tlsNodeTransport(t, ca, "sender", time.Second)
	if _, err := sender.WriteTo([]byte("never read"), tlsAddr(unread)); err != nil {
		t.Fatal(err)
	}
	unreadStream, err := sender.DialTimeout(tlsAddr(unread), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer unreadStream.Close()
	tlsEventually(t, "packet written", func() bool { _, out, _, _ := sender.Stats(); return out == 1 })
	tlsShutdownWithin(t, "transport with unread packet and stream", unread.Shutdown)
	tlsShutdownWithin(t, "sender", sender.Shutdown)

	for _, n := range nodes {
		tlsShutdownWithin(t, n.ml.LocalNode().Name, n.ml.Shutdown)
	}
	tr := nodes[0].tr
	if _, err := tr.WriteTo([]byte("late"), nodes[1].addr()); !errors.Is(err, net.ErrClosed) {
		t.Errorf("WriteTo after Shutdown: %v, want net.ErrClosed", err)
	}
	if _, err := tr.DialTimeout(nodes[1].addr(), time.Second); err == nil {
		t.Error("DialTimeout after Shutdown succeeded")
	}
	if err := tr.Shutdown(); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}

	deadline := time.Now().Add(tlsWait)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for runtime.NumGoroutine() > baseline {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after Shutdown, %d before:\n%s", runtime.NumGoroutine(), baseline, buf[:runtime.Stack(buf, true)])
		}
		<-tick.C
	}
}

// tlsShutdownWithin calls shutdown and fails the test if it returns an error or
// takes longer than a second (it is left running then).
func tlsShutdownWithin(t *testing.T, what string, shutdown func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- shutdown() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("%s: Shutdown: %v", what, err)
		}
	case <-time.After(time.Second):
		t.Fatalf("%s: Shutdown still running after 1s", what)
	}
}

func TestTLSTransportShutdownOnContext(t *testing.T) {
	ca := certtest.New(t)
	caFile, certFile, keyFile := tlsNodeFiles(t, ca, "node")
	ctx, cancel := context.WithCancel(context.Background())
	tr, err := NewTLSTransport(ctx, TLSTransportConfig{BindAddr: "127.0.0.1", CAFile: caFile, CertFile: certFile, KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Shutdown() })
	cancel()
	tlsEventually(t, "transport closed", func() bool {
		_, err := tr.WriteTo([]byte("x"), "127.0.0.1:1")
		return errors.Is(err, net.ErrClosed)
	})
	if _, err := net.Dial("tcp", tlsAddr(tr)); err == nil {
		t.Error("listener still accepts after the context was cancelled")
	}
}

func TestTLSTransportAdvertiseAddr(t *testing.T) {
	ca := certtest.New(t)
	tr := tlsNodeTransport(t, ca, "node", 0)
	port := tr.GetAutoBindPort()
	if port == 0 {
		t.Fatal("GetAutoBindPort() = 0")
	}
	for _, tc := range []struct {
		ip       string
		port     int
		wantIP   string
		wantPort int
		wantErr  string
	}{
		{ip: "", port: 7946, wantIP: "127.0.0.1", wantPort: port},
		{ip: "192.0.2.7", port: 7000, wantIP: "192.0.2.7", wantPort: 7000},
		{ip: "node.example", wantErr: `advertise address "node.example" is not an IP address`},
	} {
		ip, p, err := tr.FinalAdvertiseAddr(tc.ip, tc.port)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("FinalAdvertiseAddr(%q): error %v, want %q", tc.ip, err, tc.wantErr)
			}
			continue
		}
		if err != nil || ip.String() != tc.wantIP || p != tc.wantPort {
			t.Errorf("FinalAdvertiseAddr(%q, %d) = %s, %d, %v; want %s, %d", tc.ip, tc.port, ip, p, err, tc.wantIP, tc.wantPort)
		}
		if want := net.JoinHostPort(tc.wantIP, strconv.Itoa(tc.wantPort)); tr.fromAddr() != want {
			t.Errorf("packets sent from %s, want %s", tr.fromAddr(), want)
		}
	}
}

func TestTLSTransportConfigErrors(t *testing.T) {
	ca := certtest.New(t)
	caFile, certFile, keyFile := tlsNodeFiles(t, ca, "node")
	_, serverCert, serverKey := ca.ServerFiles(t, "127.0.0.1")
	_, foreignCert, foreignKey := tlsNodeFiles(t, certtest.New(t), "foreign")
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	good := TLSTransportConfig{BindAddr: "127.0.0.1", CAFile: caFile, CertFile: certFile, KeyFile: keyFile}

	for _, tc := range []struct {
		name    string
		edit    func(*TLSTransportConfig)
		wantErr string
	}{
		{"missing CA", func(c *TLSTransportConfig) { c.CAFile = filepath.Join(t.TempDir(), "none.pem") }, "gossip tls: read CA: open "},
		{"CA not PEM", func(c *TLSTransportConfig) { c.CAFile = notPEM }, "no PEM certificate found"},
		{"missing key", func(c *TLSTransportConfig) { c.KeyFile = filepath.Join(t.TempDir(), "none.key") }, "gossip tls: load node certificate: open "},
		{"server-only certificate", func(c *TLSTransportConfig) { c.CertFile, c.KeyFile = serverCert, serverKey }, "is not a node certificate: it needs both server and client auth usages"},
		{"certificate from another CA", func(c *TLSTransportConfig) { c.CertFile, c.KeyFile = foreignCert, foreignKey }, "certificate signed by unknown authority"},
		{"bind address", func(c *TLSTransportConfig) { c.BindAddr = "localhost" }, `gossip tls: bind address "localhost" is not an IP address`},
		{"bind port", func(c *TLSTransportConfig) { c.BindPort = 70000 }, "gossip tls: bind port 70000 out of range"},
		{"timeout", func(c *TLSTransportConfig) { c.Timeout = -time.Second }, "gossip tls: negative timeout -1s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.edit(&cfg)
			tr, err := NewTLSTransport(context.Background(), cfg)
			if err == nil {
				_ = tr.Shutdown()
				t.Fatalf("NewTLSTransport succeeded, want error %q", tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %q, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}
