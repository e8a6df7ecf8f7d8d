package skew

import (
	"context"
	"math"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"sync"
	"testing"
	"time"

	"meridian/resolver"
)

// testConfig is a two-endpoint weighted service (and a latency one).
func testConfig() Config {
	return Config{
		Node: "n1", TopK: 1000,
		Services: []Service{
			{Name: "api.gslb.example.test.", Policy: "weighted", TTL: 30, Endpoints: []Endpoint{
				{Name: "use1", Region: "us-east", Weight: 1, Capacity: 1},
				{Name: "euw1", Region: "eu-west", Weight: 1, Capacity: 1},
			}},
			{Name: "web.gslb.example.test.", Policy: "latency", TTL: 20, Endpoints: []Endpoint{
				{Name: "a", Region: "us-east", Weight: 1, Capacity: 1},
				{Name: "b", Region: "eu-west", Weight: 1, Capacity: 1},
				{Name: "c", Region: "ap-south", Weight: 2, Capacity: 2},
			}},
		},
	}
}

// A *Recorder is the resolver's AnswerRecorder as it is.
var _ resolver.AnswerRecorder = (*Recorder)(nil)

// t0 is a window-aligned start time for tests.
var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()

func addr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
}

func TestHashMatchesResolver(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 1000; i++ {
		var a16 [16]byte
		for j := range a16 {
			a16[j] = byte(rnd.Uint32())
		}
		src := netip.AddrFrom16(a16)
		if i%2 == 0 {
			src = netip.AddrFrom4([4]byte(a16[:4]))
		}
		var ecs netip.Prefix
		if i%3 == 0 {
			ecs = netip.PrefixFrom(netip.AddrFrom4([4]byte(a16[4:8])), 24).Masked()
		}
		svc := rnd.IntN(10)
		if got, want := IdentityHash(src, svc, ecs), resolver.IdentityHash(src, svc, ecs); got != want {
			t.Fatalf("IdentityHash(%s, %d, %s) = %#x, resolver says %#x", src, svc, ecs, got, want)
		}
		id, slot := rnd.Uint64(), rnd.Uint64()
		want := float64(resolver.WeylPoint(id, slot, 0)>>11) / (1 << 53)
		if got := WeylPoint(id, slot); got != want {
			t.Fatalf("WeylPoint(%#x, %d) = %v, resolver's point is %v", id, slot, got, want)
		}
	}
}

// TestRecordAndReport records a known stream and checks the report's exact
// counters, that the heavy resolver is held and dominates, and the export
// round trip.
func TestRecordAndReport(t *testing.T) {
	r, err := New(testConfig())
	if err != nil {
		t.Fatal(err)
	}
	// Resolver 1 asks every 30.1 s and always gets use1 (a heavy cache,
	// λ = 10/s); resolvers 2..41 are light caches (λ = 1/150 s: they ask
	// 30 s + Exp(150 s) after each answer) and get euw1.
	var sent [2]uint64
	for at := t0; at < t0+int64(10*time.Minute); at += int64(30100 * time.Millisecond) {
		r.Record(Answer{Service: 0, Source: addr(1), Endpoints: 1, TTL: 30, At: at})
		sent[0]++
	}
	rnd := rand.New(rand.NewPCG(3, 4))
	for i := 2; i < 42; i++ {
		for at := t0 + int64(rnd.IntN(60))*int64(time.Second); at < t0+int64(10*time.Minute); at += int64((30 + 150*rnd.ExpFloat64()) * 1e9) {
			r.Record(Answer{Service: 0, Source: addr(i), Endpoints: 2, TTL: 30, At: at})
			sent[1]++
		}
	}
	now := t0 + int64(10*time.Minute)
	rep, err := r.Report("api.gslb.example.test.", 5*time.Minute, now, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Window != "5m" || !rep.From.Equal(time.Unix(0, t0+int64(5*time.Minute))) {
		t.Errorf("window %q from %s, want 5m from %s", rep.Window, rep.From, time.Unix(0, t0+int64(5*time.Minute)))
	}
	rep1h, err := r.Report("api.gslb.example.test.", time.Hour, now, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep1h.Answers != sent[0]+sent[1] || rep1h.Endpoints[0].Answers != sent[0] || rep1h.Endpoints[1].Answers != sent[1] {
		t.Errorf("1h answers %d (%d, %d), sent %d (%d, %d)", rep1h.Answers,
			rep1h.Endpoints[0].Answers, rep1h.Endpoints[1].Answers, sent[0]+sent[1], sent[0], sent[1])
	}
	if !r.Holds(addr(1), 0, netip.Prefix{}) {
		t.Error("the heavy resolver is not in the top-k")
	}
	if got := rep.Endpoints[0].Answered; got > 0.3 {
		t.Errorf("use1 answered share %.2f, want the heavy resolver's few answers to be a small share", got)
	}
	if got := rep.Endpoints[0].Estimated; got < 0.8 {
		t.Errorf("use1 estimated share %.2f, want the heavy resolver to dominate (> 0.8)", got)
	}
	if math.Abs(rep.Endpoints[0].Estimated+rep.Endpoints[1].Estimated-1) > 1e-9 {
		t.Errorf("estimated shares sum to %v", rep.Endpoints[0].Estimated+rep.Endpoints[1].Estimated)
	}
	for _, e := range rep.Endpoints {
		if e.Lo > e.Estimated || e.Hi < e.Estimated {
			t.Errorf("%s: bracket [%.3f, %.3f] does not hold the estimate %.3f", e.Name, e.Lo, e.Hi, e.Estimated)
		}
	}

	b, err := r.Export(now)
	if err != nil {
		t.Fatal(err)
	}
	x, err := DecodeExport(b)
	if err != nil {
		t.Fatal(err)
	}
	own := r.snapshot(now, "")
	if !reflect.DeepEqual(x, own) {
		t.Errorf("decoded export differs from the state it was encoded from")
	}
	t.Logf("export: %d bytes for %d answers", len(b), sent[0]+sent[1])
}

// TestRecordConcurrent records from many goroutines while Run drains, and
// checks that every answer is counted or counted as dropped.
func TestRecordConcurrent(t *testing.T) {
	r, err := New(testConfig())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	const workers, per = 8, 5000
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				r.Record(Answer{Service: 0, Source: addr(w*per + i), Endpoints: 1, TTL: 30, At: t0 + int64(i)*1e6})
			}
		}()
	}
	wg.Wait()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	rep, err := r.Report("api.gslb.example.test.", 5*time.Minute, t0+int64(time.Minute), nil)
	if err != nil {
		t.Fatal(err)
	}
	st := r.Stats()
	if rep.Answers+st.Dropped != workers*per {
		t.Errorf("%d answers recorded + %d dropped, %d sent", rep.Answers, st.Dropped, workers*per)
	}
	t.Logf("recorded %d, dropped %d", rep.Answers, st.Dropped)
}
