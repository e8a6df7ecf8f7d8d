package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"meridian/health"
	"meridian/internal/certtest"
	"meridian/internal/netlab"
	"meridian/resolver"
)

// The latency lab: three regions (a, b, c), each with a meridian node (na,
// nb, nc) and an mTLS HTTPS backend (ba, bb, bc) on its own lab host, and a
// client host. The hub delays every node ↔ backend link by half the RTT
// below, so the probes measure these RTTs themselves. Each region's own
// backend is its nearest, except region c's: region a's backend is nearer
// to it (6 ms) than its own (30 ms).
var labRTT = map[string]map[string]time.Duration{ // node region → backend region → RTT
	"a": {"a": 4 * time.Millisecond, "b": 24 * time.Millisecond, "c": 44 * time.Millisecond},
	"b": {"a": 24 * time.Millisecond, "b": 6 * time.Millisecond, "c": 36 * time.Millisecond},
	"c": {"a": 6 * time.Millisecond, "b": 16 * time.Millisecond, "c": 30 * time.Millisecond},
}

// labRegions are the regions in order, with the client network that
// [regions.*].networks maps to each (of different lengths, so that the ECS
// scope tells which one decided) and the ECS subnet a client there sends.
var labRegions = []struct {
	name, network, ecs string
	scope              uint8
}{
	{"a", "192.0.2.0/24", "192.0.2.0/24", 24},
	{"b", "198.18.0.0/15", "198.18.5.0/24", 15},
	{"c", "203.0.113.0/25", "203.0.113.0/24", 25},
}

const (
	labNodeDelay   = 5 * time.Millisecond // one way, between nodes (gossip)
	labClientDelay = time.Millisecond     // one way, client ↔ nodes
	labBackendPort = 8443
	labService     = "api.lab.test."
)

// labNode is one region's `meridian serve`, running in its lab host.
type labNode struct {
	region string
	host   *netlab.Host
	file   string
	proc   *process
	http   *http.Client // dials the node's admin API inside its namespace
}

// labBackend is an HTTPS server demanding client certificates, listening
// in a lab host; Stop and Start take it down and bring it back.
type labBackend struct {
	t    testing.TB
	host *netlab.Host
	conf *tls.Config
	srv  *http.Server
}

func (b *labBackend) Start() {
	b.t.Helper()
	ln, err := b.host.Listen("tcp", b.host.Addr(labBackendPort))
	if err != nil {
		b.t.Fatalf("backend %s: %v", b.host.Name, err)
	}
	b.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") }),
		// Probes cut short by Stop or by their timeout are expected here.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	go b.srv.Serve(tls.NewListener(ln, b.conf))
}

func (b *labBackend) Stop() { b.srv.Close() }

// startLabProcess runs `meridian serve -config file` (this test binary,
// see TestMain) inside host's namespace until the test ends.
func startLabProcess(t testing.TB, host *netlab.Host, file string) *process {
	t.Helper()
	p := &process{name: "node " + host.Name, logs: &syncBuffer{}, done: make(chan error, 1)}
	p.cmd = host.Command(os.Args[0], "-test.run=^$")
	p.cmd.Env = append(os.Environ(), childEnv+"=serve\n-config\n"+file)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("%s log:\n%s", p.name, p.logs)
		}
	})
	return p
}

// labConfig writes node n's configuration.
func labConfig(t testing.TB, dir string, n *labNode, nodes []*labNode, backends map[string]*labBackend, tlsFiles [3]string, keyring string) string {
	t.Helper()
	var join []string
	for _, o := range nodes {
		if o != n {
			join = append(join, fmt.Sprintf("%q", o.host.Addr(7946)))
		}
	}
	var regions, endpoints strings.Builder
	for _, r := range labRegions {
		fmt.Fprintf(&regions, "[regions.%s]\nnetworks = [%q]\n", r.name, r.network)
		fmt.Fprintf(&endpoints, "  { name = %q, region = %q, address = %q },\n", "be-"+r.name, r.name, backends[r.name].host.IP)
	}
	body := fmt.Sprintf(`
[node]
name = "node-%[1]s"
region = %[1]q
[dns]
listen = [%[2]q]
[http]
listen = "127.0.0.1:9153"
[gossip]
bind = %[3]q
join = [%[4]s]
profile = "local"
cluster = "lab"
keyring = %[5]q
stale_after = "5s"
[tls]
ca = %[6]q
cert = %[7]q
key = %[8]q
%[9]s
[checks.api]
type = "https"
port = %[10]d
path = "/healthz"
interval = "500ms"
timeout = "450ms"
rise = 1
fall = 2
[[zones]]
origin = "lab.test."
ns = ["ns1.lab.test."]
[[services]]
name = %[11]q
policy = "latency"
max_answers = 1
latency_tolerance = "3ms"
check = "api"
quorum = "majority"
endpoints = [
%[12]s]
`, n.region, n.host.Addr(53), n.host.Addr(7946), strings.Join(join, ", "), keyring,
		tlsFiles[0], tlsFiles[1], tlsFiles[2], regions.String(), labBackendPort, labService, endpoints.String())
	file := filepath.Join(dir, "node-"+n.region+".toml")
	if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

// labStatus reads the node's /api/v1/status.
func (n *labNode) status() (health.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://127.0.0.1:9153/api/v1/status", nil)
	resp, err := n.http.Do(req)
	if err != nil {
		return health.Status{}, err
	}
	defer resp.Body.Close()
	var st health.Status
	if resp.StatusCode != 200 {
		return st, fmt.Errorf("status: %s", resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// labAnswer is the A record a node answered and the ECS scope it gave.
type labAnswer struct {
	addr  string
	scope int // -1: no ECS option in the answer
}

// queryFrom asks server (ip:port) for the service's A record from host,
// with an ECS option for subnet ecs (none when empty).
func queryFrom(host *netlab.Host, server, ecs string) (labAnswer, error) {
	m := new(dns.Msg)
	m.SetQuestion(labService, dns.TypeA)
	var subnet *net.IPNet
	if ecs != "" {
		var err error
		if _, subnet, err = net.ParseCIDR(ecs); err != nil {
			return labAnswer{}, err
		}
		bits, _ := subnet.Mask.Size()
		o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		o.SetUDPSize(1232)
		o.Option = append(o.Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1,
			SourceNetmask: uint8(bits), Address: subnet.IP.To4()})
		m.Extra = append(m.Extra, o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, err := host.DialContext(ctx, "udp", server)
	if err != nil {
		return labAnswer{}, err
	}
	co := &dns.Conn{Conn: c}
	defer co.Close()
	co.SetDeadline(time.Now().Add(2 * time.Second))
	if err := co.WriteMsg(m); err != nil {
		return labAnswer{}, err
	}
	r, err := co.ReadMsg()
	if err != nil {
		return labAnswer{}, err
	}
	if r.Id != m.Id || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		return labAnswer{}, fmt.Errorf("answer id %d (sent %d), rcode %s, %d records", r.Id, m.Id, dns.RcodeToString[r.Rcode], len(r.Answer))
	}
	a, ok := r.Answer[0].(*dns.A)
	if !ok {
		return labAnswer{}, fmt.Errorf("answer %s is not an A record", r.Answer[0])
	}
	ans := labAnswer{addr: a.A.String(), scope: -1}
	if o := r.IsEdns0(); o != nil {
		for _, opt := range o.Option {
			if e, ok := opt.(*dns.EDNS0_SUBNET); ok {
				if subnet == nil || e.Family != 1 || !e.Address.Equal(subnet.IP) {
					return labAnswer{}, fmt.Errorf("ECS echoed as family %d %s/%d, sent %s", e.Family, e.Address, e.SourceNetmask, ecs)
				}
				ans.scope = int(e.SourceScope)
			}
		}
	}
	return ans, nil
}

// TestLatencyRoutingInLab runs three `meridian serve` processes in network
// namespaces whose links have real, different delays, probing mTLS backends
// with https checks and gossiping over an encrypted keyring. Clients placed
// by ECS in each region get that region's nearest backend by the RTT the
// probes measured — region c the remote backend a, nearer than its own — and
// move to the next nearest while it is down.
func TestLatencyRoutingInLab(t *testing.T) {
	started := time.Now()
	lab := netlab.New(t, "na", "nb", "nc", "ba", "bb", "bc", "client")
	for node, row := range labRTT {
		for backend, rtt := range row {
			lab.SetDelay("n"+node, "b"+backend, rtt/2)
		}
	}
	lab.SetDelay("na", "nb", labNodeDelay)
	lab.SetDelay("na", "nc", labNodeDelay)
	lab.SetDelay("nb", "nc", labNodeDelay)
	for _, n := range []string{"na", "nb", "nc"} {
		lab.SetDelay("client", n, labClientDelay)
	}
	client := lab.Host("client")

	dir := t.TempDir()
	ca := certtest.New(t)
	caFile, certFile, keyFile := ca.ClientFiles(t, "probe")
	keyring := filepath.Join(dir, "keyring")
	var out, errb strings.Builder
	if code := run(t.Context(), []string{"keygen", "-out", keyring}, &out, &errb); code != 0 {
		t.Fatalf("keygen: %s", errb.String())
	}

	backends := map[string]*labBackend{}
	addrRegion := map[string]string{} // backend address → region
	for _, r := range labRegions {
		h := lab.Host("b" + r.name)
		b := &labBackend{t: t, host: h, conf: ca.ServerTLS(t, h.IP.String())}
		b.Start()
		t.Cleanup(b.Stop)
		backends[r.name] = b
		addrRegion[h.IP.String()] = r.name
	}
	var nodes []*labNode
	for _, r := range labRegions {
		h := lab.Host("n" + r.name)
		tr := &http.Transport{DialContext: h.DialContext, DisableKeepAlives: true}
		t.Cleanup(tr.CloseIdleConnections)
		nodes = append(nodes, &labNode{region: r.name, host: h, http: &http.Client{Transport: tr}})
	}
	for _, n := range nodes {
		n.file = labConfig(t, dir, n, nodes, backends, [3]string{caFile, certFile, keyFile}, keyring)
		n.proc = startLabProcess(t, n.host, n.file)
	}

	// Every node sees the whole cluster and every region's measured RTT to
	// every backend, within a band around the configured delays.
	expectMatrix(t, nodes, "at start")

	// Placement by ECS at every node; and, without ECS, by the region of
	// the node that got the query.
	want := map[string]string{"a": "a", "b": "b", "c": "a"} // client region → backend region
	expectAnswers(t, client, nodes, addrRegion, want, "every region's nearest backend")
	expectExplained(t, nodes[1])

	// Region a's backend goes down: regions a and c move to their next
	// nearest (b: 24 < 44 ms, 16 < 30 ms); region b keeps its own.
	backends["a"].Stop()
	expectAnswers(t, client, nodes, addrRegion, map[string]string{"a": "b", "b": "b", "c": "b"}, "backend a down")
	backends["a"].Start()
	expectAnswers(t, client, nodes, addrRegion, want, "backend a back")

	// Region b's backend goes down: region b moves to a (24 < 36 ms).
	backends["b"].Stop()
	expectAnswers(t, client, nodes, addrRegion, map[string]string{"a": "a", "b": "a", "c": "a"}, "backend b down")
	backends["b"].Start()
	expectAnswers(t, client, nodes, addrRegion, want, "backend b back")

	expectMatrix(t, nodes, "at the end")
	if n := lab.Dropped(); n != 0 {
		t.Errorf("the lab's hub dropped %d frames", n)
	}
	t.Logf("latency lab test body took %s", time.Since(started).Round(time.Millisecond))
}

// expectMatrix waits until every node's status shows every region's RTT
// to every backend within the band, and logs the matrix each node measured
// itself (its own region's row) and node a's gossiped view of all of them.
func expectMatrix(t *testing.T, nodes []*labNode, when string) {
	t.Helper()
	var own strings.Builder
	for _, n := range nodes {
		var m matrixView
		took := eventuallyLab(t, 40*time.Second, "node "+n.region+" seeing every region's RTTs within the band "+when, func() bool {
			nodesRunning(t, nodes)
			m = rttMatrix(n)
			return m.ok
		}, func() string { return m.text })
		own.WriteString(m.own)
		if n.region == "a" {
			t.Logf("RTT matrix %s, as node a sees it after %s (region → backend: measured / configured):\n%s",
				when, took.Round(time.Millisecond), m.text)
		}
	}
	t.Logf("RTT matrix %s, each row as its own region's node measured it:\n%s", when, own.String())
}

// matrixView is one node's view of the RTT matrix.
type matrixView struct {
	ok   bool   // every region → backend RTT known, up and within the band
	text string // every row, or what went wrong
	own  string // the node's own region's row
}

// rttMatrix reads node n's view of the RTT matrix from its status and
// checks it against labRTT.
func rttMatrix(n *labNode) matrixView {
	st, err := n.status()
	if err != nil {
		return matrixView{text: err.Error()}
	}
	var all, own strings.Builder
	v := matrixView{ok: true}
	seen := 0
	for _, s := range st.Services {
		if s.Name != labService {
			continue
		}
		for _, e := range s.Endpoints {
			backend := strings.TrimPrefix(e.Name, "be-")
			for _, vote := range e.Votes {
				want, known := labRTT[vote.Region][backend]
				if !known {
					continue
				}
				seen++
				got := time.Duration(vote.RTTms * float64(time.Millisecond))
				line := fmt.Sprintf("  %s → %s: %6.2f ms / %2d ms (%s)\n", vote.Region, backend, vote.RTTms, want.Milliseconds(), vote.State)
				all.WriteString(line)
				if vote.Region == n.region {
					own.WriteString(line)
				}
				if vote.State != "up" || !rttInBand(got, want, vote.Region == n.region) {
					v.ok = false
				}
			}
		}
	}
	v.ok = v.ok && seen == 9
	v.text, v.own = all.String(), own.String()
	return v
}

// rttInBand is the band a measured RTT must fall in: never below the
// configured RTT (less a little rounding), at most 8 ms above it (the hub
// and the probes' scheduling on a busy machine, in a moving average). Another region's RTT is
// the one last gossiped: a change of RTT alone travels at once only when it
// exceeds 5 ms or 20 % (gossip/disseminate.go), and otherwise with the
// next push/pull, so those may lag by that much more.
func rttInBand(got, want time.Duration, local bool) bool {
	upper := want + 8*time.Millisecond
	if !local {
		upper += max(5*time.Millisecond, want/5)
	}
	return got >= want-500*time.Microsecond && got <= upper
}

// expectExplained checks that node n explains a region c client (by ECS)
// as placed by its network, answered with region a's backend, nearer by
// measured RTT than c's own.
func expectExplained(t *testing.T, n *labNode) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://127.0.0.1:9153/api/v1/explain?name="+labService+"&ecs=203.0.113.0/24", nil)
	resp, err := n.http.Do(req)
	if err != nil {
		t.Fatalf("explain at node %s: %v", n.region, err)
	}
	defer resp.Body.Close()
	var ex resolver.Explanation
	if err := json.NewDecoder(resp.Body).Decode(&ex); err != nil || resp.StatusCode != 200 {
		t.Fatalf("explain at node %s: %s, %v", n.region, resp.Status, err)
	}
	if ex.Placement == nil || ex.Placement.Region != "c" || ex.Placement.Rule != "network" ||
		ex.Placement.Network != "203.0.113.0/25" || ex.Placement.Scope != 25 {
		t.Errorf("explain at node %s: placement %+v, want region c by network 203.0.113.0/25, scope 25", n.region, ex.Placement)
	}
	for _, c := range ex.Candidates {
		backend := strings.TrimPrefix(c.Endpoint, "be-")
		want := labRTT["c"][backend]
		got := time.Duration(c.RTTms * float64(time.Millisecond))
		if !c.Up || c.RTTSource != "measured" || !rttInBand(got, want, n.region == "c") || c.InAnswer != (backend == "a") {
			t.Errorf("explain at node %s: candidate %+v, want up, measured RTT near %s, in the answer only for be-a", n.region, c, want)
		}
	}
	t.Logf("explain at node %s for ECS 203.0.113.0/24: %s", n.region, ex.Reason)
}

// expectAnswers waits until every node answers a client of each region
// (placed by ECS) with the backend of region want[region] and the matched
// network's prefix length as ECS scope, and a query without ECS with the
// backend want[node's region], with no ECS option.
func expectAnswers(t *testing.T, client *netlab.Host, nodes []*labNode, addrRegion, want map[string]string, what string) {
	t.Helper()
	var problems []string
	took := eventuallyLab(t, 20*time.Second, what, func() bool {
		nodesRunning(t, nodes)
		problems = problems[:0]
		for _, n := range nodes {
			server := n.host.Addr(53)
			for _, r := range labRegions {
				ans, err := queryFrom(client, server, r.ecs)
				switch {
				case err != nil:
					problems = append(problems, fmt.Sprintf("node %s, ECS %s: %v", n.region, r.ecs, err))
				case addrRegion[ans.addr] != want[r.name] || ans.scope != int(r.scope):
					problems = append(problems, fmt.Sprintf("node %s, ECS %s (region %s): backend %s scope %d, want backend %s scope %d",
						n.region, r.ecs, r.name, addrRegion[ans.addr], ans.scope, want[r.name], r.scope))
				}
			}
			ans, err := queryFrom(client, server, "")
			switch {
			case err != nil:
				problems = append(problems, fmt.Sprintf("node %s, no ECS: %v", n.region, err))
			case addrRegion[ans.addr] != want[n.region] || ans.scope != -1:
				problems = append(problems, fmt.Sprintf("node %s, no ECS: backend %s (ECS scope %d), want backend %s without ECS",
					n.region, addrRegion[ans.addr], ans.scope, want[n.region]))
			}
		}
		return len(problems) == 0
	}, func() string { return strings.Join(problems, "\n") })
	t.Logf("%s: answers right at every node after %s", what, took.Round(time.Millisecond))
}

// nodesRunning fails the test at once when a node's process has ended.
func nodesRunning(t *testing.T, nodes []*labNode) {
	t.Helper()
	for _, n := range nodes {
		select {
		case err := <-n.proc.done:
			n.proc.done <- err // for stop
			t.Fatalf("node %s exited: %v", n.region, err)
		default:
		}
	}
}

// eventuallyLab polls cond every 100 ms until it holds or limit passes,
// then fails the test with what and the last state detail gives.
func eventuallyLab(t *testing.T, limit time.Duration, what string, cond func() bool, detail func() string) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < limit {
		if cond() {
			return time.Since(start)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s; last:\n%s", what, limit, detail())
	return 0
}
