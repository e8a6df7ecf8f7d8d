package gossip

import (
	"context"
	"fmt"
	"slices"

	"github.com/hashicorp/memberlist"

	"meridian/health"
)

// delegate implements memberlist.Delegate over a Node. memberlist calls it
// from its network goroutines, some of them while it holds its node lock,
// so every method returns quickly and none calls back into memberlist.
type delegate struct{ n *Node }

// NodeMeta returns this node's metadata: protocol version, region, draining.
func (d delegate) NodeMeta(limit int) []byte {
	b := meta{Major: protocolMajor, Minor: protocolMinor, Draining: d.n.draining.Load(), Region: d.n.opts.Region}.encode()
	if len(b) > limit { // cannot happen (the region is at most 64 bytes); memberlist would panic
		return nil
	}
	return b
}

// NotifyMsg merges a broadcast view, or takes in a peer's Exchange export.
// memberlist owns b; Decode and receiveExchange copy what they keep.
func (d delegate) NotifyMsg(b []byte) {
	if len(b) > 0 && b[0] == msgExchange {
		d.n.receiveExchange(b)
		return
	}
	d.n.receive(b)
}

// GetBroadcasts returns the queued observation changes that fit in limit.
func (d delegate) GetBroadcasts(overhead, limit int) [][]byte {
	if d.n.mute.Load() {
		return nil
	}
	msgs := d.n.queue.GetBroadcasts(overhead, limit)
	for _, m := range msgs {
		d.n.metrics.countSent(kindView, len(m))
	}
	return msgs
}

// LocalState returns this node's whole own view for push/pull: only its own
// observations, never what it heard from others.
func (d delegate) LocalState(bool) []byte {
	if d.n.mute.Load() {
		return nil
	}
	b, err := Encode(d.n.fullView())
	if err != nil {
		d.n.log.Warn("gossip full view not sent", "err", err)
		return nil
	}
	d.n.metrics.countSent(kindFullView, len(b))
	return b
}

// MergeRemoteState merges a peer's whole view from push/pull.
func (d delegate) MergeRemoteState(buf []byte, _ bool) { d.n.receive(buf) }

// fullView is this node's whole own view.
func (n *Node) fullView() health.View {
	obs, seq := n.opts.Local.View(0)
	return health.View{Origin: n.opts.Name, Region: n.opts.Region, Epoch: n.epoch, Seq: seq, Full: true, Obs: obs}
}

// welcome sends this node's whole view to every peer that joins, and so
// to every node already there when this one joins; and to a peer heard
// again after a silence past stale_after (a partition that memberlist did
// not see as a death, or a hung delegate), which may have missed this
// node's broadcasts meanwhile. Push/pull alone only carries a view between
// two nodes every push_pull interval (a minute on "wan"), and a join
// exchanges state with the join address only: without this, a new or
// restarted node would wait that long to hear from the others, and they
// from it.
func (n *Node) welcome(ctx context.Context, ml *memberlist.Memberlist) {
	for {
		var name string
		select {
		case <-ctx.Done():
			return
		case name = <-n.joined:
		}
		members := n.livePeers(map[string]bool{name: true})
		if len(members) == 0 || n.mute.Load() {
			continue // gone again, or a test silenced this node
		}
		b, err := Encode(n.fullView())
		if err != nil {
			n.log.Warn("gossip full view not sent", "err", err)
			continue
		}
		if err := ml.SendReliable(members[0], b); err != nil {
			n.log.Debug("gossip view not sent to a joining peer", "peer", name, "err", err)
			continue
		}
		n.metrics.countSent(kindFullView, len(b))
	}
}

// receive decodes a message and merges it into the table. A message that
// does not decode is counted and dropped; one from a peer of an
// incompatible version is ignored. A broadcast that told this node
// something new is relayed: memberlist only sends a user broadcast from its
// origin, RetransmitMult × log(N) times to random peers, which misses some
// nodes of a larger cluster; relaying what is news (as serf does with its
// events) makes the spread epidemic. Merge's (epoch, seq) ordering stops
// the relay once everyone has it.
func (n *Node) receive(b []byte) {
	v, err := Decode(b)
	if err != nil {
		n.metrics.decodeErrors.Inc()
		n.log.Debug("gossip message dropped", "err", err, "bytes", len(b))
		return
	}
	n.metrics.countReceived(viewKind(v), len(b))
	if n.incompatible(v.Origin) {
		return
	}
	silent := n.opts.Table.Silent(v.Origin)
	if n.opts.Table.Merge(v) && !v.Full && len(v.Obs) == 1 {
		n.queue.QueueBroadcast(&broadcast{name: broadcastName(v.Origin, v.Obs[0].Target), msg: slices.Clone(b)})
		n.metrics.relayed.Inc()
	}
	if silent {
		n.log.Info("gossip peer heard again after a silence", "peer", v.Origin)
		select {
		case n.joined <- v.Origin:
		default: // push/pull will carry our view
		}
	}
}

// events implements memberlist.EventDelegate: membership goes to the
// table. memberlist calls it with its node lock held.
type events struct{ n *Node }

// NotifyJoin records a peer that became alive.
func (e events) NotifyJoin(nd *memberlist.Node) { e.n.alive(nd, true) }

// NotifyUpdate records a peer whose metadata changed.
func (e events) NotifyUpdate(nd *memberlist.Node) { e.n.alive(nd, false) }

// NotifyLeave records a peer that left or failed.
func (e events) NotifyLeave(nd *memberlist.Node) { e.n.gone(nd) }

// alive records a live peer in the table, unless it speaks another
// protocol major version: that one is logged once and ignored.
func (n *Node) alive(nd *memberlist.Node, joined bool) {
	if nd.Name == n.opts.Name {
		return
	}
	if joined {
		n.others.Add(1)
	}
	m, err := decodeMeta(nd.Meta)
	if err == nil && !m.compatible() {
		err = fmt.Errorf("it speaks protocol %d.%d, this node %d.%d", m.Major, m.Minor, protocolMajor, protocolMinor)
	}
	n.mu.Lock()
	was, known := n.peers[nd.Name]
	wasCompatible := was.compatible
	n.peers[nd.Name] = peer{compatible: err == nil, region: m.Region, node: copyNode(nd)}
	delete(n.lost, nd.Name)
	n.mu.Unlock()
	if err != nil {
		if !known || wasCompatible {
			n.log.Warn("ignoring gossip peer", "peer", nd.Name, "addr", nd.Address(), "err", err)
		}
		if wasCompatible { // what it said before fades after stale_after
			n.opts.Table.SetMember(health.Member{Name: nd.Name, Region: m.Region, Alive: false, Heartbeats: m.heartbeats()})
		}
		return
	}
	n.opts.Table.SetMember(health.Member{Name: nd.Name, Region: m.Region, Alive: true, Heartbeats: m.heartbeats()})
	if joined {
		select {
		case n.joined <- nd.Name:
		default: // push/pull will carry our view
		}
		if n.opts.Exchange != nil {
			select {
			case n.exchangeJoined <- nd.Name:
			default: // the next round will carry our export
			}
		}
	}
	switch {
	case joined || !known:
		n.log.Info("gossip peer joined", "peer", nd.Name, "region", m.Region, "addr", nd.Address(), "draining", m.Draining)
	default:
		n.log.Debug("gossip peer updated", "peer", nd.Name, "region", m.Region, "draining", m.Draining)
	}
}

// peer is what the node knows of a live peer. node is a copy taken in the
// event delegate, which memberlist calls holding its node lock: memberlist
// rewrites its own Node structs in place (Meta, Addr) under that lock, so
// reading the pointers ml.Members() returns would race with it.
type peer struct {
	compatible bool // speaks our protocol major version: its views merge
	region     string
	node       memberlist.Node
}

// copyNode copies nd, with its byte slices, so that it can be read later
// without memberlist's lock.
func copyNode(nd *memberlist.Node) memberlist.Node {
	c := *nd
	c.Addr = slices.Clone(nd.Addr)
	c.Meta = slices.Clone(nd.Meta)
	return c
}

// gone records a peer that left (it said so) or failed (memberlist
// declared it dead); Run tries to reconnect to a failed one.
func (n *Node) gone(nd *memberlist.Node) {
	if nd.Name == n.opts.Name {
		return
	}
	n.others.Add(-1)
	failed := nd.State != memberlist.StateLeft
	n.mu.Lock()
	compatible := n.peers[nd.Name].compatible
	delete(n.peers, nd.Name)
	if failed {
		n.lost[nd.Name] = lostPeer{addr: nd.Address(), since: n.now()}
	}
	n.mu.Unlock()
	if !compatible {
		return
	}
	n.inbox.drop(nd.Name)
	m, _ := decodeMeta(nd.Meta)
	n.opts.Table.SetMember(health.Member{Name: nd.Name, Region: m.Region, Alive: false, Heartbeats: m.heartbeats()})
	if failed {
		n.log.Warn("gossip peer failed", "peer", nd.Name, "region", m.Region, "addr", nd.Address())
	} else {
		n.log.Info("gossip peer left", "peer", nd.Name, "region", m.Region)
	}
}

// incompatible reports whether origin is a peer of another protocol
// version, whose views are not merged.
func (n *Node) incompatible(origin string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	p, known := n.peers[origin]
	return known && !p.compatible
}

// conflicts implements memberlist.ConflictDelegate.
type conflicts struct{ n *Node }

// NotifyConflict logs a second node claiming a peer's name (or ours).
func (c conflicts) NotifyConflict(existing, other *memberlist.Node) {
	c.n.log.Warn("two gossip nodes claim one name", "peer", existing.Name, "addr", existing.Address(), "other_addr", other.Address())
}
