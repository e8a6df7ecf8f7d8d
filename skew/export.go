package skew

// The export: one node's state for the windows of the last hour, as peers
// receive it.
//
//	export   = "MSKW" version:byte node:string at:varint window:uvarint
//	           ringstart:varint dropped:uvarint late:uvarint invalid:uvarint
//	           truncated:byte
//	           nsvc:uvarint service*nsvc nhealth:uvarint health*nhealth
//	           nwin:uvarint window*nwin
//	service  = name:string policy:string ttl:uvarint nend:uvarint endpoint*nend
//	endpoint = name:string region:string weight:f64 capacity:f64 priority:varint
//	health   = Δat:varint svc:uvarint end:uvarint up:byte weight:f64
//	window   = start:varint (svcwin)*nsvc
//	svcwin   = 0:byte (nothing recorded) | 1:byte total:uvarint unverified:uvarint
//	           admissions:uvarint evictions:uvarint dropped:uvarint
//	           (answers answer-seconds ecs unverified :uvarint)*nend
//	           (hll hll)*nend nseq:uvarint sequence*nseq
//	hll      = nnz:uvarint (Δindex:uvarint rank:byte)*nnz   when nnz < 128
//	         | 255:uvarint register*256                     otherwise
//	sequence = source:addr ecs:prefix nev:uvarint ev*nev
//	ev       = v:uvarint [mask:uvarint] [ttl:uvarint]
//	           v = Δms<<3 | first<<2 | sameMask<<1 | sameTTL; Δms from the
//	           window start for the first event, from the previous one after
//	addr     = len:byte (4 or 16) bytes;  prefix = 255:byte (none) | bits:byte addr
//	string   = len:uvarint (≤ 255) bytes; f64 = IEEE 754 bits, little endian
//
// Sequences are an identity's answers in time order (SKEW.md: delta-varint,
// about 3 bytes an answer when the endpoint and TTL repeat). An export is at
// most MaxExportBytes: when the full state would be larger, the sequences of
// the identities with the fewest answers are left out, window by window, and
// Truncated is set (the counters and sketches are always complete). Decode
// checks every length against what is left of the input before allocating,
// every index and mask against the services, every time against its window,
// and never panics (FuzzDecodeExport).

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"time"
	"unsafe"
)

// ExportVersion is the version byte this build writes and reads.
const ExportVersion = 1

// MaxExportBytes bounds an encoded export (below the gossip transport's
// 10 MiB frame).
const MaxExportBytes = 8 << 20

var exportMagic = []byte("MSKW")

// exportLimit is MaxExportBytes; tests lower it.
var exportLimit = MaxExportBytes

// Export is one node's recorded state, as decoded from a peer (or taken
// from this node for a report).
type Export struct {
	Node   string
	At     int64         // unix nanoseconds when exported
	Window time.Duration // the node's tumbling window
	// RingStart is the start of the oldest window the node still holds
	// (unix nanoseconds; 0 before its first answer): windows before it are
	// gone, not empty.
	RingStart int64
	Services  []Service     // the node's services (Logger-free Config.Services)
	Health    []HealthEvent // indexes into Services; in time order
	Windows   []Window      // oldest first
	Dropped   uint64        // node counters (Stats)
	Late      uint64
	Invalid   uint64
	Truncated bool // sequences were left out to fit MaxExportBytes
}

// Window is one tumbling window of an export.
type Window struct {
	Start    int64           // unix nanoseconds, a multiple of the window
	Services []ServiceWindow // parallel to Export.Services
}

// ServiceWindow is what one node recorded for one service in one window.
// The per-endpoint slices have one element per endpoint of the service, or
// are all nil when nothing was recorded (Total is then 0).
type ServiceWindow struct {
	Total             uint64   // answers
	UnverifiedTotal   uint64   // answers to identities the top-k did not hold
	Admissions        uint64   // identities admitted to the top-k
	Evictions         uint64   // identities evicted to make room
	EventsDropped     uint64   // answers to held identities not logged (budget)
	Answers           []uint64 // answers that carried the endpoint
	AnswerSeconds     []uint64 // Σ TTL of those answers
	ECSAnswers        []uint64 // those of them to queries with ECS
	UnverifiedAnswers []uint64 // those of them to identities not held
	Identities        []HLL    // distinct identities answered the endpoint
	Subnets           []HLL    // distinct ECS client /24s (IPv6: /48)
	Sequences         []Sequence
}

// empty reports whether nothing was recorded.
func (sw *ServiceWindow) empty() bool { return sw.Total == 0 && len(sw.Sequences) == 0 }

// Sequence is the answers one node sent one identity held by its top-k, in
// time order.
type Sequence struct {
	Source netip.Addr
	ECS    netip.Prefix // zero when the identity has none
	Events []Event
	key    uint64
}

// Event is one answer of a Sequence.
type Event struct {
	At        int64  // unix nanoseconds, millisecond precision
	Endpoints uint64 // endpoint bits (indexes in the exporting node's service)
	TTL       uint32
	First     bool // the node's first logged answer to the identity since it was admitted
}

// Export encodes this node's state for the windows of the last hour up to
// now (and the open window) for its peers; see the format above.
func (r *Recorder) Export(now int64) ([]byte, error) {
	x := r.snapshot(now, "")
	b, err := x.encode()
	if err != nil {
		return nil, fmt.Errorf("skew: export: %w", err)
	}
	return b, nil
}

// snapshot copies the state of the windows of the ring that start at or
// before now, for one service (or all when service is "").
func (r *Recorder) snapshot(now int64, service string) *Export {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.drainLocked()
	c := r.cfg.Load()
	s := r.st
	x := &Export{
		Node: c.cfg.Node, At: now, Window: time.Duration(c.window),
		Services: make([]Service, len(c.cfg.Services)),
		Dropped:  r.dropped.Load(), Late: s.late, Invalid: r.invalid.Load(),
		Health: slices.Clone(s.health),
	}
	for i, svc := range c.cfg.Services {
		x.Services[i] = Service{Name: svc.Name, Policy: svc.Policy, TTL: svc.TTL, Endpoints: slices.Clone(svc.Endpoints)}
	}
	if !s.started {
		return x
	}
	x.RingStart = (s.cur - ringWindows + 1) * s.window
	for idx := s.cur - ringWindows + 1; idx <= s.cur; idx++ {
		w := s.wins[((idx%ringWindows)+ringWindows)%ringWindows]
		if w == nil || w.idx != idx || idx*s.window > now {
			continue
		}
		xw := Window{Start: idx * s.window, Services: make([]ServiceWindow, len(c.cfg.Services))}
		for i, sw := range w.svcs {
			if service != "" && c.cfg.Services[i].Name != service {
				continue
			}
			xw.Services[i] = s.copySvcWin(sw, xw.Start, c.salts[i])
		}
		x.Windows = append(x.Windows, xw)
	}
	return x
}

// copySvcWin copies sw, grouping its events into sequences.
func (s *state) copySvcWin(sw *svcWin, start int64, salt uint64) ServiceWindow {
	if sw.total == 0 && len(sw.events) == 0 {
		return ServiceWindow{}
	}
	out := ServiceWindow{
		Total: sw.total, UnverifiedTotal: sw.unverTotal, Admissions: sw.admissions,
		Evictions: sw.evictions, EventsDropped: sw.eventsDropped,
		Answers: slices.Clone(sw.answers), AnswerSeconds: slices.Clone(sw.answerSeconds),
		ECSAnswers: slices.Clone(sw.ecs), UnverifiedAnswers: slices.Clone(sw.unverified),
		Identities: slices.Clone(sw.idents), Subnets: slices.Clone(sw.subnets),
	}
	ev := slices.Clone(sw.events)
	slices.SortStableFunc(ev, func(a, b event) int {
		if a.key != b.key {
			if a.key < b.key {
				return -1
			}
			return 1
		}
		return int(a.ms) - int(b.ms)
	})
	for i := 0; i < len(ev); {
		j := i
		for j < len(ev) && ev[j].key == ev[i].key {
			j++
		}
		m := s.metas[ev[i].key]
		seq := Sequence{Source: m.source(), ECS: m.subnet(), key: ev[i].key, Events: make([]Event, 0, j-i)}
		for _, e := range ev[i:j] {
			seq.Events = append(seq.Events, Event{
				At: start + int64(e.ms)*1e6, Endpoints: e.mask,
				TTL: e.ttl &^ firstFlag, First: e.ttl&firstFlag != 0,
			})
		}
		out.Sequences = append(out.Sequences, seq)
		i = j
	}
	return out
}

// encode writes x, leaving out the lightest sequences if it would exceed
// MaxExportBytes.
func (x *Export) encode() ([]byte, error) {
	if err := x.check(); err != nil {
		return nil, err
	}
	b := x.appendTo(nil, math.MaxInt)
	if len(b) <= exportLimit {
		return b, nil
	}
	most := 0
	for _, w := range x.Windows {
		for _, sw := range w.Services {
			most = max(most, len(sw.Sequences))
		}
	}
	for keep := most / 2; ; keep /= 2 {
		b = x.appendTo(nil, keep)
		if len(b) <= exportLimit {
			return b, nil
		}
		if keep == 0 {
			return nil, fmt.Errorf("%d bytes without any sequence: more than %d", len(b), exportLimit)
		}
	}
}

// check reports what of x the format cannot carry.
func (x *Export) check() error {
	switch {
	case len(x.Node) > maxName:
		return fmt.Errorf("node name longer than %d bytes", maxName)
	case len(x.Services) > maxServices:
		return fmt.Errorf("%d services, at most %d", len(x.Services), maxServices)
	case len(x.Windows) > maxExportWindows:
		return fmt.Errorf("%d windows, at most %d", len(x.Windows), maxExportWindows)
	}
	for _, s := range x.Services {
		if err := checkService(s); err != nil {
			return fmt.Errorf("service %q: %w", s.Name, err)
		}
		if len(s.Policy) > maxName {
			return fmt.Errorf("service %q: policy longer than %d bytes", s.Name, maxName)
		}
	}
	for _, w := range x.Windows {
		if len(w.Services) != len(x.Services) {
			return fmt.Errorf("window at %d has %d services, not %d", w.Start, len(w.Services), len(x.Services))
		}
	}
	return nil
}

// maxExportWindows bounds the windows of an export.
const maxExportWindows = 64

// appendTo encodes x, with at most keep sequences (the longest) per
// service window.
func (x *Export) appendTo(b []byte, keep int) []byte {
	b = append(b, exportMagic...)
	b = append(b, ExportVersion)
	b = appendString(b, x.Node)
	b = binary.AppendVarint(b, x.At)
	b = binary.AppendUvarint(b, uint64(x.Window))
	b = binary.AppendVarint(b, x.RingStart)
	b = binary.AppendUvarint(b, x.Dropped)
	b = binary.AppendUvarint(b, x.Late)
	b = binary.AppendUvarint(b, x.Invalid)
	truncated := x.Truncated
	for _, w := range x.Windows {
		for _, sw := range w.Services {
			truncated = truncated || len(sw.Sequences) > keep
		}
	}
	b = append(b, boolByte(truncated))
	b = binary.AppendUvarint(b, uint64(len(x.Services)))
	for _, s := range x.Services {
		b = appendString(b, s.Name)
		b = appendString(b, s.Policy)
		b = binary.AppendUvarint(b, uint64(s.TTL))
		b = binary.AppendUvarint(b, uint64(len(s.Endpoints)))
		for _, e := range s.Endpoints {
			b = appendString(b, e.Name)
			b = appendString(b, e.Region)
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(e.Weight))
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(e.Capacity))
			b = binary.AppendVarint(b, int64(e.Priority))
		}
	}
	health := x.Health
	b = binary.AppendUvarint(b, uint64(len(health)))
	var prev int64
	for _, h := range health {
		b = binary.AppendVarint(b, h.At-prev)
		prev = h.At
		b = binary.AppendUvarint(b, uint64(h.Service))
		b = binary.AppendUvarint(b, uint64(h.Endpoint))
		b = append(b, boolByte(h.Up))
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(h.Weight))
	}
	b = binary.AppendUvarint(b, uint64(len(x.Windows)))
	for _, w := range x.Windows {
		b = binary.AppendVarint(b, w.Start)
		for i := range w.Services {
			b = appendSvcWin(b, &w.Services[i], w.Start, keep)
		}
	}
	return b
}

func appendSvcWin(b []byte, sw *ServiceWindow, start int64, keep int) []byte {
	if sw.empty() {
		return append(b, 0)
	}
	b = append(b, 1)
	for _, v := range []uint64{sw.Total, sw.UnverifiedTotal, sw.Admissions, sw.Evictions, sw.EventsDropped} {
		b = binary.AppendUvarint(b, v)
	}
	for e := range sw.Answers {
		b = binary.AppendUvarint(b, sw.Answers[e])
		b = binary.AppendUvarint(b, sw.AnswerSeconds[e])
		b = binary.AppendUvarint(b, sw.ECSAnswers[e])
		b = binary.AppendUvarint(b, sw.UnverifiedAnswers[e])
	}
	for e := range sw.Answers {
		b = appendHLL(b, &sw.Identities[e])
		b = appendHLL(b, &sw.Subnets[e])
	}
	seqs := sw.Sequences
	if len(seqs) > keep {
		seqs = slices.Clone(seqs)
		slices.SortStableFunc(seqs, func(a, b Sequence) int { return len(b.Events) - len(a.Events) })
		seqs = seqs[:keep]
	}
	b = binary.AppendUvarint(b, uint64(len(seqs)))
	for _, s := range seqs {
		b = appendAddr(b, s.Source)
		if !s.ECS.IsValid() {
			b = append(b, 255)
		} else {
			b = append(b, byte(s.ECS.Bits()))
			b = appendAddr(b, s.ECS.Addr())
		}
		b = binary.AppendUvarint(b, uint64(len(s.Events)))
		prev, mask, ttl := start, uint64(0), uint32(0)
		for i, e := range s.Events {
			dms := uint64(e.At-prev) / 1e6
			v := dms << 3
			if e.First {
				v |= 4
			}
			same := i > 0 && e.Endpoints == mask
			if same {
				v |= 2
			}
			sameTTL := i > 0 && e.TTL == ttl
			if sameTTL {
				v |= 1
			}
			b = binary.AppendUvarint(b, v)
			if !same {
				b = binary.AppendUvarint(b, e.Endpoints)
			}
			if !sameTTL {
				b = binary.AppendUvarint(b, uint64(e.TTL))
			}
			prev, mask, ttl = e.At, e.Endpoints, e.TTL
		}
	}
	return b
}

func appendHLL(b []byte, h *HLL) []byte {
	nnz := 0
	for _, v := range h {
		if v != 0 {
			nnz++
		}
	}
	if nnz >= 128 {
		b = binary.AppendUvarint(b, 255)
		return append(b, h[:]...)
	}
	b = binary.AppendUvarint(b, uint64(nnz))
	last := 0
	for i, v := range h {
		if v != 0 {
			b = binary.AppendUvarint(b, uint64(i-last))
			b = append(b, v)
			last = i
		}
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendAddr(b []byte, a netip.Addr) []byte {
	if a.Is4() {
		v := a.As4()
		return append(append(b, 4), v[:]...)
	}
	v := a.As16()
	return append(append(b, 16), v[:]...)
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

// errTruncated reports an export that ends inside a field.
var errTruncated = errors.New("export truncated")

// decodeBudget bounds the memory a decoded export may take: without it a
// few megabytes of small, valid-looking items (empty-but-present service
// windows, one-register sketches, one-byte events) could make the decoder
// allocate gigabytes.
const decodeBudget = 64 << 20

// decoder reads the export format; the first error sticks.
type decoder struct {
	b     []byte
	err   error
	spent int // bytes of decoded structures allocated so far
}

// charge accounts for n bytes about to be allocated; false (and an error)
// when the budget is exhausted.
func (d *decoder) charge(n int) bool {
	if d.err != nil {
		return false
	}
	d.spent += n
	if d.spent > decodeBudget {
		d.fail("decoded export would take more than %d bytes", decodeBudget)
		return false
	}
	return true
}

func (d *decoder) fail(format string, a ...any) {
	if d.err == nil {
		d.err = fmt.Errorf(format, a...)
	}
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.err = errTruncated
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errTruncated
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errTruncated
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a count of items each at least minLen bytes long, bounded by
// limit and by what is left.
func (d *decoder) count(what string, limit, minLen int) int {
	n := d.uvarint()
	if d.err != nil {
		return 0
	}
	if n > uint64(limit) || n*uint64(minLen) > uint64(len(d.b)) {
		d.fail("%s: count %d is more than %d or than the %d bytes left hold", what, n, limit, len(d.b))
		return 0
	}
	return int(n)
}

func (d *decoder) bytes(n int) []byte {
	if d.err != nil {
		return nil
	}
	if len(d.b) < n {
		d.err = errTruncated
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) string(what string) string {
	n := d.uvarint()
	if d.err == nil && n > maxName {
		d.fail("%s: %d bytes, at most %d", what, n, maxName)
	}
	return string(d.bytes(int(n)))
}

func (d *decoder) float(what string) float64 {
	b := d.bytes(8)
	if d.err != nil {
		return 0
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(b))
	if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		d.fail("%s: %v is not a non-negative number", what, v)
	}
	return v
}

func (d *decoder) addr(what string) netip.Addr {
	n := d.byte()
	if d.err != nil {
		return netip.Addr{}
	}
	switch n {
	case 4:
		return netip.AddrFrom4([4]byte(d.bytes4()))
	case 16:
		b := d.bytes(16)
		if d.err != nil {
			return netip.Addr{}
		}
		return netip.AddrFrom16([16]byte(b))
	}
	d.fail("%s: address length %d is not 4 or 16", what, n)
	return netip.Addr{}
}

func (d *decoder) bytes4() []byte {
	b := d.bytes(4)
	if b == nil {
		return make([]byte, 4)
	}
	return b
}

// DecodeExport decodes and validates an export. It never panics; any
// malformed, truncated or out-of-bounds input is an error that says where.
func DecodeExport(b []byte) (*Export, error) {
	x, err := decodeExport(b)
	if err != nil {
		return nil, fmt.Errorf("skew: decode export: %w", err)
	}
	return x, nil
}

func decodeExport(b []byte) (*Export, error) {
	if len(b) > MaxExportBytes {
		return nil, fmt.Errorf("%d bytes, more than %d", len(b), MaxExportBytes)
	}
	if !bytes.HasPrefix(b, exportMagic) {
		return nil, errors.New("not a skew export (bad magic)")
	}
	d := &decoder{b: b[len(exportMagic):]}
	if v := d.byte(); d.err == nil && v != ExportVersion {
		return nil, fmt.Errorf("version %d, this build reads %d", v, ExportVersion)
	}
	x := &Export{}
	x.Node = d.string("node")
	x.At = d.varint()
	win := d.uvarint()
	if d.err == nil && (win < uint64(time.Second) || win > uint64(2*time.Hour)) {
		d.fail("window %d ns is outside 1s..2h", win)
	}
	x.Window = time.Duration(win)
	x.RingStart = d.varint()
	if d.err == nil && win != 0 && x.RingStart%int64(win) != 0 {
		d.fail("ring start %d is not a multiple of the window", x.RingStart)
	}
	x.Dropped, x.Late, x.Invalid = d.uvarint(), d.uvarint(), d.uvarint()
	switch t := d.byte(); t {
	case 0, 1:
		x.Truncated = t == 1
	default:
		d.fail("truncated flag %d is not 0 or 1", t)
	}
	d.services(x)
	d.health(x)
	d.windows(x)
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%d bytes after the last window", len(d.b))
	}
	return x, nil
}

func (d *decoder) services(x *Export) {
	n := d.count("services", maxServices, 4)
	x.Services = make([]Service, 0, n)
	names := map[string]bool{}
	for i := 0; i < n && d.err == nil; i++ {
		s := Service{Name: d.string("service name"), Policy: d.string("policy")}
		ttl := d.uvarint()
		if ttl > math.MaxUint32 {
			d.fail("service %q: ttl %d out of range", s.Name, ttl)
		}
		s.TTL = uint32(ttl)
		ne := d.count("endpoints", maxEndpoints, 19)
		for j := 0; j < ne && d.err == nil; j++ {
			e := Endpoint{Name: d.string("endpoint name"), Region: d.string("region")}
			e.Weight, e.Capacity = d.float("weight"), d.float("capacity")
			p := d.varint()
			if p < math.MinInt32 || p > math.MaxInt32 {
				d.fail("endpoint %q: priority %d out of range", e.Name, p)
			}
			e.Priority = int(p)
			s.Endpoints = append(s.Endpoints, e)
		}
		if d.err != nil {
			return
		}
		if err := checkService(s); err != nil {
			d.fail("service %d: %v", i, err)
		}
		if names[s.Name] {
			d.fail("service %q is listed twice", s.Name)
		}
		names[s.Name] = true
		x.Services = append(x.Services, s)
	}
}

func (d *decoder) health(x *Export) {
	n := d.count("health events", maxHealth, 12)
	var at int64
	for i := 0; i < n && d.err == nil; i++ {
		delta := d.varint()
		if delta < 0 && i > 0 {
			d.fail("health event %d goes back in time", i)
		}
		at += delta
		s, e := d.uvarint(), d.uvarint()
		up := d.byte()
		w := d.float("health weight")
		if d.err != nil {
			return
		}
		if s >= uint64(len(x.Services)) || e >= uint64(len(x.Services[s].Endpoints)) || up > 1 {
			d.fail("health event %d: service %d endpoint %d up %d out of range", i, s, e, up)
			return
		}
		x.Health = append(x.Health, HealthEvent{At: at, Service: int(s), Endpoint: int(e), Up: up == 1, Weight: w})
	}
}

func (d *decoder) windows(x *Export) {
	n := d.count("windows", maxExportWindows, 1)
	win := int64(x.Window)
	salts := make([]uint64, len(x.Services))
	for i, s := range x.Services {
		salts[i] = serviceSalt(s.Name)
	}
	for i := 0; i < n && d.err == nil; i++ {
		w := Window{Start: d.varint()}
		if d.err != nil {
			return
		}
		if w.Start%win != 0 || w.Start > math.MaxInt64-win {
			d.fail("window %d: start %d is not a multiple of the window", i, w.Start)
			return
		}
		if i > 0 && w.Start <= x.Windows[i-1].Start {
			d.fail("window %d: start %d is not after the previous window", i, w.Start)
			return
		}
		w.Services = make([]ServiceWindow, len(x.Services))
		for j, s := range x.Services {
			d.svcWin(&w.Services[j], len(s.Endpoints), w.Start, win, salts[j])
		}
		x.Windows = append(x.Windows, w)
	}
}

func (d *decoder) svcWin(sw *ServiceWindow, ne int, start, win int64, salt uint64) {
	switch d.byte() {
	case 0:
		return // nothing recorded: the zero ServiceWindow
	case 1:
	default:
		d.fail("service window flag is not 0 or 1")
		return
	}
	sw.Total, sw.UnverifiedTotal, sw.Admissions = d.uvarint(), d.uvarint(), d.uvarint()
	sw.Evictions, sw.EventsDropped = d.uvarint(), d.uvarint()
	if d.err != nil {
		return
	}
	if len(d.b) < ne*4 {
		d.err = errTruncated
		return
	}
	if !d.charge(ne * (4*8 + 2*hllM)) {
		return
	}
	sw.Answers, sw.AnswerSeconds = make([]uint64, ne), make([]uint64, ne)
	sw.ECSAnswers, sw.UnverifiedAnswers = make([]uint64, ne), make([]uint64, ne)
	for e := 0; e < ne; e++ {
		sw.Answers[e], sw.AnswerSeconds[e] = d.uvarint(), d.uvarint()
		sw.ECSAnswers[e], sw.UnverifiedAnswers[e] = d.uvarint(), d.uvarint()
		if d.err == nil && (sw.ECSAnswers[e] > sw.Answers[e] || sw.UnverifiedAnswers[e] > sw.Answers[e] || sw.Answers[e] > sw.Total) {
			d.fail("endpoint %d: counts %d answers, %d with ECS, %d unverified of %d in all are inconsistent",
				e, sw.Answers[e], sw.ECSAnswers[e], sw.UnverifiedAnswers[e], sw.Total)
		}
	}
	sw.Identities, sw.Subnets = make([]HLL, ne), make([]HLL, ne)
	for e := 0; e < ne && d.err == nil; e++ {
		d.hll(&sw.Identities[e])
		d.hll(&sw.Subnets[e])
	}
	n := d.count("sequences", math.MaxInt32, 4)
	var all uint64
	if ne < 64 {
		all = 1<<ne - 1
	} else {
		all = math.MaxUint64
	}
	for i := 0; i < n && d.err == nil; i++ {
		s := Sequence{Source: d.addr("source")}
		switch bitsLen := d.byte(); {
		case d.err != nil:
		case bitsLen == 255:
		default:
			a := d.addr("ecs")
			if d.err == nil && int(bitsLen) > a.BitLen() {
				d.fail("ecs prefix length %d is too long for %s", bitsLen, a)
			}
			s.ECS = netip.PrefixFrom(a, int(bitsLen)).Masked()
		}
		ev := d.count("events", math.MaxInt32, 1)
		if !d.charge(64 + ev*int(unsafe.Sizeof(Event{}))) {
			return
		}
		s.Events = make([]Event, 0, ev)
		at, mask, ttl := start, uint64(0), uint32(0)
		for k := 0; k < ev && d.err == nil; k++ {
			v := d.uvarint()
			dms := v >> 3
			if dms > uint64(win/1e6) {
				d.fail("sequence %d event %d: %d ms after the previous is past the window", i, k, dms)
				return
			}
			at += int64(dms) * 1e6
			if k == 0 && v&2 != 0 || k == 0 && v&1 != 0 {
				d.fail("sequence %d: first event repeats a previous one", i)
				return
			}
			if v&2 == 0 {
				mask = d.uvarint()
			}
			if v&1 == 0 {
				t := d.uvarint()
				if t >= firstFlag {
					d.fail("sequence %d event %d: ttl %d out of range", i, k, t)
				}
				ttl = uint32(t)
			}
			if d.err != nil {
				return
			}
			if mask == 0 || mask&^all != 0 {
				d.fail("sequence %d event %d: endpoint bits %#x do not fit %d endpoints", i, k, mask, ne)
				return
			}
			if at >= start+win {
				d.fail("sequence %d event %d: time is past the window", i, k)
				return
			}
			s.Events = append(s.Events, Event{At: at, Endpoints: mask, TTL: ttl, First: v&4 != 0})
		}
		if d.err != nil {
			return
		}
		if !s.Source.IsValid() {
			d.fail("sequence %d has no source", i)
			return
		}
		s.key = identityKey(s.Source, salt, s.ECS)
		sw.Sequences = append(sw.Sequences, s)
	}
}

func (d *decoder) hll(h *HLL) {
	n := d.uvarint()
	if d.err != nil {
		return
	}
	if n == 255 {
		copy(h[:], d.bytes(hllM))
	} else {
		if n >= 128 {
			d.fail("sketch: %d registers listed, sparse form holds at most 127", n)
			return
		}
		idx := uint64(0)
		for i := uint64(0); i < n && d.err == nil; i++ {
			delta := d.uvarint()
			if i > 0 && delta == 0 {
				d.fail("sketch: register listed twice")
				return
			}
			idx += delta
			v := d.byte()
			if d.err == nil && (idx >= hllM || v == 0) {
				d.fail("sketch: register %d = %d out of range", idx, v)
				return
			}
			h[idx%hllM] = v
		}
	}
	for _, v := range h {
		if v > 64-hllP+1 {
			d.fail("sketch: register %d is larger than %d", v, 64-hllP+1)
			return
		}
	}
}
