package netlab

import (
	"sync/atomic"
	"time"
)

// linkQueue is how many frames a link holds in flight; more are dropped,
// as a full router queue would. 4096 full frames over a 50 ms link are
// about 1 Gbit/s; the queue's slots (not the frames) are allocated up front.
const linkQueue = 4096

// frame is one Ethernet frame in a link, with the time it is due out.
type frame struct {
	due  time.Time
	data []byte
}

// link is the one-way path from one hub port to another: a FIFO whose
// frames leave after the link's delay, in the order they came. The delay
// is read when a frame enters, so a change applies to the frames after it;
// since frames leave in order, a shortened delay never reorders them.
type link struct {
	delay   atomic.Int64 // nanoseconds
	queue   chan frame
	out     func([]byte) error // sends a frame on; called by run only
	dropped atomic.Uint64      // frames lost to a full queue or a failed send
}

// newLink returns a link that sends its frames with out.
func newLink(out func([]byte) error) *link {
	return &link{queue: make(chan frame, linkQueue), out: out}
}

// setDelay sets the one-way delay of frames that enter from now on.
func (l *link) setDelay(d time.Duration) { l.delay.Store(int64(d)) }

// send queues data to leave after the link's delay. It never blocks: a
// frame that finds the queue full is dropped. data must not change after.
func (l *link) send(data []byte, now time.Time) {
	select {
	case l.queue <- frame{due: now.Add(time.Duration(l.delay.Load())), data: data}:
	default:
		l.dropped.Add(1)
	}
}

// run sends the queued frames on as they fall due, until stop is closed.
func (l *link) run(stop <-chan struct{}) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-stop:
			return
		case f := <-l.queue:
			if wait := time.Until(f.due); wait > 0 {
				timer.Reset(wait)
				select {
				case <-stop:
					return
				case <-timer.C:
				}
			}
			if l.out(f.data) != nil {
				l.dropped.Add(1)
			}
		}
	}
}
