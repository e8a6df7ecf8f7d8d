package netlab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Subnet is the IPv4 network of every lab's hosts: the i-th host named in
// New gets the (i+1)-th address (10.231.0.1, 10.231.0.2, ...). It exists only
// inside the lab's namespaces.
var Subnet = netip.MustParsePrefix("10.231.0.0/24")

// SkipEnv is the environment variable that, set to "skip", lets New skip
// a test run without root instead of failing it.
const SkipEnv = "MERIDIAN_NETLAB"

// maxHosts is how many hosts a lab may have. A lab has a link, with its
// queue and goroutine, for every ordered pair of hosts: 32 hosts make 992
// links, about 130 MB of queues; a test needs a handful.
const maxHosts = 32

// hostDev is the name of every host's interface inside its namespace.
const hostDev = "eth0"

// validName is what a host name may look like: it is part of a namespace name.
var validName = regexp.MustCompile(`^[a-z][a-z0-9]{0,15}$`)

// labSeq numbers the labs of this process, so that their names differ.
var labSeq atomic.Int64

// Lab is a set of hosts joined by a hub that delays every frame by the
// one-way delay of its (source, destination) link. Create one with New (or
// Open); its methods are safe for concurrent use.
type Lab struct {
	prefix string // namespace names: prefix-hub, prefix-<host>
	hubNS  *namespace
	hosts  []*Host
	byName map[string]*Host
	hub    *hub

	closeOnce sync.Once
	closeErr  error
}

// Host is one lab host: a network namespace whose eth0 has address IP.
type Host struct {
	// Name is the name the host was given in New.
	Name string
	// IP is the host's address, in Subnet.
	IP netip.Addr

	index int
	ns    *namespace
}

// New creates a lab with one host per name (lower-case letters and digits,
// starting with a letter), every link's delay zero, and registers its Close
// with t.Cleanup.
//
// Network namespaces need root, which CI has. When the test does not run as
// root, New fails it, saying how to run it, unless the environment asks
// for these tests to be skipped in so many words (MERIDIAN_NETLAB=skip, for
// a developer without root): a lab test is never skipped silently. It
// fails with an install hint when `ip` is missing.
func New(t testing.TB, names ...string) *Lab {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv(SkipEnv) == "skip" {
			t.Skipf("netlab: not root and %s=skip: network-namespace test skipped", SkipEnv)
		}
		t.Fatalf("netlab: network namespaces need root: run the tests as root (CI does; "+
			"e.g. sudo env PATH=\"$PATH\" go test ...), or set %s=skip to skip them explicitly", SkipEnv)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatal("netlab: `ip` is not installed: run scripts/deps.sh or apt-get install -y iproute2")
	}
	l, err := Open(names...)
	if err != nil {
		t.Fatalf("netlab: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("netlab: %v", err)
		}
	})
	return l
}

// Open creates a lab as New does, for callers without a testing.TB. The
// caller must Close it. On error nothing is left behind.
func Open(names ...string) (*Lab, error) {
	if err := checkNames(names); err != nil {
		return nil, err
	}
	if _, err := RemoveStale(); err != nil {
		return nil, err
	}
	l := &Lab{prefix: fmt.Sprintf("%s%d-%d", stalePrefix, os.Getpid(), labSeq.Add(1)), byName: map[string]*Host{}}
	if err := l.build(names); err != nil {
		return nil, errors.Join(err, l.Close())
	}
	return l, nil
}

// checkNames rejects host names that are malformed, repeated or too many.
func checkNames(names []string) error {
	if len(names) == 0 || len(names) > maxHosts {
		return fmt.Errorf("a lab has 1 to %d hosts, not %d", maxHosts, len(names))
	}
	seen := map[string]bool{}
	for _, n := range names {
		if !validName.MatchString(n) {
			return fmt.Errorf("host name %q: want lower-case letters and digits, starting with a letter, at most 16", n)
		}
		if seen[n] {
			return fmt.Errorf("host name %q given twice", n)
		}
		seen[n] = true
	}
	return nil
}

// build creates the namespaces, the veths and the hub, and starts the hub.
// What it created is recorded in l as it goes, so Close can undo a failure.
func (l *Lab) build(names []string) error {
	ns, err := addNamespace(l.prefix + "-hub")
	l.hubNS = ns
	if err != nil {
		return err
	}
	for i, name := range names {
		if err := l.addHost(i, name); err != nil {
			return err
		}
	}
	ports := make([]*port, 0, len(l.hosts))
	defer func() {
		if l.hub == nil {
			for _, p := range ports {
				p.file.Close()
			}
		}
	}()
	for _, h := range l.hosts {
		p, err := l.openHubPort(h)
		if err != nil {
			return err
		}
		ports = append(ports, p)
	}
	l.hub = newHub(ports)
	l.hub.start()
	return l.waitUp()
}

// upTimeout bounds how long New waits for the lab's interfaces to come up.
const upTimeout = 10 * time.Second

// waitUp waits until every veth end is operationally up. The kernel turns
// an interface's carrier on in deferred work (linkwatch), at most once a
// second under load; until then the interface drops what it is given to
// send, so a test that starts at once would lose its first frames (an ARP
// request, and a second's retransmission).
func (l *Lab) waitUp() error {
	deadline := time.Now().Add(upTimeout)
	for _, h := range l.hosts {
		for _, end := range [][2]string{{h.ns.name, hostDev}, {l.hubNS.name, hubDev(h.index)}} {
			for {
				up, err := operUp(end[0], end[1])
				if err != nil {
					return fmt.Errorf("host %s: %w", h.Name, err)
				}
				if up {
					break
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("host %s: %s in %s not up within %s", h.Name, end[1], end[0], upTimeout)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
	return nil
}

// addHost creates host i's namespace and its veth to the hub, addressed,
// up and without transmit checksum offload on either end.
func (l *Lab) addHost(i int, name string) error {
	h := &Host{Name: name, IP: hostIP(i), index: i}
	ns, err := addNamespace(l.prefix + "-" + name)
	h.ns = ns
	if ns != nil {
		l.hosts = append(l.hosts, h)
		l.byName[name] = h
	}
	if err != nil {
		return err
	}
	hub, dev := l.hubNS.name, hubDev(i)
	steps := [][]string{
		{"-n", hub, "link", "add", dev, "type", "veth", "peer", "name", hostDev, "netns", ns.name},
		{"-n", ns.name, "addr", "add", netip.PrefixFrom(h.IP, Subnet.Bits()).String(), "dev", hostDev},
	}
	for _, args := range steps {
		if err := ip(args...); err != nil {
			return fmt.Errorf("host %s: %w", name, err)
		}
	}
	if err := ns.do(func() error { return setTxChecksum(hostDev, false) }); err != nil {
		return fmt.Errorf("host %s: %w", name, err)
	}
	if err := l.hubNS.do(func() error { return setTxChecksum(dev, false) }); err != nil {
		return fmt.Errorf("host %s: hub side: %w", name, err)
	}
	for _, args := range [][]string{
		{"-n", ns.name, "link", "set", "lo", "up"},
		{"-n", ns.name, "link", "set", hostDev, "up"},
		{"-n", hub, "link", "set", dev, "up"},
	} {
		if err := ip(args...); err != nil {
			return fmt.Errorf("host %s: %w", name, err)
		}
	}
	return nil
}

// openHubPort opens the hub's socket on h's veth end.
func (l *Lab) openHubPort(h *Host) (*port, error) {
	var p *port
	err := l.hubNS.do(func() error {
		var err error
		p, err = openPort(hubDev(h.index))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("host %s: %w", h.Name, err)
	}
	return p, nil
}

// hostIP is the address of host i.
func hostIP(i int) netip.Addr {
	a := Subnet.Addr().As4()
	a[3] = byte(i + 1)
	return netip.AddrFrom4(a)
}

// hubDev is the name of host i's veth end in the hub namespace.
func hubDev(i int) string { return fmt.Sprintf("p%d", i) }

// Host returns the host called name; it panics when there is none, which
// is a mistake in the test.
func (l *Lab) Host(name string) *Host {
	h, ok := l.byName[name]
	if !ok {
		panic(fmt.Sprintf("netlab: no host %q in the lab", name))
	}
	return h
}

// SetDelay sets the one-way delay between hosts a and b, both ways: a
// round trip between them takes twice oneWay (plus the hub's own few
// microseconds). Frames already in flight keep the delay they had.
func (l *Lab) SetDelay(a, b string, oneWay time.Duration) {
	ha, hb := l.Host(a), l.Host(b)
	if ha == hb {
		panic(fmt.Sprintf("netlab: SetDelay(%q, %q): a host has no link to itself", a, b))
	}
	l.hub.links[ha.index][hb.index].setDelay(oneWay)
	l.hub.links[hb.index][ha.index].setDelay(oneWay)
}

// Dropped is how many frames the hub has lost (full link queues or failed
// sends). A healthy lab drops none.
func (l *Lab) Dropped() uint64 {
	if l.hub == nil {
		return 0
	}
	return l.hub.dropped()
}

// Close stops the hub and deletes every namespace of the lab, which
// removes the veths too. Processes still running in a host's namespace
// and sockets still open there keep it alive, unnamed, until they end:
// stop them first. Close is idempotent.
func (l *Lab) Close() error {
	l.closeOnce.Do(func() { l.closeErr = l.teardown() })
	return l.closeErr
}

// teardown undoes build.
func (l *Lab) teardown() error {
	var errs []error
	if l.hub != nil {
		errs = append(errs, l.hub.close())
	}
	for _, h := range l.hosts {
		h.ns.close()
		errs = append(errs, deleteNamespace(h.ns.name))
	}
	if l.hubNS != nil {
		l.hubNS.close()
		errs = append(errs, deleteNamespace(l.hubNS.name))
	}
	return errors.Join(errs...)
}

// NetNS is the name of the host's namespace, for `ip netns exec`.
func (h *Host) NetNS() string { return h.ns.name }

// Addr is host:port for the host's IP.
func (h *Host) Addr(port int) string { return netip.AddrPortFrom(h.IP, uint16(port)).String() }

// Command returns a command that runs name with args inside the host's
// namespace (`ip netns exec`), otherwise as exec.Command would. `ip`
// executes the program in its own process, so the command's Process is
// the program: signals reach it directly.
func (h *Host) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", h.ns.name, name}, args...)...)
}

// CommandContext is Command bound to ctx, as exec.CommandContext is: the
// program is killed when ctx is done.
func (h *Host) CommandContext(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.ns.name, name}, args...)...)
}

// DialContext dials address from inside the host's namespace, as
// net.Dialer.DialContext does; it fits http.Transport.DialContext. The
// host in address must be an IP address: a name would be resolved by
// goroutines outside the namespace.
func (h *Host) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return nil, fmt.Errorf("host %s: dial %s: %w", h.Name, address, err)
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return nil, fmt.Errorf("host %s: dial %s: want an IP address, not a name", h.Name, address)
	}
	var c net.Conn
	err = h.ns.do(func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, address)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("host %s: %w", h.Name, err)
	}
	return c, nil
}

// Listen listens on address inside the host's namespace, as net.Listen does.
func (h *Host) Listen(network, address string) (net.Listener, error) {
	var ln net.Listener
	err := h.ns.do(func() error {
		var err error
		ln, err = net.Listen(network, address)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("host %s: %w", h.Name, err)
	}
	return ln, nil
}

// ListenPacket listens on address inside the host's namespace, as
// net.ListenPacket does.
func (h *Host) ListenPacket(network, address string) (net.PacketConn, error) {
	var pc net.PacketConn
	err := h.ns.do(func() error {
		var err error
		pc, err = net.ListenPacket(network, address)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("host %s: %w", h.Name, err)
	}
	return pc, nil
}
