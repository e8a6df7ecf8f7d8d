package netlab

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// connectRTT is the shortest of n TCP connects from host from to address:
// the first connect also waits for ARP, so the least is the link's RTT.
func connectRTT(t *testing.T, from *Host, address string, n int) time.Duration {
	t.Helper()
	best := time.Duration(1<<63 - 1)
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		start := time.Now()
		c, err := from.DialContext(ctx, "tcp", address)
		rtt := time.Since(start)
		cancel()
		if err != nil {
			t.Fatalf("dial %s from %s: %v", address, from.Name, err)
		}
		c.Close()
		best = min(best, rtt)
	}
	return best
}

// serveAccept accepts and closes connections on ln until it is closed.
func serveAccept(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

// listen listens on host h, closing the listener when the test ends.
func listen(t *testing.T, h *Host, network, address string) net.Listener {
	t.Helper()
	ln, err := h.Listen(network, address)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func TestConnectRTTFollowsDelay(t *testing.T) {
	lab := New(t, "a", "b", "c")
	lab.SetDelay("a", "b", 10*time.Millisecond)
	b, c := lab.Host("b"), lab.Host("c")
	for _, h := range []*Host{b, c} {
		go serveAccept(listen(t, h, "tcp", h.Addr(7000)))
	}
	a := lab.Host("a")

	if rtt := connectRTT(t, a, b.Addr(7000), 5); rtt < 18*time.Millisecond || rtt > 40*time.Millisecond {
		t.Errorf("connect a→b with 10ms one way: RTT %v, want 18ms to 40ms", rtt)
	} else {
		t.Logf("connect a→b (10ms one way): %v", rtt)
	}
	if rtt := connectRTT(t, a, c.Addr(7000), 5); rtt >= 5*time.Millisecond {
		t.Errorf("connect a→c without delay: RTT %v, want < 5ms", rtt)
	} else {
		t.Logf("connect a→c (no delay): %v", rtt)
	}
	// A link is symmetric, and a change applies to the next frames.
	go serveAccept(listen(t, a, "tcp", a.Addr(7000)))
	lab.SetDelay("b", "a", 3*time.Millisecond)
	if rtt := connectRTT(t, b, a.Addr(7000), 5); rtt < 5*time.Millisecond || rtt > 20*time.Millisecond {
		t.Errorf("connect b→a with 3ms one way: RTT %v, want 5ms to 20ms", rtt)
	}
	if n := lab.Dropped(); n != 0 {
		t.Errorf("hub dropped %d frames", n)
	}
}

func TestPingAndUDP(t *testing.T) {
	if _, err := exec.LookPath("ping"); err != nil {
		t.Fatal("ping is not installed: run scripts/deps.sh or apt-get install -y iputils-ping")
	}
	lab := New(t, "a", "b")
	lab.SetDelay("a", "b", 5*time.Millisecond)
	a, b := lab.Host("a"), lab.Host("b")

	// ICMP, from a program run inside host a.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := a.CommandContext(ctx, "ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", b.IP.String()).CombinedOutput()
	if err != nil {
		t.Fatalf("ping %s from a: %v\n%s", b.IP, err, out)
	}
	m := regexp.MustCompile(`rtt min/avg/max/mdev = ([0-9.]+)/`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("ping printed no RTT summary:\n%s", out)
	}
	minMS, _ := strconv.ParseFloat(string(m[1]), 64)
	if minMS < 9 || minMS > 30 {
		t.Errorf("ping a→b with 5ms one way: min RTT %.3fms, want 9ms to 30ms\n%s", minMS, out)
	}

	// UDP echo: b answers every datagram; a times the round trip.
	pc, err := b.ListenPacket("udp", b.Addr(5353))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
	c, err := a.DialContext(ctx, "udp", b.Addr(5353))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	best := time.Hour
	for i := range 5 {
		msg := []byte(fmt.Sprintf("echo %d", i))
		c.SetDeadline(time.Now().Add(2 * time.Second))
		start := time.Now()
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("udp echo %d: %v", i, err)
		}
		best = min(best, time.Since(start))
		if string(buf[:n]) != string(msg) {
			t.Fatalf("udp echo %d: got %q, want %q", i, buf[:n], msg)
		}
	}
	if best < 9*time.Millisecond || best > 30*time.Millisecond {
		t.Errorf("udp echo a→b with 5ms one way: RTT %v, want 9ms to 30ms", best)
	}
}

// TestOrderKept sends numbered datagrams over a delayed link, shortening
// the delay half way, and expects them all, in the order sent.
func TestOrderKept(t *testing.T) {
	lab := New(t, "a", "b")
	lab.SetDelay("a", "b", 20*time.Millisecond)
	a, b := lab.Host("a"), lab.Host("b")
	pc, err := b.ListenPacket("udp", b.Addr(9000))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	// The delayed frames leave in a burst when the delay drops: room for
	// all of them, so that a loss can only be the hub's.
	if err := forceReadBuffer(pc.(*net.UDPConn), 8<<20); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := a.DialContext(ctx, "udp", b.Addr(9000))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// One datagram first, so that ARP is done: the kernel holds only a few
	// packets while it resolves a neighbour, and this test is about the hub.
	buf := make([]byte, 64)
	if _, err := c.Write([]byte("warm")); err != nil {
		t.Fatal(err)
	}
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, _, err := pc.ReadFrom(buf); err != nil || string(buf[:n]) != "warm" {
		t.Fatalf("first datagram: %q, %v", buf[:n], err)
	}

	const total = 2000
	sent := make(chan error, 1)
	go func() {
		buf := make([]byte, 8)
		for i := range total {
			if i == total/2 {
				lab.SetDelay("a", "b", 0)
			}
			binary.BigEndian.PutUint64(buf, uint64(i))
			if _, err := c.Write(buf); err != nil {
				sent <- err
				return
			}
			if i%100 == 99 {
				time.Sleep(time.Millisecond) // stay well inside the receive buffer
			}
		}
		sent <- nil
	}()
	pc.SetReadDeadline(time.Now().Add(15 * time.Second))
	for want := range total {
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("datagram %d of %d: %v", want, total, err)
		}
		if n != 8 {
			t.Fatalf("datagram %d: %d bytes, want 8", want, n)
		}
		if got := binary.BigEndian.Uint64(buf); got != uint64(want) {
			t.Fatalf("datagram %d came when %d was due: order lost or a frame dropped (hub dropped %d)", got, want, lab.Dropped())
		}
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if n := lab.Dropped(); n != 0 {
		t.Errorf("hub dropped %d frames", n)
	}
}

// TestBulkTCP moves a few megabytes over a delayed link: segmentation and
// checksums survive the hub.
func TestBulkTCP(t *testing.T) {
	lab := New(t, "a", "b")
	lab.SetDelay("a", "b", 2*time.Millisecond)
	a, b := lab.Host("a"), lab.Host("b")
	ln := listen(t, b, "tcp", b.Addr(8000))
	const size = 4 << 20
	got := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- -1
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		var n int64
		buf := make([]byte, 64<<10)
		for {
			m, err := c.Read(buf)
			n += int64(m)
			if err != nil {
				break
			}
		}
		got <- n
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := a.DialContext(ctx, "tcp", b.Addr(8000))
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write(make([]byte, size)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	select {
	case n := <-got:
		if n != size {
			t.Fatalf("received %d bytes, want %d", n, size)
		}
	case <-ctx.Done():
		t.Fatal("bulk transfer did not finish in 20s")
	}
}

// labNamespaces lists the namespaces whose name starts with prefix.
func labNamespaces(t *testing.T, prefix string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], prefix) {
			names = append(names, f[0])
		}
	}
	return names
}

func TestCloseRemovesEveryNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		New(t, "a") // fails or skips as every lab test does
	}
	lab, err := Open("a", "b", "c")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lab.Close() })
	prefix := lab.prefix + "-"
	if got := labNamespaces(t, prefix); len(got) != 4 {
		t.Fatalf("open lab: namespaces %v, want 4 (hub and three hosts)", got)
	}
	for _, h := range lab.hosts {
		var on bool
		if err := h.ns.do(func() (err error) { on, err = txChecksum(hostDev); return err }); err != nil || on {
			t.Errorf("host %s: %s transmit checksum offload on=%v (%v), want off", h.Name, hostDev, on, err)
		}
		if err := lab.hubNS.do(func() (err error) { on, err = txChecksum(hubDev(h.index)); return err }); err != nil || on {
			t.Errorf("hub: %s transmit checksum offload on=%v (%v), want off", hubDev(h.index), on, err)
		}
	}
	if _, err := lab.Host("a").DialContext(context.Background(), "tcp", "localhost:1"); err == nil || !strings.Contains(err.Error(), "want an IP address") {
		t.Errorf("dial by name: %v, want a refusal", err)
	}
	if err := lab.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if got := labNamespaces(t, prefix); len(got) != 0 {
		t.Fatalf("closed lab left namespaces %v", got)
	}
	if err := lab.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

func TestRemoveStale(t *testing.T) {
	New(t, "a") // root, or fail as every lab test does
	// A process that has ended: its pid names a dead lab.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	deadPID := dead.Process.Pid
	if processAlive(deadPID) {
		t.Fatalf("pid %d still in use right after its process ended", deadPID)
	}
	stale := []string{
		fmt.Sprintf("%s%d-1-hub", stalePrefix, deadPID),
		fmt.Sprintf("%s%d-1-a", stalePrefix, deadPID),
	}
	live := fmt.Sprintf("%s%d-999999-a", stalePrefix, os.Getpid())
	other := fmt.Sprintf("notalab-%d-1-a", deadPID)
	for _, name := range append([]string{live, other}, stale...) {
		if err := ip("netns", "add", name); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { deleteNamespace(name) })
	}
	removed, err := RemoveStale()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range stale {
		if _, err := os.Stat(filepath.Join(netnsDir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stale namespace %s still there (stat: %v)", name, err)
		}
		if !contains(removed, name) {
			t.Errorf("RemoveStale returned %v, without %s", removed, name)
		}
	}
	for _, name := range []string{live, other} {
		if _, err := os.Stat(filepath.Join(netnsDir, name)); err != nil {
			t.Errorf("namespace %s of a live or foreign owner was removed: %v", name, err)
		}
		if contains(removed, name) {
			t.Errorf("RemoveStale reported removing %s", name)
		}
	}
}

// forceReadBuffer sets the socket's receive buffer past rmem_max
// (SO_RCVBUFFORCE, root only).
func forceReadBuffer(c *net.UDPConn, size int) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size)
	}); err != nil {
		return err
	}
	return serr
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestLabPID(t *testing.T) {
	for _, c := range []struct {
		name string
		pid  int
		ok   bool
	}{
		{"netlab-123-4-hub", 123, true},
		{"netlab-9-1-a", 9, true},
		{"netlab-x-1-a", 0, false},
		{"netlab-0-1-a", 0, false},
		{"netlab-123", 0, false},
		{"other-123-4-hub", 0, false},
		{"", 0, false},
	} {
		pid, ok := labPID(c.name)
		if pid != c.pid || ok != c.ok {
			t.Errorf("labPID(%q) = %d, %v; want %d, %v", c.name, pid, ok, c.pid, c.ok)
		}
	}
}

func TestCheckNames(t *testing.T) {
	for _, c := range []struct {
		names []string
		err   string
	}{
		{[]string{"a", "b2"}, ""},
		{nil, "a lab has 1 to 32 hosts, not 0"},
		{[]string{"A"}, `host name "A": want lower-case letters`},
		{[]string{"1a"}, `host name "1a": want lower-case letters`},
		{[]string{"a-b"}, `host name "a-b": want lower-case letters`},
		{[]string{"abcdefghijklmnopq"}, `host name "abcdefghijklmnopq": want`},
		{[]string{"a", "a"}, `host name "a" given twice`},
	} {
		err := checkNames(c.names)
		switch {
		case c.err == "" && err != nil:
			t.Errorf("checkNames(%q): %v", c.names, err)
		case c.err != "" && (err == nil || !strings.HasPrefix(err.Error(), c.err)):
			t.Errorf("checkNames(%q) = %v, want %q...", c.names, err, c.err)
		}
	}
}
