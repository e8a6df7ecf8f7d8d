package delegation

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// maxQueries bounds the queries of one check, walk included.
const maxQueries = 2000

// ednsSize is the UDP payload size the checker advertises (DNS flag day 2020).
const ednsSize = 1232

// reply is a server's answer and how it came.
type reply struct {
	msg       *dns.Msg
	transport string // udp or tcp
	rtt       time.Duration
}

// queryError says why a server gave no answer, with a closed-set class.
type queryError struct {
	class string // timeout, no-listener, unreachable, budget, deadline, error
	text  string
	err   error
}

func (e *queryError) Error() string { return e.text }
func (e *queryError) Unwrap() error { return e.err }

// errClass returns the class of err (error if it is not a queryError).
func errClass(err error) string {
	var qe *queryError
	if errors.As(err, &qe) {
		return qe.class
	}
	return "error"
}

// exchange asks addr for name/qtype without recursion, with EDNS0. Over
// UDP it tries opts.Tries times when there is no answer; a truncated
// answer is asked again over TCP.
func (c *checker) exchange(ctx context.Context, addr netip.AddrPort, name string, qtype uint16) (reply, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = false
	m.SetEdns0(ednsSize, false)
	var err error
	for try := 0; try < c.opts.Tries; try++ {
		var r reply
		r, err = c.exchangeOver(ctx, "udp", addr, m)
		if err == nil && r.msg.Truncated {
			return c.exchangeOver(ctx, "tcp", addr, m)
		}
		if err == nil || errClass(err) != "timeout" {
			return r, err
		}
	}
	return reply{}, err
}

// exchangeOver sends m once over net ("udp" or "tcp") and checks that the
// reply answers it.
func (c *checker) exchangeOver(ctx context.Context, network string, addr netip.AddrPort, m *dns.Msg) (reply, error) {
	if c.queries.Add(1) > maxQueries {
		return reply{}, &queryError{class: "budget", text: fmt.Sprintf("more than %d queries: gave up", maxQueries)}
	}
	cl := &dns.Client{Net: network, Timeout: c.opts.QueryTimeout, UDPSize: ednsSize}
	q := m.Copy()
	q.Id = dns.Id()
	resp, rtt, err := cl.ExchangeContext(ctx, q, addr.String())
	if err != nil {
		return reply{}, c.queryErr(ctx, network, addr, err)
	}
	if len(resp.Question) != 1 || !strings.EqualFold(resp.Question[0].Name, q.Question[0].Name) || resp.Question[0].Qtype != q.Question[0].Qtype {
		return reply{}, &queryError{class: "error", text: fmt.Sprintf("answered another question (%v)", resp.Question)}
	}
	return reply{msg: resp, transport: network, rtt: rtt}, nil
}

// queryErr describes a failed exchange in plain words.
func (c *checker) queryErr(ctx context.Context, network string, addr netip.AddrPort, err error) error {
	var ne net.Error
	switch {
	case expired(ctx):
		return &queryError{class: "deadline", text: fmt.Sprintf("the check's time limit (%s) ran out", c.opts.Timeout), err: err}
	case errors.Is(err, syscall.ECONNREFUSED):
		return &queryError{class: "no-listener", text: fmt.Sprintf("connection refused: nothing listens on %s port %d", network, addr.Port()), err: err}
	case errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.EADDRNOTAVAIL):
		return &queryError{class: "unreachable", text: "no route to it from here", err: err}
	case errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		tries := ""
		if network == "udp" {
			tries = fmt.Sprintf(", %d tries", c.opts.Tries)
		}
		return &queryError{class: "timeout", text: fmt.Sprintf("no answer over %s within %s%s", network, c.opts.QueryTimeout, tries), err: err}
	}
	return &queryError{class: "error", text: fmt.Sprintf("%s query failed: %v", network, err), err: err}
}

// expired reports whether ctx has ended or its deadline has passed (its
// timer may not have fired yet when a socket deadline set from it has).
func expired(ctx context.Context) bool {
	d, ok := ctx.Deadline()
	return ctx.Err() != nil || ok && !time.Now().Before(d)
}

// parallel runs f(0..n-1) with at most limit at once and waits for all.
func parallel(n, limit int, f func(i int)) {
	sem := make(chan struct{}, limit)
	done := make(chan struct{}, n)
	for i := range n {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; done <- struct{}{} }()
			f(i)
		}()
	}
	for range n {
		<-done
	}
}
