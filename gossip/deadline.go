package gossip

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// deadlineTransport sets a deadline on every stream this node dials: the
// profile's TCP timeout from the dial. memberlist sets deadlines on the
// streams it reads (push/pull, stream pings) but not on a user message it
// writes (SendReliable, which carries Exchange exports of up to 16 MiB): a
// peer that accepts the stream and stops reading (a stopped process, a
// black-holed link) would hold the writer until TCP gives up, many minutes
// later, and with it the exchange round and Run's shutdown. The receiving
// memberlist reads a whole stream within the same timeout, so the deadline
// fails no stream a peer would have accepted; memberlist moves it further
// on the streams it then reads. Shutdown may be called more than once.
type deadlineTransport struct {
	memberlist.Transport
	timeout  time.Duration
	shutdown sync.Once
	err      error
}

var _ memberlist.NodeAwareTransport = (*deadlineTransport)(nil)

// Shutdown shuts the transport down, once; later calls return the first
// call's result.
func (t *deadlineTransport) Shutdown() error {
	t.shutdown.Do(func() { t.err = t.Transport.Shutdown() })
	return t.err
}

// DialTimeout dials addr and sets the stream's deadline.
func (t *deadlineTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.deadline(t.Transport.DialTimeout(addr, timeout))
}

// DialAddressTimeout dials a and sets the stream's deadline.
func (t *deadlineTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if na, ok := t.Transport.(memberlist.NodeAwareTransport); ok {
		return t.deadline(na.DialAddressTimeout(a, timeout))
	}
	return t.DialTimeout(a.Addr, timeout)
}

// WriteToAddress sends a packet to a.
func (t *deadlineTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if na, ok := t.Transport.(memberlist.NodeAwareTransport); ok {
		return na.WriteToAddress(b, a)
	}
	return t.WriteTo(b, a.Addr)
}

func (t *deadlineTransport) deadline(c net.Conn, err error) (net.Conn, error) {
	if err != nil {
		return nil, err
	}
	if err := c.SetDeadline(time.Now().Add(t.timeout)); err != nil {
		c.Close()
		return nil, fmt.Errorf("set stream deadline: %w", err)
	}
	return c, nil
}

// netTransport creates memberlist's own UDP+TCP transport as
// memberlist.Create would, retrying a few times when the port is chosen by
// the kernel (UDP and TCP must get the same one).
func netTransport(conf *memberlist.Config) (*memberlist.NetTransport, error) {
	nc := &memberlist.NetTransportConfig{BindAddrs: []string{conf.BindAddr}, BindPort: conf.BindPort, Logger: conf.Logger}
	tries := 1
	if conf.BindPort == 0 {
		tries = 10
	}
	var err error
	for range tries {
		var t *memberlist.NetTransport
		if t, err = memberlist.NewNetTransport(nc); err == nil {
			return t, nil
		}
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	return nil, fmt.Errorf("bind %s:%d: %w", conf.BindAddr, conf.BindPort, err)
}
