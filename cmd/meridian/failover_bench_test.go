package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/miekg/dns"

	"meridian/internal/certtest"
)

// Failover figures. BenchmarkFailoverRemoval runs serve in-process with an
// mTLS https check (interval 1 s, timeout 500 ms, fall 2, rise 1) over two
// backends, and 20 times: stops one backend (its port then refuses), polls
// the DNS server every 10 ms until the answers exclude it, and restarts it.
// Each stop comes at a random point of the probe cycle (a seeded random wait
// of up to one interval after the restarted backend is back, which happens
// just after a probe): the removal time is then the wait for the next probe
// (0 to 1 s) plus one more interval, 1 to 2 s plus jitter (5%) and
// processing. It ignores b.N; run it once:
//
//	go test -run '^$' -bench FailoverRemoval -benchtime 1x ./cmd/meridian
const (
	failoverTrials   = 20
	failoverPoll     = 10 * time.Millisecond
	failoverDeadline = 10 * time.Second // per wait; the benchmark fails past it
)

func BenchmarkFailoverRemoval(b *testing.B) {
	ca := certtest.New(b)
	port := failoverFreePort(b)
	keep := &failoverBackend{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), conf: ca.ServerTLS(b, "127.0.0.1", "127.0.0.2")}
	victim := &failoverBackend{addr: net.JoinHostPort("127.0.0.2", strconv.Itoa(port)), conf: keep.conf}
	for _, be := range []*failoverBackend{keep, victim} {
		be.start(b)
		b.Cleanup(be.stop)
	}
	dnsPort, httpPort := failoverFreePort(b), failoverFreePort(b)
	failoverServe(b, failoverConfig(b, ca, port, dnsPort, httpPort), httpPort)

	server := net.JoinHostPort("127.0.0.1", strconv.Itoa(dnsPort))
	both, one := []string{"127.0.0.1", "127.0.0.2"}, []string{"127.0.0.1"}
	failoverWait(b, server, both, "both backends up")
	var took []time.Duration
	phase := rand.New(rand.NewPCG(1, 2))
	b.ResetTimer()
	for range failoverTrials {
		time.Sleep(time.Duration(phase.Int64N(int64(time.Second))))
		victim.stop()
		took = append(took, failoverWait(b, server, one, "the stopped backend removed"))
		victim.start(b)
		failoverWait(b, server, both, "the restarted backend back")
	}
	b.StopTimer()
	slices.Sort(took)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(took[len(took)/2]), "p50-ms")
	b.ReportMetric(ms(took[len(took)-1]), "max-ms")
	b.ReportMetric(ms(took[0]), "min-ms")
	b.Logf("removal times, sorted: %v", took)
}

// failoverBackend is an HTTPS server demanding client certificates,
// listening on addr; stop and start take it down and bring it back.
type failoverBackend struct {
	addr string
	conf *tls.Config
	srv  *http.Server
}

func (be *failoverBackend) start(b *testing.B) {
	b.Helper()
	var l net.Listener
	var err error
	for range 50 { // the port may linger briefly after stop
		if l, err = tls.Listen("tcp", be.addr, be.conf); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		b.Fatalf("backend %s: %v", be.addr, err)
	}
	be.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })}
	go be.srv.Serve(l)
}

func (be *failoverBackend) stop() { be.srv.Close() }

// failoverConfig writes the configuration and returns its path.
func failoverConfig(b *testing.B, ca *certtest.CA, port, dnsPort, httpPort int) string {
	b.Helper()
	caFile, certFile, keyFile := ca.ClientFiles(b, "probe")
	file := filepath.Join(b.TempDir(), "config.toml")
	twoBackendConfig{name: "failover", region: "r1", interval: "1s", timeout: "500ms",
		dnsPort: dnsPort, httpPort: httpPort, backendPort: port, ca: caFile, cert: certFile, key: keyFile}.write(b, file)
	return file
}

// failoverServe runs `meridian serve -config file` in-process until the
// benchmark ends, and waits until it is ready.
func failoverServe(b *testing.B, file string, httpPort int) {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuffer{}
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"serve", "-config", file}, logs, logs) }()
	b.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			b.Errorf("serve exited %d; log:\n%s", code, logs)
		}
	})
	url := fmt.Sprintf("http://127.0.0.1:%d/readyz", httpPort)
	for deadline := time.Now().Add(failoverDeadline); ; time.Sleep(20 * time.Millisecond) {
		select {
		case code := <-done:
			b.Fatalf("serve exited %d before ready; log:\n%s", code, logs)
		default:
		}
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("serve not ready; log:\n%s", logs)
		}
	}
}

// failoverWait asks server for api.example.test's A records every
// failoverPoll until they are want (sorted), and returns how long that took.
func failoverWait(b *testing.B, server string, want []string, what string) time.Duration {
	b.Helper()
	c := &dns.Client{Net: "udp", Timeout: 500 * time.Millisecond}
	q := new(dns.Msg).SetQuestion("api.example.test.", dns.TypeA)
	start := time.Now()
	var got []string
	for time.Since(start) < failoverDeadline {
		got = got[:0]
		if r, _, err := c.Exchange(q, server); err == nil {
			for _, rr := range r.Answer {
				if a, ok := rr.(*dns.A); ok {
					got = append(got, a.A.String())
				}
			}
		}
		slices.Sort(got)
		if slices.Equal(got, want) {
			return time.Since(start)
		}
		time.Sleep(failoverPoll)
	}
	b.Fatalf("%s: answers %v, not %v within %v", what, got, want, failoverDeadline)
	return 0
}

// failoverFreePort returns a port free for both UDP and TCP on 127.0.0.1.
func failoverFreePort(b *testing.B) int {
	b.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	b.Fatal("no free port")
	return 0
}
