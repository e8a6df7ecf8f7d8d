package gossip

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/hashicorp/memberlist"
)

// Join and reconnect timing.
const (
	joinBackoffMin    = 200 * time.Millisecond
	joinBackoffMax    = 30 * time.Second
	joinQuietAttempts = 3 // failures logged at info before they are warnings

	// A peer memberlist declared dead (not one that left) is retried every
	// reconnectInterval for reconnectTimeout, so the two sides of a
	// partition longer than memberlist's dead-node gossip merge again when
	// it heals (alertmanager's cluster does the same).
	reconnectInterval = 10 * time.Second
	reconnectTimeout  = 6 * time.Hour
)

// lostPeer is a failed peer Run tries to reconnect to.
type lostPeer struct {
	addr  string
	since time.Time
}

func (n *Node) now() time.Time { return time.Now() }

// join contacts the configured join addresses, retrying with exponential
// backoff and jitter until one answers or ctx ends. A node started before
// every other simply keeps waiting; the others join it when they start.
func (n *Node) join(ctx context.Context, ml *memberlist.Memberlist) {
	addrs := n.joinAddrs()
	if len(addrs) == 0 {
		return
	}
	delay := joinBackoffMin
	for attempt := 1; ctx.Err() == nil; attempt++ {
		n.metrics.joinAttempts.Inc()
		contacted, err := ml.Join(addrs)
		if contacted > 0 {
			n.log.Info("joined the gossip cluster", "contacted", contacted, "join", addrs, "attempt", attempt)
			return
		}
		wait := jitter(delay)
		level := slog.LevelInfo
		if attempt > joinQuietAttempts {
			level = slog.LevelWarn
		}
		n.log.Log(ctx, level, "cannot join the gossip cluster yet", "join", addrs, "attempt", attempt, "retry_in", wait, "err", err)
		if !sleep(ctx, wait) {
			return
		}
		delay = min(2*delay, joinBackoffMax)
	}
}

// joinAddrs is the join list without this node's own address: the same
// list can be given to every node.
func (n *Node) joinAddrs() []string {
	self := []string{n.LocalAddr(), n.opts.Config.Bind}
	return slices.DeleteFunc(slices.Clone(n.opts.Config.Join), func(a string) bool {
		return slices.Contains(self, a)
	})
}

// jitter returns a random duration in [d/2, d].
func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}

// sleep waits for d or until ctx ends, and reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// reconnect periodically tries to join the peers memberlist declared dead,
// until they are back or reconnectTimeout has passed.
func (n *Node) reconnect(ctx context.Context, ml *memberlist.Memberlist) {
	for sleep(ctx, n.reconnectEvery) {
		for _, p := range n.lostPeers() {
			if _, err := ml.Join([]string{p.addr}); err == nil {
				n.log.Info("reconnected to a failed gossip peer", "addr", p.addr, "lost_for", n.now().Sub(p.since).Round(time.Second))
			}
		}
	}
}

// lostPeers returns the failed peers to retry, forgetting those lost for
// longer than reconnectTimeout.
func (n *Node) lostPeers() []lostPeer {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []lostPeer
	for name, p := range n.lost {
		if n.now().Sub(p.since) > reconnectTimeout {
			delete(n.lost, name)
			n.log.Info("gave up reconnecting to a failed gossip peer", "peer", name, "addr", p.addr)
			continue
		}
		out = append(out, p)
	}
	return out
}
