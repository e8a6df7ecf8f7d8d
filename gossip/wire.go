package gossip

// The wire format of a health.View.
//
//	message     = type:byte version:byte origin region epoch:uvarint seq:uvarint
//	              count:uvarint observation*count
//	observation = check addr port:uvarint state:byte since:varint rtt:uvarint
//	              reason detail seq:uvarint
//	addr        = len:byte (0, 4 or 16) bytes
//	string      = len:uvarint bytes            (origin, region, check, reason, detail)
//
// type is msgView (a broadcast of the targets that changed) or msgFullView
// (a node's whole view, sent in push/pull); it sets View.Full. version is
// wireVersion: a message of another version or type is rejected, never
// guessed at. Every length is bounded, so a decoder never allocates more
// than the message warrants, and Decode never panics (FuzzDecode).
//
// An Exchange export travels in its own message type, point to point over
// memberlist's reliable stream (never gossiped or relayed):
//
//	exchange = type:byte (msgExchange) version:byte origin epoch:uvarint
//	           seq:uvarint payload:bytes (the rest of the message)
//
// (epoch, seq) orders one origin's exports: a receiver keeps the newest.
// The payload is opaque to gossip and at most maxExchangeBytes long.
//
// Closed sets stay closed: a State outside Unknown/Up/Down is an error; a
// Reason this build does not know (a newer peer's) is read as
// probe.ReasonError, so the values that reach metrics and the table are
// always from probe.Reasons(). Since is display only: unix nanoseconds, 0 for
// the zero time. An address's IPv6 zone is not carried.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"time"
	"unicode/utf8"

	"meridian/health"
	"meridian/probe"
)

// Message types: the first byte of every message.
const (
	msgView     byte = 1 // broadcast: the observations that changed
	msgFullView byte = 2 // push/pull: the origin's whole view
	msgExchange byte = 3 // reliable stream: the origin's Exchange export
)

// wireVersion is the second byte of every message.
const wireVersion byte = 1

// Bounds of the wire format.
const (
	maxOrigin = 128    // bytes of a node name
	maxRegion = 64     // bytes of a region name
	maxCheck  = 64     // bytes of a check name
	maxReason = 32     // bytes of a reason
	maxDetail = 256    // bytes of a detail; longer ones are truncated on encode
	maxObs    = 10_000 // observations in one view

	// maxExchangeBytes bounds an Exchange payload, sent or received (16
	// MiB; memberlist itself refuses stream messages over 20 MiB). An
	// export over it is not sent, a message over it not accepted: both
	// are counted (exchange_dropped_total).
	maxExchangeBytes = 16 << 20
)

// minObsLen is the smallest encoded observation, used to reject counts a
// message is too short to hold before allocating for them.
const minObsLen = 10

// errTruncated reports a message that ends inside a field.
var errTruncated = errors.New("message truncated")

// knownReasons is the closed set a decoded reason must belong to.
var knownReasons = func() map[string]probe.Reason {
	m := map[string]probe.Reason{}
	for _, r := range probe.Reasons() {
		m[string(r)] = r
	}
	return m
}()

// Encode returns v in the wire format: a full view when v.Full, else a
// broadcast. It fails when a field is out of bounds (a name too long, too
// many observations, a bad state or port); a detail longer than 256 bytes
// is truncated instead.
func Encode(v health.View) ([]byte, error) {
	if err := checkView(v); err != nil {
		return nil, fmt.Errorf("gossip: encode view of %q: %w", v.Origin, err)
	}
	typ := msgView
	if v.Full {
		typ = msgFullView
	}
	b := make([]byte, 0, 32+len(v.Origin)+len(v.Region)+64*len(v.Obs))
	b = append(b, typ, wireVersion)
	b = appendString(b, v.Origin)
	b = appendString(b, v.Region)
	b = binary.AppendUvarint(b, v.Epoch)
	b = binary.AppendUvarint(b, v.Seq)
	b = binary.AppendUvarint(b, uint64(len(v.Obs)))
	for _, o := range v.Obs {
		b = appendObservation(b, o)
	}
	return b, nil
}

// checkView reports the first field of v that cannot be encoded.
func checkView(v health.View) error {
	switch {
	case v.Origin == "" || len(v.Origin) > maxOrigin:
		return fmt.Errorf("origin must be 1..%d bytes, not %d", maxOrigin, len(v.Origin))
	case len(v.Region) > maxRegion:
		return fmt.Errorf("region must be at most %d bytes, not %d", maxRegion, len(v.Region))
	case len(v.Obs) > maxObs:
		return fmt.Errorf("%d observations: at most %d fit in a view", len(v.Obs), maxObs)
	}
	for _, o := range v.Obs {
		if err := checkObservation(o); err != nil {
			return fmt.Errorf("target %s: %w", o.Target, err)
		}
	}
	return nil
}

func checkObservation(o health.Observation) error {
	t := o.Target
	switch {
	case t.Check == "" || len(t.Check) > maxCheck:
		return fmt.Errorf("check name must be 1..%d bytes, not %d", maxCheck, len(t.Check))
	case t.Port < 0 || t.Port > math.MaxUint16:
		return fmt.Errorf("port %d is outside 0..65535", t.Port)
	case o.State < health.Unknown || o.State > health.Down:
		return fmt.Errorf("state %d is not unknown, up or down", o.State)
	case len(o.Reason) > maxReason:
		return fmt.Errorf("reason is longer than %d bytes", maxReason)
	}
	return nil
}

func appendObservation(b []byte, o health.Observation) []byte {
	b = appendString(b, o.Target.Check)
	b = appendAddr(b, o.Target.Address)
	b = binary.AppendUvarint(b, uint64(o.Target.Port))
	b = append(b, byte(o.State))
	var since int64
	if !o.Since.IsZero() {
		since = o.Since.UnixNano()
	}
	b = binary.AppendVarint(b, since)
	b = binary.AppendUvarint(b, uint64(max(o.RTT, 0)))
	b = appendString(b, string(o.Reason))
	b = appendString(b, truncate(o.Detail, maxDetail))
	return binary.AppendUvarint(b, o.Seq)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendAddr(b []byte, a netip.Addr) []byte {
	switch {
	case a.Is4():
		v := a.As4()
		return append(append(b, 4), v[:]...)
	case a.Is6():
		v := a.As16()
		return append(append(b, 16), v[:]...)
	default:
		return append(b, 0)
	}
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && cut > n-utf8.UTFMax && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// Decode parses a message written by Encode. It rejects an unknown type or
// version, any length out of bounds, a state outside the closed set and
// trailing bytes, and never panics.
func Decode(b []byte) (health.View, error) {
	v, err := decode(b)
	if err != nil {
		return health.View{}, fmt.Errorf("gossip: decode: %w", err)
	}
	return v, nil
}

func decode(b []byte) (health.View, error) {
	if len(b) < 2 {
		return health.View{}, errTruncated
	}
	var v health.View
	switch b[0] {
	case msgView:
	case msgFullView:
		v.Full = true
	default:
		return health.View{}, fmt.Errorf("unknown message type %d", b[0])
	}
	if b[1] != wireVersion {
		return health.View{}, fmt.Errorf("unsupported format version %d (this node speaks %d)", b[1], wireVersion)
	}
	r := reader{b: b[2:]}
	v.Origin = r.string("origin", maxOrigin)
	v.Region = r.string("region", maxRegion)
	v.Epoch = r.uvarint()
	v.Seq = r.uvarint()
	n := r.count()
	if r.err == nil && v.Origin == "" {
		r.err = errors.New("empty origin")
	}
	if r.err != nil {
		return health.View{}, r.err
	}
	v.Obs = make([]health.Observation, 0, n)
	for i := 0; i < n && r.err == nil; i++ {
		v.Obs = append(v.Obs, r.observation())
	}
	if r.err == nil && len(r.b) > 0 {
		r.err = fmt.Errorf("%d trailing bytes", len(r.b))
	}
	if r.err != nil {
		return health.View{}, r.err
	}
	return v, nil
}

// reader consumes a message; after the first error every read returns a
// zero value and r.err keeps that error.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
	r.b = nil
}

func (r *reader) byte() byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) == 0 {
		r.fail(errTruncated)
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	x, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail(errors.New("bad or truncated varint"))
		return 0
	}
	r.b = r.b[n:]
	return x
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	x, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail(errors.New("bad or truncated varint"))
		return 0
	}
	r.b = r.b[n:]
	return x
}

// string reads a length-prefixed string of at most limit bytes.
func (r *reader) string(field string, limit int) string {
	n := r.uvarint()
	switch {
	case r.err != nil:
		return ""
	case n > uint64(limit):
		r.fail(fmt.Errorf("%s is %d bytes, more than %d", field, n, limit))
		return ""
	case n > uint64(len(r.b)):
		r.fail(errTruncated)
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

// count reads the number of observations, bounded by maxObs and by what
// the rest of the message can hold.
func (r *reader) count() int {
	n := r.uvarint()
	switch {
	case r.err != nil:
		return 0
	case n > maxObs:
		r.fail(fmt.Errorf("%d observations, more than %d", n, maxObs))
		return 0
	case n > uint64(len(r.b)/minObsLen):
		r.fail(errTruncated)
		return 0
	}
	return int(n)
}

func (r *reader) observation() health.Observation {
	var o health.Observation
	o.Target.Check = r.string("check name", maxCheck)
	if r.err == nil && o.Target.Check == "" {
		r.fail(errors.New("empty check name"))
	}
	o.Target.Address = r.addr()
	port := r.uvarint()
	if r.err == nil && port > math.MaxUint16 {
		r.fail(fmt.Errorf("port %d is outside 0..65535", port))
	}
	o.Target.Port = int(port)
	state := r.byte()
	if r.err == nil && state > byte(health.Down) {
		r.fail(fmt.Errorf("state %d is not unknown, up or down", state))
	}
	o.State = health.State(state)
	if ns := r.varint(); ns != 0 {
		o.Since = time.Unix(0, ns)
	}
	rtt := r.uvarint()
	if r.err == nil && rtt > math.MaxInt64 {
		r.fail(fmt.Errorf("rtt %d overflows", rtt))
	}
	o.RTT = time.Duration(rtt)
	o.Reason = reason(r.string("reason", maxReason))
	o.Detail = r.string("detail", maxDetail)
	o.Seq = r.uvarint()
	return o
}

// reason maps a wire reason into the closed set: one this build does not
// know is probe.ReasonError.
func reason(s string) probe.Reason {
	if r, ok := knownReasons[s]; ok {
		return r
	}
	return probe.ReasonError
}

func (r *reader) addr() netip.Addr {
	n := int(r.byte())
	switch {
	case r.err != nil:
		return netip.Addr{}
	case n != 0 && n != 4 && n != 16:
		r.fail(fmt.Errorf("address length %d is not 0, 4 or 16", n))
		return netip.Addr{}
	case n > len(r.b):
		r.fail(errTruncated)
		return netip.Addr{}
	}
	a, _ := netip.AddrFromSlice(r.b[:n]) // n == 0 gives the zero Addr
	r.b = r.b[n:]
	return a
}

// exchangeMsg is a decoded exchange message.
type exchangeMsg struct {
	origin     string
	epoch, seq uint64
	payload    []byte
}

// newer reports whether m comes after an export of its origin with the
// given epoch and seq: a later epoch (a restart), or the same with a
// higher seq.
func (m exchangeMsg) newer(epoch, seq uint64) bool {
	return m.epoch > epoch || m.epoch == epoch && m.seq > seq
}

// encodeExchange frames an export of origin's.
func encodeExchange(origin string, epoch, seq uint64, payload []byte) []byte {
	b := make([]byte, 0, 2+binary.MaxVarintLen64*3+len(origin)+len(payload))
	b = append(b, msgExchange, wireVersion)
	b = appendString(b, origin)
	b = binary.AppendUvarint(b, epoch)
	b = binary.AppendUvarint(b, seq)
	return append(b, payload...)
}

// decodeExchange parses an exchange message. The payload aliases b, and
// may be longer than maxExchangeBytes: the caller checks, and copies what
// it keeps.
func decodeExchange(b []byte) (exchangeMsg, error) {
	switch {
	case len(b) < 2:
		return exchangeMsg{}, fmt.Errorf("gossip: decode exchange: %w", errTruncated)
	case b[0] != msgExchange:
		return exchangeMsg{}, fmt.Errorf("gossip: decode exchange: message type %d", b[0])
	case b[1] != wireVersion:
		return exchangeMsg{}, fmt.Errorf("gossip: decode exchange: unsupported format version %d (this node speaks %d)", b[1], wireVersion)
	}
	r := reader{b: b[2:]}
	m := exchangeMsg{origin: r.string("origin", maxOrigin)}
	m.epoch = r.uvarint()
	m.seq = r.uvarint()
	if r.err == nil && m.origin == "" {
		r.err = errors.New("empty origin")
	}
	if r.err != nil {
		return exchangeMsg{}, fmt.Errorf("gossip: decode exchange: %w", r.err)
	}
	m.payload = r.b
	return m, nil
}
