package gossip

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Exchange is state a node shares with every peer periodically, point to
// point (not relayed): each node sends its own export to every live member,
// so every node holds every other node's latest state (the skew package's
// per-node sketches, from which any node serves the cluster-wide report).
// The bytes are opaque to gossip; they travel as memberlist reliable user
// messages, so they are encrypted with the keyring and labelled with the
// cluster, or ride the mutual-TLS transport, like every other message.
//
// Cost: memberlist compresses every stream message (LZW, about 40 MB/s per
// core each way), once per peer, and the receiver must read the whole
// stream within the profile's TCP timeout (local 1 s, lan 10 s, wan 30 s).
// A few MiB per export is fine; at the 16 MiB bound a round costs about
// 0.2 s of CPU per peer on each side, and the local profile's timeout is
// too short for it.
type Exchange interface {
	// Export returns this node's own state at now, at most 16 MiB (a
	// larger export is counted and not sent). It is called from one
	// goroutine, once per interval and shortly after peers join; an error
	// skips that round.
	Export(now time.Time) ([]byte, error)
	// Accept receives the latest state of the peer named from; b is Accept's
	// to keep. It is called from one goroutine, never for this node's own
	// state, and never with an older state of a peer than one it was given
	// before. It must not block for long: meanwhile each peer's newest
	// state waits in a one-slot mailbox that a newer one replaces.
	Accept(from string, b []byte)
}

// Exchange timing and concurrency.
const (
	defaultExchangeInterval = 15 * time.Second
	exchangeJoinDelay       = time.Second // joins in this window share one export
	exchangeSenders         = 4           // streams to peers open at once
)

// inbox holds each peer's newest undelivered export (newest wins), and the
// newest (epoch, seq) accepted from each, so that a late stream carrying an
// older export is dropped. NotifyMsg puts into it and never waits on
// Accept; the deliver goroutine drains it.
type inbox struct {
	mu      sync.Mutex
	pending map[string]exchangeMsg
	last    map[string][2]uint64 // origin → (epoch, seq) of the newest accepted
	ready   chan struct{}        // one slot: something is pending
}

func newInbox() *inbox {
	return &inbox{pending: map[string]exchangeMsg{}, last: map[string][2]uint64{}, ready: make(chan struct{}, 1)}
}

// put keeps m unless an export of its origin as new or newer was put
// before, and reports whether it did.
func (ib *inbox) put(m exchangeMsg) bool {
	ib.mu.Lock()
	last, seen := ib.last[m.origin]
	if seen && !m.newer(last[0], last[1]) {
		ib.mu.Unlock()
		return false
	}
	ib.last[m.origin] = [2]uint64{m.epoch, m.seq}
	ib.pending[m.origin] = m
	ib.mu.Unlock()
	select {
	case ib.ready <- struct{}{}:
	default:
	}
	return true
}

// take returns what is pending, by origin name, and empties the inbox.
func (ib *inbox) take() []exchangeMsg {
	ib.mu.Lock()
	defer ib.mu.Unlock()
	out := make([]exchangeMsg, 0, len(ib.pending))
	for _, m := range ib.pending {
		out = append(out, m)
	}
	clear(ib.pending)
	slices.SortFunc(out, func(a, b exchangeMsg) int { return strings.Compare(a.origin, b.origin) })
	return out
}

// drop forgets a peer's undelivered export (it left); its newest (epoch,
// seq) is kept, so that an older export still in flight is not accepted.
func (ib *inbox) drop(origin string) {
	ib.mu.Lock()
	delete(ib.pending, origin)
	ib.mu.Unlock()
}

// receiveExchange takes a peer's export off memberlist's goroutine: it
// checks and copies it into the inbox, never waiting for Accept.
func (n *Node) receiveExchange(b []byte) {
	m, err := decodeExchange(b)
	if err != nil {
		n.metrics.decodeErrors.Inc()
		n.log.Debug("gossip exchange dropped", "err", err, "bytes", len(b))
		return
	}
	switch {
	case n.opts.Exchange == nil || m.origin == n.opts.Name || n.incompatible(m.origin):
		return
	case len(m.payload) > n.exchangeLimit:
		n.metrics.exchangeDropped[dropOversizeReceived].Inc()
		n.log.Warn("gossip exchange from a peer over the size bound dropped", "peer", m.origin, "bytes", len(m.payload), "limit", n.exchangeLimit)
		return
	}
	n.metrics.countReceived(kindExchange, len(b))
	m.payload = slices.Clone(m.payload) // memberlist owns b
	if !n.inbox.put(m) {
		n.metrics.exchangeDropped[dropStale].Inc()
	}
}

// deliver hands the peers' exports to Exchange.Accept until ctx ends.
func (n *Node) deliver(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.inbox.ready:
		}
		for _, m := range n.inbox.take() {
			if ctx.Err() != nil {
				return
			}
			n.opts.Exchange.Accept(m.origin, m.payload)
		}
	}
}

// exchange sends this node's export to every live peer each interval, and
// to peers that joined shortly after they join, until ctx ends.
func (n *Node) exchange(ctx context.Context, ml *memberlist.Memberlist) {
	every := time.NewTimer(n.opts.ExchangeInterval)
	defer every.Stop()
	soon := time.NewTimer(time.Hour)
	soon.Stop()
	defer soon.Stop()
	joined := map[string]bool{}
	for {
		select {
		case <-ctx.Done():
			return
		case name := <-n.exchangeJoined:
			if len(joined) == 0 {
				soon.Reset(n.exchangeJoinDelay)
			}
			joined[name] = true
		case <-soon.C:
			n.sendExports(ctx, ml, joined)
			clear(joined)
		case <-every.C:
			n.sendExports(ctx, ml, nil)
			every.Reset(n.opts.ExchangeInterval)
		}
	}
}

// sendExports exports once and sends the export to every live compatible
// peer, or only to those in to when it is not nil, a few streams at a
// time. It returns when every send has ended.
func (n *Node) sendExports(ctx context.Context, ml *memberlist.Memberlist, to map[string]bool) {
	payload, err := n.opts.Exchange.Export(n.now())
	if err != nil {
		n.metrics.exchangeDropped[dropExportFailed].Inc()
		n.log.Warn("gossip exchange export failed", "err", err)
		return
	}
	if len(payload) > n.exchangeLimit {
		n.metrics.exchangeDropped[dropOversizeSent].Inc()
		n.log.Warn("gossip exchange export over the size bound not sent", "bytes", len(payload), "limit", n.exchangeLimit)
		return
	}
	n.exchangeSeq++
	msg := encodeExchange(n.opts.Name, n.epoch, n.exchangeSeq, payload)
	var wg sync.WaitGroup
	slots := make(chan struct{}, exchangeSenders)
	for _, peer := range n.livePeers(to) {
		if ctx.Err() != nil {
			break
		}
		slots <- struct{}{} // a send ends within the TCP timeout (deadlineTransport)
		wg.Go(func() {
			defer func() { <-slots }()
			n.sendExport(ml, peer, msg)
		})
	}
	wg.Wait()
}

func (n *Node) sendExport(ml *memberlist.Memberlist, peer *memberlist.Node, msg []byte) {
	if err := ml.SendReliable(peer, msg); err != nil {
		n.metrics.exchangeDropped[dropSendFailed].Inc()
		n.log.Debug("gossip exchange not sent", "peer", peer.Name, "err", err)
		return
	}
	n.metrics.countSent(kindExchange, len(msg))
}
