package ui

import (
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"meridian/config"
	"meridian/health"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// sampleStatus is a two-region cluster: api's "one" is up everywhere, "two"
// is down in r2 (refused) and up in r1, "three" is unchecked; r2's second
// node is stale.
func sampleStatus() health.Status {
	return health.Status{
		Node: "n1", Region: "r1", Time: t0,
		Members: []health.Member{{Name: "n1", Region: "r1", Alive: true}, {Name: "n2", Region: "r2", Alive: true},
			{Name: "n3", Region: "r2", Alive: false}},
		Services: []health.ServiceStatus{{Name: "api.example.test.", Policy: "latency", Quorum: "majority",
			Endpoints: []health.EndpointStatus{
				{Name: "one", Region: "r1", Address: "192.0.2.1", State: "up",
					Votes: []health.VoteStatus{{Region: "r1", State: "up", Up: 1, RTTms: 0.42}, {Region: "r2", State: "up", Up: 1, RTTms: 81.25}},
					Observers: []health.ObserverJSON{
						{Node: "n1", Region: "r1", Voting: true, State: "up", Since: t0.Add(-90 * time.Second), RTTms: 0.42},
						{Node: "n2", Region: "r2", Voting: true, State: "up", Since: t0.Add(-2 * time.Hour), RTTms: 81.25}}},
				{Name: "two", Region: "r2", Address: "192.0.2.2", State: "up",
					Votes: []health.VoteStatus{{Region: "r1", State: "up", Up: 1, RTTms: 3}, {Region: "r2", State: "down", Down: 1}},
					Observers: []health.ObserverJSON{
						{Node: "n1", Region: "r1", Voting: true, State: "up", Since: t0.Add(-time.Minute), RTTms: 3},
						{Node: "n2", Region: "r2", Voting: true, State: "down", Since: t0.Add(-12 * time.Second), Reason: "refused", Detail: "connection refused"},
						{Node: "n3", Region: "r2", Voting: false, State: "up", Since: t0.Add(-time.Hour)}}},
				{Name: "three", Region: "r1", Address: "192.0.2.3", State: "unchecked"},
			}}},
	}
}

func endpoint(t *testing.T, st health.Status, name string) health.EndpointStatus {
	t.Helper()
	for _, e := range st.Services[0].Endpoints {
		if e.Name == name {
			return e
		}
	}
	t.Fatalf("no endpoint %q", name)
	return health.EndpointStatus{}
}

func TestCellOf(t *testing.T) {
	st := sampleStatus()
	cases := []struct {
		endpoint, region string
		want             cell
	}{
		{"one", "r1", cell{State: "up", Text: "0.4 ms", Since: t0.Add(-90 * time.Second), Title: "n1: up, 0.4 ms"}},
		{"one", "r2", cell{State: "up", Text: "81.2 ms", Since: t0.Add(-2 * time.Hour), Title: "n2: up, 81.2 ms"}},
		{"two", "r2", cell{State: "down", Text: "refused", Error: "refused: connection refused", Since: t0.Add(-12 * time.Second),
			Title: "n2: down (last error refused: connection refused)\nn3: up, stale: not voting"}},
		{"two", "r1", cell{State: "up", Text: "3.0 ms", Since: t0.Add(-time.Minute), Title: "n1: up, 3.0 ms"}},
		{"three", "r1", cell{State: "unchecked", Text: "not checked"}},
		{"one", "r9", cell{State: "unknown", Text: "–"}},
	}
	for _, c := range cases {
		if got := cellOf(endpoint(t, st, c.endpoint), c.region); got != c.want {
			t.Errorf("cellOf(%s, %s) =\n %+v\nwant\n %+v", c.endpoint, c.region, got, c.want)
		}
	}
}

func TestAgo(t *testing.T) {
	cases := []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"}, {59 * time.Second, "59s"}, {time.Minute, "1m"}, {59*time.Minute + 59*time.Second, "59m"},
		{time.Hour, "1h"}, {47 * time.Hour, "47h"}, {49 * time.Hour, "2d"}, {-5 * time.Second, "0s"},
	}
	for _, c := range cases {
		if got := ago(t0, t0.Add(-c.d)); got != c.want {
			t.Errorf("ago(%s) = %q, want %q", c.d, got, c.want)
		}
	}
	if got := ago(t0, time.Time{}); got != "" {
		t.Errorf("ago(zero) = %q, want empty", got)
	}
}

func TestRegionsOf(t *testing.T) {
	st := sampleStatus()
	st.Services[0].Endpoints[0].Votes = append(st.Services[0].Endpoints[0].Votes, health.VoteStatus{Region: "r0", State: "up"})
	if got, want := regionsOf(st), []string{"r0", "r1", "r2"}; !slices.Equal(got, want) {
		t.Errorf("regionsOf = %v, want %v", got, want)
	}
	if got := regionsOf(health.Status{Region: "solo"}); !slices.Equal(got, []string{"solo"}) {
		t.Errorf("a lone node's regions = %v", got)
	}
}

func TestServiceNames(t *testing.T) {
	cfg := &config.Config{Services: []config.Service{{Name: "b.example."}, {Name: "a.example."}}}
	if got := ServiceNames(cfg); !slices.Equal(got, []string{"b.example.", "a.example."}) {
		t.Errorf("ServiceNames = %v, want configuration order", got)
	}
}

// get serves one request to h and returns the response and its body.
func get(t *testing.T, h http.Handler, target string) (*http.Response, string) {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL + target)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func fixed(st health.Status) StatusFunc { return func() health.Status { return st } }

// TestPageRendersMatrix checks the served page: the matrix's columns, each
// cell's state, RTT, failure and age, the members, and the skew sections.
func TestPageRendersMatrix(t *testing.T) {
	resp, body := get(t, Handler(Options{Status: fixed(sampleStatus())}), "/ui")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("GET /ui: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	flat := strings.Join(strings.Fields(body), " ")
	for _, want := range []string{
		`<title>meridian · n1</title>`,
		`<th class="region">r1</th><th class="region">r2</th>`,
		`<tr data-endpoint="one">`,
		`<td class="cell up" data-region="r1" data-state="up" title="n1: up, 0.4 ms">`,
		`0.4 ms <span class="since" title="since 2025-03-01 11:58:30 Z">for 1m</span>`,
		`81.2 ms <span class="since" title="since 2025-03-01 10:00:00 Z">for 2h</span>`,
		`<td class="cell down" data-region="r2" data-state="down" title="n2: down (last error refused: connection refused) n3: up, stale: not voting">`,
		`refused <span class="since" title="since 2025-03-01 11:59:48 Z">for 12s</span>`,
		`<div class="error">last error: refused: connection refused</div>`,
		`<td class="verdict unchecked" data-verdict="unchecked">unchecked</td>`,
		`not checked`,
		`<li class="member alive" data-member="n1" data-state="alive">`,
		`<span class="name">n1</span> <span class="region">r1</span> <span class="state">alive</span> <span class="self">(this node)</span>`,
		`<li class="member gone" data-member="n3" data-state="gone">`,
		`<h2>Members <span class="count">3</span></h2>`,
		`<div class="skew" data-service="api.example.test."> <h3>api.example.test.</h3> <div class="skew-body" data-skew="pending">`,
		`<main id="page" data-refresh-ms="3000">`,
		`<noscript>JavaScript is off`,
	} {
		if !strings.Contains(flat, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	if strings.Count(flat, `<tr data-endpoint=`) != 3 {
		t.Errorf("want 3 endpoint rows:\n%s", body)
	}
}

// TestPageCSP checks the headers and that the policy's hashes allow exactly
// the inline script and style the page carries, and nothing else runs.
func TestPageCSP(t *testing.T) {
	resp, body := get(t, Handler(Options{Status: fixed(sampleStatus())}), "/ui")
	policy := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "connect-src 'self'", "frame-ancestors 'none'", "base-uri 'none'"} {
		if !strings.Contains(policy, want) {
			t.Errorf("CSP %q lacks %q", policy, want)
		}
	}
	if strings.Contains(policy, "unsafe-inline") || strings.Contains(policy, "unsafe-eval") {
		t.Errorf("CSP allows inline code: %q", policy)
	}
	for _, c := range []struct{ tag, directive string }{{"script", "script-src"}, {"style", "style-src"}} {
		m := regexp.MustCompile(`(?s)<`+c.tag+`>(.*?)</`+c.tag+`>`).FindAllStringSubmatch(body, -1)
		if len(m) != 1 {
			t.Fatalf("want one <%s> element, found %d", c.tag, len(m))
		}
		sum := sha256.Sum256([]byte(m[0][1]))
		want := c.directive + " 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
		if !strings.Contains(policy, want+";") {
			t.Errorf("CSP %q does not allow the served <%s> by its hash (%s)", policy, c.tag, want)
		}
	}
	markup := regexp.MustCompile(`(?s)<(script|style)>.*?</(script|style)>`).ReplaceAllString(body, "")
	if regexp.MustCompile(`\s(style|on[a-z]+)=`).MatchString(markup) {
		t.Error("the page has inline style or event-handler attributes the CSP would block")
	}
	for h, want := range map[string]string{"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"} {
		if got := resp.Header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	if regexp.MustCompile(`(src|href)="(https?:)?//`).MatchString(body) {
		t.Error("the page refers to an external asset")
	}
}

// TestPageEscapesNames renders names that are markup: every one comes out
// as text, in elements and in attributes.
func TestPageEscapesNames(t *testing.T) {
	evil := `<img src=x onerror="alert(1)">`
	st := sampleStatus()
	st.Node = evil
	st.Members[1].Name = evil
	st.Services[0].Name = evil
	st.Services[0].Endpoints[0].Name = evil
	st.Services[0].Endpoints[1].Observers[1].Detail = `</td><script>alert(2)</script>`
	_, body := get(t, Handler(Options{Status: fixed(st), Services: func() []string { return []string{evil} }}), "/ui")
	for _, bad := range []string{"<img", "<script>alert", `onerror="alert`} {
		if strings.Contains(body, bad) {
			t.Errorf("page contains unescaped %q", bad)
		}
	}
	for _, want := range []string{
		`<title>meridian · &lt;img src=x onerror=&#34;alert(1)&#34;&gt;</title>`,
		`data-member="&lt;img src=x onerror=&#34;alert(1)&#34;&gt;"`,
		`<tr data-endpoint="&lt;img src=x onerror=&#34;alert(1)&#34;&gt;">`,
		`<div class="skew" data-service="&lt;img src=x onerror=&#34;alert(1)&#34;&gt;">`,
		`last error: refused: &lt;/td&gt;&lt;script&gt;alert(2)&lt;/script&gt;`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks escaped %s", want)
		}
	}
}

// TestFragment: ?fragment=1 is the refreshed part only, with the same data
// and no document shell, script or style.
func TestFragment(t *testing.T) {
	h := Handler(Options{Status: fixed(sampleStatus()), Refresh: 5 * time.Second,
		Services: func() []string { return []string{"a.example.", "b.example."} }})
	resp, body := get(t, h, "/ui?fragment=1")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Security-Policy") == "" {
		t.Fatalf("fragment: %d, CSP %q", resp.StatusCode, resp.Header.Get("Content-Security-Policy"))
	}
	for _, bad := range []string{"<html", "<script", "<style", "<main"} {
		if strings.Contains(body, bad) {
			t.Errorf("fragment contains %s", bad)
		}
	}
	for _, want := range []string{`<tr data-endpoint="two">`, `data-service="a.example."`, `data-service="b.example."`} {
		if !strings.Contains(body, want) {
			t.Errorf("fragment lacks %s", want)
		}
	}
	if strings.Contains(body, `<div class="skew" data-service="api.example.test.">`) {
		t.Error("the skew sections should follow Options.Services, not the status")
	}
	_, full := get(t, h, "/ui")
	if !strings.Contains(full, `data-refresh-ms="5000"`) {
		t.Error("Refresh is not passed to the page")
	}
}

// TestEmptyStatus renders a node with nothing configured yet.
func TestEmptyStatus(t *testing.T) {
	resp, body := get(t, Handler(Options{Status: fixed(health.Status{Node: "n", Region: "r", Time: t0})}), "/ui")
	if resp.StatusCode != 200 || strings.Count(body, "no services configured") != 2 || !strings.Contains(body, "no members known") {
		t.Errorf("empty status: %d\n%s", resp.StatusCode, body)
	}
}
