package gossip

import (
	"context"
	"time"

	"github.com/hashicorp/memberlist"

	"meridian/health"
)

// Heartbeats keep a quiet node's views voting.
//
// The table stops counting a peer's views once it has heard nothing from
// it for stale_after by its own clock, even while memberlist sees the peer
// alive: memberlist's probes are answered by memberlist itself, so a node
// whose delegate hangs (or that stopped disseminating for any other
// reason) would otherwise vote with its last word for ever. A healthy node
// whose targets do not change sends no broadcasts, and push/pull reaches a
// given peer far less often than stale_after, so every node also sends a
// heartbeat every stale_after/3: a view with no observations carrying its
// (epoch, seq), sent best effort (a UDP packet, or a frame on the TLS
// transport) straight to every live compatible peer. Three chances per
// stale_after make a lost packet harmless. Point to point rather than
// gossiped: nothing has to be relayed or deduplicated, and the cost is one
// small packet per peer per interval (at 50 nodes and stale_after 30 s,
// about 5 packets a second out of each node).
//
// A heartbeat is an ordinary broadcast-type view (msgView) with no
// observations, so the wire format is unchanged; protocol minor version 1
// announces that a node sends them, and only then does the receiving table
// judge its silence (health.Member.Heartbeats): an older peer keeps voting
// while memberlist sees it alive, as before. The interval comes from this
// node's stale_after; every node of a cluster is expected to share it.

// minHeartbeat bounds how often heartbeats go out, whatever stale_after is.
const minHeartbeat = 50 * time.Millisecond

// heartbeatInterval is a third of the table's stale_after.
func (n *Node) heartbeatInterval() time.Duration {
	return max(n.opts.Table.StaleAfter()/3, minHeartbeat)
}

// heartbeat sends this node's heartbeat to every live compatible peer every
// heartbeatInterval until ctx ends.
func (n *Node) heartbeat(ctx context.Context, ml *memberlist.Memberlist) {
	tick := time.NewTicker(n.heartbeatInterval())
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		n.sendHeartbeat(ml)
	}
}

// sendHeartbeat sends one heartbeat to every live compatible peer.
func (n *Node) sendHeartbeat(ml *memberlist.Memberlist) {
	if n.mute.Load() {
		return
	}
	msg, err := Encode(health.View{Origin: n.opts.Name, Region: n.opts.Region, Epoch: n.epoch, Seq: n.opts.Local.Seq()})
	if err != nil { // cannot happen: New checked the name and region
		n.log.Warn("gossip heartbeat not sent", "err", err)
		return
	}
	for _, nd := range n.livePeers(nil) {
		if err := ml.SendBestEffort(nd, msg); err != nil {
			n.log.Debug("gossip heartbeat not sent", "peer", nd.Name, "err", err)
			continue
		}
		n.metrics.countSent(kindHeartbeat, len(msg))
	}
}
