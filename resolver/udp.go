package resolver

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"time"

	"github.com/miekg/dns"
)

// maxUDPPacket is the largest datagram read or written.
const maxUDPPacket = 65535

// serveUDP reads and answers queries on one socket until it is closed. Each
// socket has its own goroutine and buffers; the kernel spreads clients over
// the sockets (SO_REUSEPORT).
func (s *Server) serveUDP(conn *net.UDPConn) {
	in := make([]byte, maxUDPPacket)
	out := make([]byte, maxUDPPacket)
	var snt sent
	for {
		n, from, err := conn.ReadFromUDPAddrPort(in)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		start := time.Now()
		if m := s.respondUDP(in[:n], out, from.Addr().Unmap(), &snt); m > 0 {
			if _, err := conn.WriteToUDPAddrPort(out[:m], from); err == nil {
				snt.record()
			}
			s.opts.Metrics.duration[protoUDP].Observe(time.Since(start).Seconds())
		}
	}
}

// respondUDP writes the response to the query in pkt into out and returns
// its length, or 0 to send nothing, and notes in snt what to record once
// it is sent. It first tries the allocation-free fast path, then the
// general one.
func (s *Server) respondUDP(pkt, out []byte, source netip.Addr, snt *sent) int {
	t := s.table.Load()
	if n, qtype, rcode := t.fastAnswer(pkt, out, source, s.rnd, snt); n > 0 {
		s.opts.Metrics.query(protoUDP, qtype)
		s.opts.Metrics.response(protoUDP, rcode)
		return n
	}
	return s.slowUDP(t, pkt, out, source, snt)
}

// slowUDP answers through miekg/dns messages: every case the fast path
// leaves (EDNS options, CNAME chains, ANY, errors, truncation). A response
// sent with TC set records nothing (see AnswerRecorder).
func (s *Server) slowUDP(t *table, pkt, out []byte, source netip.Addr, snt *sent) int {
	snt.reset(t, source)
	req := new(dns.Msg)
	if err := req.Unpack(pkt); err != nil {
		s.opts.Metrics.dropped.Inc()
		return formErr(pkt, out)
	}
	s.opts.Metrics.query(protoUDP, qtypeOf(req))
	resp := t.answer(req, source, s.rnd, snt)
	if resp == nil {
		s.opts.Metrics.dropped.Inc()
		return 0
	}
	resp.Truncate(udpLimit(req, t.udp))
	resp.Compress = true
	if resp.Truncated {
		s.opts.Metrics.truncated.Inc()
		snt.n = 0 // discarded by the client, which asks again over TCP
	}
	b, err := resp.PackBuffer(out)
	if err != nil {
		snt.n = 0
		return 0
	}
	s.opts.Metrics.response(protoUDP, resp.Rcode)
	return len(b)
}

// udpLimit is the largest UDP response the client accepts and we send:
// 512 without EDNS, else the smaller of its payload size and ours.
func udpLimit(req *dns.Msg, ours uint16) int {
	opt := req.IsEdns0()
	if opt == nil {
		return dns.MinMsgSize
	}
	return max(dns.MinMsgSize, int(min(opt.UDPSize(), ours)))
}

// formErr answers a packet that does not parse with a bare FORMERR header,
// if the packet at least has a query header; otherwise nothing.
func formErr(pkt, out []byte) int {
	if len(pkt) < headerLen || pkt[2]&0x80 != 0 {
		return 0
	}
	copy(out[:2], pkt[:2])
	out[2] = 0x80 | pkt[2]&0x79 // QR, the query's opcode and RD
	out[3] = dns.RcodeFormatError
	clear(out[4:headerLen])
	return headerLen
}

// headerLen is the size of a DNS message header.
const headerLen = 12

// be16 reads a big-endian uint16.
func be16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }
