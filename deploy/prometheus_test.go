package deploy_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"

	"meridian/internal/certtest"
)

const (
	rulesFile     = "deploy/prometheus/meridian-rules.yml"
	rulesTestFile = "deploy/prometheus/meridian-rules.test.yml"
	dashboardFile = "deploy/grafana/meridian.json"
)

// expectedSoon are the client-skew metrics a colleague is adding to meridian
// right now (SKEW.md), with their labels. The rules and the dashboard may
// name them before a running node exposes them; remove each one from this
// list when it lands, so the scrape checks it like every other metric
// (empty now: the meridian_skew_* gauges have landed).
var expectedSoon = map[string][]string{}

// prometheusSeries are series Prometheus itself writes for every target.
var prometheusSeries = map[string][]string{"up": {}}

// targetLabels are the labels Prometheus adds to every scraped series.
var targetLabels = []string{"instance", "job"}

// rule is one alerting or recording rule.
type rule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []rule `yaml:"rules"`
	} `yaml:"groups"`
}

func loadRules(t *testing.T) []rule {
	t.Helper()
	var f ruleFile
	if err := yaml.Unmarshal(readFile(t, rulesFile), &f); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	var out []rule
	for _, g := range f.Groups {
		out = append(out, g.Rules...)
	}
	return out
}

// TestPrometheusRules runs `promtool check rules` and `promtool test rules`
// (the unit tests next to the rules), and checks that the alerts the deploy
// kit promises exist, each with a severity, a summary and a for duration.
func TestPrometheusRules(t *testing.T) {
	promtool := requireTool(t, "promtool", "prometheus")
	dir := filepath.Join(root, "deploy/prometheus")
	if out, err := runTool(t, dir, time.Minute, promtool, "check", "rules", filepath.Base(rulesFile)); err != nil {
		t.Errorf("promtool check rules %s: %v\n%s", rulesFile, err, out)
	}
	if out, err := runTool(t, dir, 2*time.Minute, promtool, "test", "rules", filepath.Base(rulesTestFile)); err != nil {
		t.Errorf("promtool test rules %s: %v\n%s", rulesTestFile, err, out)
	}

	// Each promised alert, recognised by the metric its expression uses.
	promised := map[string]*regexp.Regexp{
		"endpoint down":            regexp.MustCompile(`\bmeridian_endpoint_up\b.*== 0`),
		"region unreachable":       regexp.MustCompile(`(?s)max_over_time\(meridian_endpoint_region_up.*unless`),
		"gossip members missing":   regexp.MustCompile(`\bmeridian_gossip_members\b`),
		"skew alarm":               regexp.MustCompile(`\bmeridian_skew_alarm\b`),
		"cert expiring in 14 days": regexp.MustCompile(`meridian_probe_cert_expiry_timestamp_seconds.*- time\(\) < (14 \* 86400|1209600)`),
	}
	rules := loadRules(t)
	for what, re := range promised {
		found := slices.ContainsFunc(rules, func(r rule) bool { return r.Alert != "" && re.MatchString(r.Expr) })
		if !found {
			t.Errorf("%s: no alert for %s (an expression matching %s)", rulesFile, what, re)
		}
	}
	for _, r := range rules {
		if r.Alert == "" {
			continue
		}
		if r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.For == "" {
			t.Errorf("%s: alert %s needs a severity label, a summary annotation and a for duration", rulesFile, r.Alert)
		}
	}
}

// panel is a Grafana panel, possibly a row holding panels.
type panel struct {
	ID      int    `json:"id"`
	Type    string `json:"type"`
	Title   string `json:"title"`
	GridPos struct {
		X, Y, W, H int
	} `json:"gridPos"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

type dashboard struct {
	Title      string  `json:"title"`
	UID        string  `json:"uid"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	var d dashboard
	if err := json.Unmarshal(readFile(t, dashboardFile), &d); err != nil {
		t.Fatalf("%s is not valid JSON: %v", dashboardFile, err)
	}
	return d
}

// allPanels flattens rows.
func allPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

// grafanaVar matches a Grafana variable: $name, ${name} or ${name:format}.
var grafanaVar = regexp.MustCompile(`\$\{?(\w+)(?::\w+)?\}?`)

// promqlOf replaces Grafana's variables with values Prometheus accepts.
func promqlOf(expr string) string {
	return grafanaVar.ReplaceAllStringFunc(expr, func(v string) string {
		switch grafanaVar.FindStringSubmatch(v)[1] {
		case "__rate_interval", "__interval", "__range":
			return "5m"
		}
		return ".*" // template variables are used in regexp matchers
	})
}

// dashboardExprs lists each query of the dashboard: panel targets and
// template variable queries (label_values(SELECTOR, LABEL)).
func dashboardExprs(t *testing.T, d dashboard) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, p := range allPanels(d.Panels) {
		for _, tg := range p.Targets {
			out[fmt.Sprintf("panel %d %q target %s", p.ID, p.Title, tg.RefID)] = tg.Expr
		}
	}
	lv := regexp.MustCompile(`^label_values\((.+),\s*(\w+)\)$`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(string)
		if m, ok := v.Query.(map[string]any); ok {
			q, _ = m["query"].(string)
		}
		m := lv.FindStringSubmatch(q)
		if m == nil {
			t.Errorf("%s: variable %s query %q: want label_values(SELECTOR, LABEL)", dashboardFile, v.Name, q)
			continue
		}
		// The label must exist on the selected metric: check it as a grouping.
		out["variable "+v.Name] = fmt.Sprintf("count by (%s) (%s)", m[2], m[1])
	}
	return out
}

// TestGrafanaDashboard checks the dashboard: valid JSON with unique panel
// ids that do not overlap, every query on the datasource variable, the four
// views the deploy kit promises, and every expression valid PromQL (checked
// by promtool as recording rules, Grafana's variables substituted).
func TestGrafanaDashboard(t *testing.T) {
	promtool := requireTool(t, "promtool", "prometheus")
	d := loadDashboard(t)
	if d.Title == "" || d.UID == "" {
		t.Errorf("%s: the dashboard needs a title and a uid", dashboardFile)
	}
	ids := map[int]string{}
	panels := allPanels(d.Panels)
	for i, p := range panels {
		if prev, dup := ids[p.ID]; dup || p.ID == 0 {
			t.Errorf("%s: panel %q has id %d, also used by %q (or 0)", dashboardFile, p.Title, p.ID, prev)
		}
		ids[p.ID] = p.Title
		if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("%s: panel %q gridPos %+v is outside the 24-column grid", dashboardFile, p.Title, p.GridPos)
		}
		for _, q := range panels[:i] {
			a, b := p.GridPos, q.GridPos
			if a.X < b.X+b.W && b.X < a.X+a.W && a.Y < b.Y+b.H && b.Y < a.Y+a.H {
				t.Errorf("%s: panels %q and %q overlap", dashboardFile, p.Title, q.Title)
			}
		}
		if p.Type != "row" && (p.Datasource == nil || p.Datasource.UID != "${datasource}") {
			t.Errorf("%s: panel %q does not use the ${datasource} variable", dashboardFile, p.Title)
		}
	}

	exprs := dashboardExprs(t, d)
	promised := map[string]*regexp.Regexp{
		"health matrix":     regexp.MustCompile(`\bmeridian_endpoint_region_up\b`),
		"answers by region": regexp.MustCompile(`by \([^)]*\bregion\b[^)]*\) \(rate\(meridian_dns_answers_total\b`),
		"skew":              regexp.MustCompile(`\bmeridian_skew_\w+`),
		"probe latency":     regexp.MustCompile(`histogram_quantile\(.*meridian_probe_duration_seconds_bucket`),
	}
	for what, re := range promised {
		if !slices.ContainsFunc(slices.Collect(maps.Values(exprs)), re.MatchString) {
			t.Errorf("%s: no panel shows %s (an expression matching %s)", dashboardFile, what, re)
		}
	}

	// promtool parses every expression as a recording rule.
	var f strings.Builder
	f.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	keys := slices.Sorted(maps.Keys(exprs))
	for i, k := range keys {
		q, _ := json.Marshal(promqlOf(exprs[k])) // a JSON string is a YAML string
		fmt.Fprintf(&f, "      - record: dashboard:query_%d\n        expr: %s\n", i, q)
	}
	file := filepath.Join(t.TempDir(), "dashboard-rules.yml")
	if err := os.WriteFile(file, []byte(f.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := runTool(t, "", time.Minute, promtool, "check", "rules", file); err != nil {
		t.Errorf("promtool check rules on the dashboard's queries: %v\n%s\nqueries: %q", err, out, keys)
	}
}

// TestMetricNamesExist scrapes a real `meridian serve` (gossip on loopback,
// an mTLS-checked endpoint that is up and one that is down, a DNS answer
// given) and checks that every metric the alert rules and the dashboard name
// is one it exposes, with the labels their matchers and groupings use. Only
// Prometheus's own `up` and the expected-soon skew metrics are exempt.
func TestMetricNamesExist(t *testing.T) {
	labels := scrapeNode(t)
	for name := range expectedSoon {
		if _, ok := labels[name]; ok {
			t.Logf("%s is exposed now: remove it from expectedSoon", name)
		}
	}
	exprs := map[string]string{}
	for _, r := range loadRules(t) {
		exprs[fmt.Sprintf("%s rule %s%s", rulesFile, r.Alert, r.Record)] = r.Expr
	}
	for k, e := range dashboardExprs(t, loadDashboard(t)) {
		exprs[dashboardFile+" "+k] = promqlOf(e)
	}
	known := func(m string) ([]string, bool) {
		if l, ok := labels[m]; ok {
			return l, true
		}
		if l, ok := expectedSoon[m]; ok {
			return slices.Concat(l, targetLabels), true
		}
		l, ok := prometheusSeries[m]
		return slices.Concat(l, targetLabels), ok
	}
	checked := 0
	for where, e := range exprs {
		refs, err := parsePromQL(e)
		if err != nil {
			t.Errorf("%s: %v", where, err)
			continue
		}
		if len(refs.metrics) == 0 {
			t.Errorf("%s: %q names no metric", where, e)
		}
		var union []string
		for _, m := range refs.metrics {
			l, ok := known(m)
			if !ok {
				t.Errorf("%s names %s, which meridian serve does not expose on /metrics", where, m)
				continue
			}
			checked++
			union = append(union, l...)
			for _, ml := range refs.matchers[m] {
				if !slices.Contains(l, ml) && ml != "__name__" {
					t.Errorf("%s matches label %q of %s, which has labels %v", where, ml, m, l)
				}
			}
		}
		if len(refs.matchers[""]) > 0 {
			t.Errorf("%s: a selector without a metric name: %q", where, e)
		}
		for _, g := range refs.grouping {
			if len(union) > 0 && !slices.Contains(union, g) {
				t.Errorf("%s groups by label %q, which none of %v has", where, g, refs.metrics)
			}
		}
	}
	t.Logf("%d metric references in %d expressions checked against %d metric names scraped", checked, len(exprs), len(labels))
}

// scrapeNode runs meridian serve until /metrics shows the probe, health,
// gossip and answer metrics, and returns each series name's label names.
func scrapeNode(t *testing.T) map[string][]string {
	t.Helper()
	bin := meridianBinary(t)
	ca := certtest.New(t)
	backend := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	}))
	backend.TLS = ca.ServerTLS(t, "127.0.0.1", "127.0.0.2")
	backend.StartTLS()
	t.Cleanup(backend.Close)
	_, backendPort, _ := net.SplitHostPort(backend.Listener.Addr().String())
	caFile, certFile, keyFile := ca.ClientFiles(t, "probe")

	dnsPort, httpPort, gossipPort := freePort(t), freePort(t), freePort(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "config.toml")
	cfg := fmt.Sprintf(`
[node]
name = "deploy-test"
region = "us-east"
[dns]
listen = ["127.0.0.1:%d"]
[http]
listen = "127.0.0.1:%d"
[gossip]
bind = "127.0.0.1:%d"
profile = "local"
[tls]
ca = %q
cert = %q
key = %q
[regions.us-east]
networks = ["127.0.0.0/8"]
[regions.eu-west]
[checks.api]
type = "https"
port = %s
path = "/healthz"
interval = "200ms"
timeout = "150ms"
rise = 1
fall = 1
[[zones]]
origin = "example.test."
ns = ["ns1.example.test."]
[[services]]
name = "api.example.test."
policy = "latency"
check = "api"
endpoints = [
  { name = "use1", region = "us-east", address = "127.0.0.1" },
  { name = "euw1", region = "eu-west", address = "127.0.0.2", probe_address = "127.0.0.3" },
]
`, dnsPort, httpPort, gossipPort, caFile, certFile, keyFile, backendPort)
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	startNode(t, bin, file)

	want := []string{"meridian_probe_cert_expiry_timestamp_seconds", "meridian_endpoint_region_up",
		"meridian_dns_answers_total", "meridian_probe_duration_seconds_bucket", "meridian_gossip_members",
		"meridian_probes_total"}
	var labels map[string][]string
	client := &dns.Client{Net: "udp", Timeout: time.Second}
	q := new(dns.Msg).SetQuestion("api.example.test.", dns.TypeA)
	dnsAddr := fmt.Sprintf("127.0.0.1:%d", dnsPort)
	eventually(t, 30*time.Second, "the node's /metrics to show "+strings.Join(want, ", "), func() bool {
		client.Exchange(q, dnsAddr) // an answer counts in meridian_dns_answers_total
		labels = scrape(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", httpPort))
		for _, w := range want {
			if _, ok := labels[w]; !ok {
				return false
			}
		}
		return true
	})
	// The probe of 127.0.0.3 is refused: a failure reason was counted.
	if l := labels["meridian_probes_total"]; !slices.Contains(l, "reason") {
		t.Errorf("meridian_probes_total labels %v lack reason", l)
	}
	return labels
}

// scrape reads a text-format /metrics into series name → label names (the
// histogram and summary series included, with le and quantile).
func scrape(t *testing.T, url string) map[string][]string {
	t.Helper()
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	out := map[string][]string{}
	add := func(name string, extra string, m *dto.Metric) {
		l := out[name]
		if l == nil {
			l = append([]string(nil), targetLabels...)
		}
		for _, lp := range m.GetLabel() {
			if !slices.Contains(l, lp.GetName()) {
				l = append(l, lp.GetName())
			}
		}
		if extra != "" && !slices.Contains(l, extra) {
			l = append(l, extra)
		}
		out[name] = l
	}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			switch f.GetType() {
			case dto.MetricType_HISTOGRAM:
				add(name+"_bucket", "le", m)
				add(name+"_sum", "", m)
				add(name+"_count", "", m)
			case dto.MetricType_SUMMARY:
				add(name, "quantile", m)
				add(name+"_sum", "", m)
				add(name+"_count", "", m)
			default:
				add(name, "", m)
			}
		}
	}
	return out
}

// freePort returns a port that was free on 127.0.0.1 for TCP and UDP.
func freePort(t *testing.T) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no port free for both TCP and UDP on 127.0.0.1")
	return 0
}

// syncBuffer is a bytes buffer safe for a process's writes and the test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startNode runs `meridian serve -config file` until the test ends, then
// stops it with SIGTERM (killing it if it does not stop in 20 s).
func startNode(t *testing.T, bin, file string) {
	t.Helper()
	logs := &syncBuffer{}
	cmd := exec.Command(bin, "serve", "-config", file)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start meridian serve: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("meridian serve: exit after SIGTERM: %v", err)
			}
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Errorf("meridian serve did not stop within 20 s of SIGTERM")
		}
		if t.Failed() {
			t.Logf("meridian serve log:\n%s", logs)
		}
	})
}
