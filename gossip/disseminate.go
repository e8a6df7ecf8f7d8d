package gossip

import (
	"context"
	"time"

	"github.com/hashicorp/memberlist"

	"meridian/health"
	"meridian/probe"
)

// An RTT-only change is broadcast when the RTT moved by more than either
// bound since the target's last broadcast; smaller moves wait for the next
// push/pull, which always carries the latest values.
const (
	rttRelative = 0.20
	rttAbsolute = 5 * time.Millisecond
)

// broadcast is one observation change queued for gossip, this node's own or
// one it relays. It is named after its origin and target, so a newer change
// to the same target replaces it in the queue (memberlist.NamedBroadcast).
type broadcast struct {
	name string
	msg  []byte
}

// broadcastName names the broadcast of origin's observation of tg.
func broadcastName(origin string, tg probe.Target) string { return origin + " " + tg.String() }

var _ memberlist.NamedBroadcast = (*broadcast)(nil)

func (b *broadcast) Name() string { return b.name }

func (b *broadcast) Message() []byte { return b.msg }

// Invalidates is unused: memberlist replaces named broadcasts by name.
func (b *broadcast) Invalidates(memberlist.Broadcast) bool { return false }

func (b *broadcast) Finished() {}

// sender queues this node's observation changes for broadcast. It is owned
// by the disseminate goroutine.
type sender struct {
	lastSeq    uint64
	sent       map[probe.Target]health.Observation // what was last queued per target
	unsendable map[probe.Target]bool               // targets whose encode failed (logged once)
}

// disseminate queues a broadcast for every change of this node's
// observations until ctx ends.
func (n *Node) disseminate(ctx context.Context) {
	changes := n.opts.Local.Subscribe()
	s := &sender{sent: map[probe.Target]health.Observation{}, unsendable: map[probe.Target]bool{}}
	for {
		n.queueChanges(s)
		select {
		case <-ctx.Done():
			return
		case <-changes:
		}
	}
}

// queueChanges queues one named broadcast per target changed since the
// last call, skipping the changes of RTT alone that are too small.
func (n *Node) queueChanges(s *sender) {
	obs, seq := n.opts.Local.View(s.lastSeq)
	for _, o := range obs {
		if prev, ok := s.sent[o.Target]; ok && !significant(prev, o) {
			continue
		}
		msg, err := Encode(health.View{Origin: n.opts.Name, Region: n.opts.Region, Epoch: n.epoch, Seq: seq,
			Obs: []health.Observation{o}})
		if err != nil {
			if !s.unsendable[o.Target] {
				s.unsendable[o.Target] = true
				n.log.Warn("observation not gossiped", "target", o.Target.String(), "err", err)
			}
			continue
		}
		n.queue.QueueBroadcast(&broadcast{name: broadcastName(n.opts.Name, o.Target), msg: msg})
		s.sent[o.Target] = o
	}
	if seq-s.lastSeq > uint64(len(obs)) {
		n.forgetRemoved(s) // some seqs went to targets Configure removed
	}
	s.lastSeq = seq
}

// forgetRemoved drops the targets Local no longer has from s.
func (n *Node) forgetRemoved(s *sender) {
	all, _ := n.opts.Local.View(0)
	keep := make(map[probe.Target]bool, len(all))
	for _, o := range all {
		keep[o.Target] = true
	}
	for t := range s.sent {
		if !keep[t] {
			delete(s.sent, t)
			delete(s.unsendable, t)
		}
	}
}

// significant reports whether o differs from the last broadcast prev by
// more than noise: another state or reason, or an RTT that moved enough.
func significant(prev, o health.Observation) bool {
	return prev.State != o.State || prev.Reason != o.Reason || rttMoved(prev.RTT, o.RTT)
}

// rttMoved reports whether an RTT moved from old to cur by more than 20 %
// of old or more than 5 ms.
func rttMoved(old, cur time.Duration) bool {
	d := cur - old
	if d < 0 {
		d = -d
	}
	return d > rttAbsolute || float64(d) > rttRelative*float64(old)
}
