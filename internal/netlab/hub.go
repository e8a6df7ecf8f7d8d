package netlab

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// packetBuffer is the receive buffer of a hub port's socket, so that a
// burst of frames waits in the kernel instead of being dropped.
const packetBuffer = 4 << 20

// stopTimeout bounds how long Close waits for the hub's goroutines.
const stopTimeout = 10 * time.Second

// port is one hub-side veth end, read and written with an AF_PACKET socket
// through the runtime's poller (so that closing it ends a blocked read).
type port struct {
	dev  string
	file *os.File
	raw  syscall.RawConn
}

// openPort opens an AF_PACKET socket bound to dev. It must run in the
// namespace that holds dev. The socket ignores the frames the hub itself
// sends out of dev (PACKET_IGNORE_OUTGOING), so none is relayed twice.
func openPort(dev string) (*port, error) {
	// Protocol 0 receives nothing until bind names the device and ETH_P_ALL.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("hub port %s: socket: %w", dev, err)
	}
	p, err := bindPort(fd, dev)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("hub port %s: %w", dev, err)
	}
	return p, nil
}

// bindPort configures the packet socket fd and binds it to dev.
func bindPort(fd int, dev string) (*port, error) {
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1); err != nil {
		return nil, fmt.Errorf("PACKET_IGNORE_OUTGOING: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, packetBuffer); err != nil {
		return nil, fmt.Errorf("SO_RCVBUFFORCE: %w", err)
	}
	ifi, err := net.InterfaceByName(dev)
	if err != nil {
		return nil, err
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
		return nil, fmt.Errorf("bind: %w", err)
	}
	file := os.NewFile(uintptr(fd), "packet:"+dev)
	raw, err := file.SyscallConn()
	if err != nil {
		return nil, err
	}
	return &port{dev: dev, file: file, raw: raw}, nil
}

// htons converts a 16-bit value to network byte order.
func htons(v uint16) uint16 { return v<<8 | v>>8 }

// recv reads one frame into buf. outgoing reports a frame this host sent
// (PACKET_OUTGOING), which the hub must not relay; the socket option makes
// it rare, but older kernels ignore it.
func (p *port) recv(buf []byte) (n int, outgoing bool, err error) {
	var from unix.Sockaddr
	var rerr error
	err = p.raw.Read(func(fd uintptr) bool {
		for {
			n, from, rerr = unix.Recvfrom(int(fd), buf, 0)
			if rerr != unix.EINTR {
				return rerr != unix.EAGAIN
			}
		}
	})
	if err == nil {
		err = rerr
	}
	if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
		outgoing = true
	}
	return n, outgoing, err
}

// send writes one frame out of the port.
func (p *port) send(data []byte) error {
	var werr error
	err := p.raw.Write(func(fd uintptr) bool {
		for {
			_, werr = unix.Write(int(fd), data)
			if werr != unix.EINTR {
				return werr != unix.EAGAIN
			}
		}
	})
	if err != nil {
		return err
	}
	return werr
}

// hub is a learning Ethernet switch over ports whose every (source,
// destination) pair is a delayed link.
type hub struct {
	ports []*port
	links [][]*link // links[src][dst]; nil where src == dst

	mu   sync.Mutex
	macs map[[6]byte]int // source MAC → the port it was seen on

	recvErrors atomic.Uint64 // frames lost to a passing receive error

	stop chan struct{}
	wg   sync.WaitGroup
}

// newHub returns a hub over ports with every link's delay zero. It starts
// nothing.
func newHub(ports []*port) *hub {
	h := &hub{ports: ports, macs: map[[6]byte]int{}, stop: make(chan struct{})}
	h.links = make([][]*link, len(ports))
	for src := range ports {
		h.links[src] = make([]*link, len(ports))
		for dst, p := range ports {
			if dst != src {
				h.links[src][dst] = newLink(p.send)
			}
		}
	}
	return h
}

// start runs a reader per port and a sender per link until close.
func (h *hub) start() {
	for src, p := range h.ports {
		h.wg.Go(func() { h.read(src, p) })
		for _, l := range h.links[src] {
			if l != nil {
				h.wg.Go(func() { l.run(h.stop) })
			}
		}
	}
}

// read relays the frames that arrive on port src until the port closes or
// its device is gone. A passing error (the device down for a moment, no
// buffer) loses one frame, counted in errors.
func (h *hub) read(src int, p *port) {
	buf := make([]byte, 1<<16)
	for {
		n, outgoing, err := p.recv(buf)
		if errors.Is(err, unix.ENETDOWN) || errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.ENOMEM) {
			h.recvErrors.Add(1)
			continue
		}
		if err != nil {
			return // closed by close, or the device is gone
		}
		if !outgoing {
			h.forward(src, buf[:n], time.Now())
		}
	}
}

// forward learns the frame's source MAC and queues a copy of it on the
// link to the port of its destination MAC, or on every link from src when
// the destination is a group address or not yet learned.
func (h *hub) forward(src int, data []byte, now time.Time) {
	if len(data) < 14 {
		return
	}
	var dst, from [6]byte
	copy(dst[:], data[0:6])
	copy(from[:], data[6:12])
	h.mu.Lock()
	h.macs[from] = src
	to, known := h.macs[dst]
	h.mu.Unlock()
	frame := bytes.Clone(data)
	if known && dst[0]&1 == 0 {
		if to != src {
			h.links[src][to].send(frame, now)
		}
		return
	}
	for _, l := range h.links[src] {
		if l != nil {
			l.send(frame, now)
		}
	}
}

// dropped is how many frames the hub has lost, on receipt or in a link.
func (h *hub) dropped() uint64 {
	n := h.recvErrors.Load()
	for _, row := range h.links {
		for _, l := range row {
			if l != nil {
				n += l.dropped.Load()
			}
		}
	}
	return n
}

// close stops every goroutine and closes the ports, waiting at most
// stopTimeout.
func (h *hub) close() error {
	close(h.stop)
	var errs []error
	for _, p := range h.ports {
		if err := p.file.Close(); err != nil {
			errs = append(errs, fmt.Errorf("hub port %s: close: %w", p.dev, err))
		}
	}
	done := make(chan struct{})
	go func() { h.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(stopTimeout):
		errs = append(errs, fmt.Errorf("hub: goroutines still running %s after close", stopTimeout))
	}
	return errors.Join(errs...)
}
