package probe

// Figures for probing many mutual-TLS targets: the CPU and memory a node
// spends to probe 1,000 https targets once a second, with and without TLS
// session resumption. They are benchmarks, not tests: run them alone on an
// idle machine, without -race, e.g.
//
//	go test -run '^$' -bench 'Probe' -benchtime 1x -count 2 ./probe
//
// BenchmarkScheduler1000HTTPS serves the targets from a child process (this
// test binary re-run as TestBenchServers), so that getrusage(RUSAGE_SELF)
// counts only the prober; the child's CPU is read from /proc and reported
// separately.

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"meridian/config"
	"meridian/internal/certtest"
)

const (
	benchTargets = 1000
	benchWarmup  = 5 * time.Second  // the first full handshakes, spread over an interval
	benchWindow  = 30 * time.Second // measured: one fullHandshakeEvery, so one full handshake per target
	benchServers = "MERIDIAN_BENCH_SERVERS"
	benchName    = "bench.meridian.test" // the servers' certificate name: server_name of the check
)

// benchProtos are the HTTP versions the backends offer.
var benchProtos = []string{"h2", "http1.1"}

// BenchmarkProbeHTTPS measures one https probe against an in-process mTLS
// server, with a full handshake every time and with a resumed session:
// cpu-us/op is the process's CPU (prober and server) per probe.
func BenchmarkProbeHTTPS(b *testing.B) {
	for _, proto := range benchProtos {
		for _, resume := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/resume=%v", proto, resume), func(b *testing.B) {
				ca := certtest.New(b)
				srv := startHTTPS(b, ca.ServerTLS(b), proto == "h2", okHandler)
				s := newSpec(b, httpsCheck(), clientFiles(b, ca, ca, "probe"))
				if !resume {
					s.sessions = nil
				}
				tg := targetOf(b, srv.Listener.Addr())
				wantReason(b, run(s, tg), ReasonOK) // the first full handshake
				b.ReportAllocs()
				cpu := benchCPU()
				b.ResetTimer()
				for b.Loop() {
					if r := run(s, tg); !r.OK {
						b.Fatalf("probe failed: %s %s", r.Reason, r.Detail)
					}
				}
				b.StopTimer()
				b.ReportMetric(float64((benchCPU()-cpu).Microseconds())/float64(b.N), "cpu-us/op")
			})
		}
	}
}

// TestHTTPSProbeRetainsNoMemory guards the memory figure below: probes
// that have returned keep nothing alive (x/net's http2 once kept each
// unpooled connection for 5 s after it closed, 100 MB at 1,000 probes/s).
func TestHTTPSProbeRetainsNoMemory(t *testing.T) {
	const probes = 300
	ca := certtest.New(t)
	srv := startHTTPS(t, ca.ServerTLS(t), true, okHandler)
	s := newSpec(t, httpsCheck(), clientFiles(t, ca, ca, "probe"))
	tg := targetOf(t, srv.Listener.Addr())
	wantReason(t, run(s, tg), ReasonOK)
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	before := ms.HeapAlloc
	for range probes {
		wantReason(t, run(s, tg), ReasonOK)
	}
	runtime.GC()
	runtime.ReadMemStats(&ms)
	if kept := int64(ms.HeapAlloc) - int64(before); kept > 1<<20 {
		t.Errorf("%d h2 probes that returned keep %d kB of heap alive, want under 1 MB", probes, kept>>10)
	}
}

// BenchmarkScheduler1000HTTPS runs the real Scheduler over 1,000 https
// targets (1,000 listeners on 127.0.x.y, one port, in a child process), each
// demanding a client certificate, at a 1 s interval, and reports for the
// measured window: the prober's CPU seconds per second, the servers' (the
// child's), probes completed per second, failures, the share of resumed
// handshakes seen by the servers, and the prober's peak heap in use and RSS.
func BenchmarkScheduler1000HTTPS(b *testing.B) {
	for _, proto := range benchProtos {
		for _, resume := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/resume=%v", proto, resume), func(b *testing.B) {
				benchScheduler(b, proto, resume)
			})
		}
	}
}

func benchScheduler(b *testing.B, proto string, resume bool) {
	ca := certtest.New(b)
	caFile, certFile, keyFile := ca.ServerFiles(b, benchName)
	child := startBenchServers(b, strings.Join([]string{caFile, certFile, keyFile, proto}, ","))
	cfg := benchConfig(b, ca, child.port)

	obs := &benchObserver{}
	sched := NewScheduler(SchedulerOptions{Observer: obs})
	if err := sched.Update(cfg); err != nil {
		b.Fatal(err)
	}
	if !resume {
		for _, s := range sched.specs { // before Run: no probe reads it yet
			s.sessions = nil
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sched.Run(ctx) }()
	defer func() { cancel(); <-done }()

	time.Sleep(benchWarmup)
	b.ResetTimer()
	start, cpu, childCPU, oks, fails := time.Now(), benchCPU(), child.cpu(b), obs.ok.Load(), obs.fail.Load()
	total, hs := obs.total.Load(), obs.hs.Load()
	full, resumed := child.handshakes(b)
	var heap, rss uint64
	for range int(benchWindow / time.Second) {
		time.Sleep(time.Second)
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		heap, rss = max(heap, ms.HeapInuse), max(rss, benchRSS(b))
	}
	wall := time.Since(start).Seconds()
	b.ReportMetric(float64(runtime.NumGoroutine()), "goroutines")
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.HeapAlloc)/(1<<20), "live-heap-MiB")
	if f := os.Getenv("BENCH_HEAP_PROFILE"); f != "" {
		w, _ := os.Create(f)
		pprof.WriteHeapProfile(w)
		w.Close()
	}
	full2, resumed2 := child.handshakes(b)
	b.StopTimer()
	b.ReportMetric((benchCPU()-cpu).Seconds()/wall, "cpu-s/s")
	b.ReportMetric((child.cpu(b)-childCPU).Seconds()/wall, "server-cpu-s/s")
	b.ReportMetric(float64(obs.ok.Load()-oks)/wall, "probes-ok/s")
	b.ReportMetric(float64(obs.fail.Load()-fails)/wall, "probes-failed/s")
	if n := obs.ok.Load() - oks; n > 0 {
		b.ReportMetric(float64(obs.total.Load()-total)/float64(n)/1e6, "probe-ms")
		b.ReportMetric(float64(obs.hs.Load()-hs)/float64(n)/1e6, "handshake-ms")
	}
	if n := (full2 - full) + (resumed2 - resumed); n > 0 {
		b.ReportMetric(float64(resumed2-resumed)/float64(n), "resumed-share")
	}
	b.ReportMetric(float64(heap)/(1<<20), "heap-inuse-MiB")
	b.ReportMetric(float64(rss)/(1<<20), "rss-MiB")
	if reasons := obs.reasons(); len(reasons) > 0 {
		b.Logf("failures by reason (whole run): %v", reasons)
	}
}

// benchConfig is one https check on port with 1,000 endpoints, 127.0.0.1
// upwards, presenting a client certificate from ca.
func benchConfig(b *testing.B, ca *certtest.CA, port int) *config.Config {
	check := config.Check{Type: "https", Port: port, Path: "/healthz", ServerName: benchName,
		Rise: 2, Fall: 2, TLSFiles: clientFiles(b, ca, ca, "probe")}
	check.Interval.Duration, check.Timeout.Duration = time.Second, time.Second
	svc := config.Service{Name: "bench.example.test.", Check: "bench"}
	for i := range benchTargets {
		svc.Endpoints = append(svc.Endpoints, config.Endpoint{Name: strconv.Itoa(i), Check: "bench", Addr: benchAddr(i)})
	}
	return &config.Config{Checks: map[string]config.Check{"bench": check}, Services: []config.Service{svc}}
}

// benchAddr is the i-th loopback address: 127.0.0.1, ..., 127.0.0.250, 127.0.1.1, ...
func benchAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{127, 0, byte(i / 250), byte(i%250 + 1)})
}

// benchObserver counts results.
type benchObserver struct {
	ok, fail  atomic.Int64
	total, hs atomic.Int64 // sums of durations of successful probes and their handshakes
	mu        sync.Mutex
	byReason  map[Reason]int
}

func (o *benchObserver) Observe(_ Target, r Result) {
	if r.OK {
		o.ok.Add(1)
		o.total.Add(int64(r.Duration))
		o.hs.Add(int64(r.Phases.TLSHandshake))
		return
	}
	o.fail.Add(1)
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.byReason == nil {
		o.byReason = map[Reason]int{}
	}
	o.byReason[r.Reason]++
}

func (o *benchObserver) reasons() map[Reason]int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.byReason
}

// benchCPU returns the user and system CPU time of this process.
func benchCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchRSS returns this process's resident set size.
func benchRSS(b *testing.B) uint64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// benchChild is the server process.
type benchChild struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Scanner
	port int
}

// startBenchServers re-runs this test binary as TestBenchServers with spec
// (caFile,certFile,keyFile,proto) and waits for its port. It stops when its
// stdin closes, at cleanup.
func startBenchServers(b *testing.B, spec string) *benchChild {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestBenchServers$", "-test.count=1", "-test.v=false")
	cmd.Env = append(os.Environ(), benchServers+"="+spec)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	c := &benchChild{cmd: cmd, in: in, out: bufio.NewScanner(out)}
	b.Cleanup(func() { in.Close(); cmd.Wait() })
	if _, err := fmt.Sscanf(c.line(b), "port %d", &c.port); err != nil {
		b.Fatalf("bench servers: %v", err)
	}
	return c
}

// line reads the child's next line.
func (c *benchChild) line(b *testing.B) string {
	b.Helper()
	if !c.out.Scan() {
		b.Fatalf("bench servers ended: %v", c.out.Err())
	}
	return c.out.Text()
}

// handshakes asks the child how many full and resumed handshakes it completed.
func (c *benchChild) handshakes(b *testing.B) (full, resumed int64) {
	b.Helper()
	io.WriteString(c.in, "stats\n")
	if _, err := fmt.Sscanf(c.line(b), "full %d resumed %d", &full, &resumed); err != nil {
		b.Fatalf("bench servers: %v", err)
	}
	return full, resumed
}

// cpu returns the child's user and system CPU time, from /proc.
func (c *benchChild) cpu(b *testing.B) time.Duration {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name's closing parenthesis start at field 3
	// (state); utime and stime are fields 14 and 15, in clock ticks (100/s).
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// TestBenchServers is the server side of BenchmarkScheduler1000HTTPS, run in
// a child process; it is skipped otherwise. It serves https on 1,000
// loopback addresses with one port, requiring client certificates, prints
// "port P", answers "stats" with its handshake counts, and returns when its
// stdin closes.
func TestBenchServers(t *testing.T) {
	spec := os.Getenv(benchServers)
	if spec == "" {
		t.Skip("the server process of BenchmarkScheduler1000HTTPS")
	}
	parts := strings.Split(spec, ",")
	caFile, certFile, keyFile, proto := parts[0], parts[1], parts[2], parts[3]
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	var full, resumed atomic.Int64
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert,
		ClientCAs: pool, MinVersion: tls.VersionTLS12,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if cs.DidResume {
				resumed.Add(1)
			} else {
				full.Add(1)
			}
			return nil
		}}
	srv := &http.Server{Handler: okHandler, TLSConfig: cfg, ErrorLog: log.New(io.Discard, "", 0)}
	if proto != "h2" {
		srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
	}
	listeners := benchListen(t)
	for _, l := range listeners {
		go srv.ServeTLS(l, "", "")
	}
	defer srv.Close()
	fmt.Printf("port %d\n", listeners[0].Addr().(*net.TCPAddr).Port)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		fmt.Printf("full %d resumed %d\n", full.Load(), resumed.Load())
	}
}

// benchListen opens benchTargets listeners on benchAddr(i):P for one port P.
func benchListen(t *testing.T) []net.Listener {
	for range 20 {
		var ls []net.Listener
		port := 0
		for i := range benchTargets {
			l, err := net.Listen("tcp", netip.AddrPortFrom(benchAddr(i), uint16(port)).String())
			if err != nil {
				break
			}
			port = l.Addr().(*net.TCPAddr).Port
			ls = append(ls, l)
		}
		if len(ls) == benchTargets {
			return ls
		}
		for _, l := range ls {
			l.Close()
		}
	}
	t.Fatal("no port free on all the loopback addresses")
	return nil
}
