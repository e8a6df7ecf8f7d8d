package skew

// The hand-off from the answer path to the recorder's state.
//
// Record must not block, lock or allocate, and many goroutines call it at
// once. Each call writes one fixed-size record into one of several bounded
// multi-producer, single-consumer rings (D. Vyukov's bounded queue: a
// producer claims a position with one CAS on the ring's head and publishes
// the slot by storing its sequence number; the consumer reads slots in
// order). The ring is chosen by the identity's key, so one identity's
// records stay in order and producers for different identities rarely meet
// on one head. A full ring drops the record and counts it (Stats.Dropped):
// the answer path never waits for the recorder. The single consumer is
// whoever holds Recorder.mu (Run's drain loop, or Export/Report/Update
// draining before they read).

import (
	"sync/atomic"
)

// Ring geometry: ringShards rings of ringSize slots each.
const (
	ringShardBits = 5
	ringShards    = 1 << ringShardBits
	ringSize      = 1024 // slots per ring, a power of two
)

// rec is one recorded answer as it crosses the hand-off.
type rec struct {
	key   uint64 // identityKey
	at    int64  // unix nanoseconds
	mask  uint64 // endpoint bits, in the generation gen's index space
	src   [16]byte
	ecs   [16]byte
	ttl   uint32
	svc   uint16 // service index in generation gen
	gen   uint16 // configuration generation the indexes refer to
	flags uint8  // recSrc4, recECS, recECS4
	bits  uint8  // ECS prefix length
}

const (
	recSrc4 uint8 = 1 << iota // src is an IPv4 address
	recECS                    // ecs holds a client subnet
	recECS4                   // the subnet is IPv4
)

type slot struct {
	seq atomic.Uint64
	r   rec
}

// ring is one bounded MPSC queue. head is written by producers, tail only by
// the consumer; they sit on separate cache lines.
type ring struct {
	head  atomic.Uint64
	_     [56]byte
	tail  atomic.Uint64
	_     [56]byte
	slots [ringSize]slot
}

func newRing() *ring {
	q := &ring{}
	for i := range q.slots {
		q.slots[i].seq.Store(uint64(i))
	}
	return q
}

// push appends r, or reports false when the ring is full. It never blocks:
// a failed CAS means another producer won the position, and the loop moves
// on to the next one.
func (q *ring) push(r *rec) bool {
	pos := q.head.Load()
	for {
		s := &q.slots[pos&(ringSize-1)]
		seq := s.seq.Load()
		switch dif := int64(seq - pos); {
		case dif == 0:
			if q.head.CompareAndSwap(pos, pos+1) {
				s.r = *r
				s.seq.Store(pos + 1)
				return true
			}
			pos = q.head.Load()
		case dif < 0:
			return false // full: the consumer has not freed this slot yet
		default:
			pos = q.head.Load() // another producer took pos
		}
	}
}

// pop removes the oldest published record into r, or reports false when
// none is ready. Only one goroutine may pop at a time.
func (q *ring) pop(r *rec) bool {
	tail := q.tail.Load()
	s := &q.slots[tail&(ringSize-1)]
	if s.seq.Load() != tail+1 {
		return false
	}
	*r = s.r
	s.seq.Store(tail + ringSize)
	q.tail.Store(tail + 1)
	return true
}

// backlog is how many records wait in the ring (approximate while producers
// run).
func (q *ring) backlog() uint64 {
	return q.head.Load() - q.tail.Load()
}
