package ui

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"meridian/health"
	"meridian/internal/browsertest"
)

// skewFixture is a report in the shape /api/v1/skew serves (see the skew
// package): one endpoint gets nearly all demand, with an alarm, and an
// endpoint name that is markup.
const skewFixture = `{
  "service": "api.example.test.", "window": "5m",
  "endpoints": [
    {"name": "use1", "region": "us-east", "intended": 0.5, "answered": 0.61, "estimated": 0.92, "lo": 0.89, "hi": 0.95},
    {"name": "<b>euw1</b>", "region": "eu-west", "intended": 0.5, "answered": 0.39, "estimated": 0.08, "lo": 0.05, "hi": 0.11}
  ],
  "tvd": 0.42,
  "alarms": [{"kind": "ACTIVE_PASSIVE", "endpoint": "<b>euw1</b>", "detail": "upper bound 11.0 % is below a quarter of the intended 50.0 %"}],
  "confidence": {"grade": "Medium", "reasons": ["N_eff 14 < 30", "bracket 6 pp > 5 pp"]},
  "answered_label": "decisions, not traffic"
}`

// skewServer serves /ui over status and /api/v1/skew: the fixture for
// api.example.test., 404 for web.example.test. (no data yet) and 500 for
// db.example.test. While down is set, /ui answers 503.
func skewServer(t *testing.T, status *atomic.Pointer[health.Status], down *atomic.Bool) string {
	t.Helper()
	mux := http.NewServeMux()
	page := Handler(Options{Status: func() health.Status { return *status.Load() }, Refresh: 500 * time.Millisecond,
		Services: func() []string { return []string{"api.example.test.", "web.example.test.", "db.example.test."} }})
	mux.Handle("GET /ui", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			http.Error(w, "stopping", http.StatusServiceUnavailable)
			return
		}
		page.ServeHTTP(w, r)
	}))
	mux.HandleFunc("GET /api/v1/skew", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("window") != "5m" {
			http.Error(w, "window?", http.StatusBadRequest)
			return
		}
		switch r.URL.Query().Get("service") {
		case "api.example.test.":
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(skewFixture))
		case "db.example.test.":
			http.Error(w, "broken", http.StatusInternalServerError)
		default:
			http.NotFound(w, r)
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

// screenshotDir is where tests write screenshots: the test's temp dir, or
// $MERIDIAN_SCREENSHOT_DIR to keep them for a person to look at.
func screenshotDir(t *testing.T) string {
	if d := os.Getenv("MERIDIAN_SCREENSHOT_DIR"); d != "" {
		return d
	}
	return t.TempDir()
}

// skewView is what the page drew for the skew section.
type skewView struct {
	API, Web, DB          string // data-skew of each service's section
	WebText, DBText       string
	Headline, Grade       string
	Alarms                []string
	Rows                  []skewRow
	BoldElements, Pending int
}

type skewRow struct {
	Endpoint, Name, Intended, Estimated string
	Bracket                             []string
	Numbers                             []string
	Alarmed                             bool
}

const readSkew = `(() => {
  const box = s => [...document.querySelectorAll(".skew[data-service]")].find(b => b.dataset.service === s).querySelector(".skew-body");
  const api = box("api.example.test."), web = box("web.example.test."), db = box("db.example.test.");
  const text = e => e ? e.textContent : "";
  return {
    API: api.dataset.skew, Web: web.dataset.skew, DB: db.dataset.skew, WebText: text(web), DBText: text(db),
    Headline: text(api.querySelector(".headline")), Grade: api.querySelector(".grade") ? api.querySelector(".grade").className : "",
    Alarms: [...api.querySelectorAll(".alarms li")].map(text),
    Rows: [...api.querySelectorAll("tr[data-endpoint]")].map(tr => ({
      Endpoint: tr.dataset.endpoint, Name: text(tr.querySelector("th")),
      Intended: tr.querySelector("rect.intended").getAttribute("width"),
      Estimated: tr.querySelector("rect.estimated").getAttribute("width"),
      Bracket: [...tr.querySelectorAll("line.bracket")].map(l => l.getAttribute("x1") + "-" + l.getAttribute("x2")),
      Numbers: [...tr.querySelectorAll("td.num")].map(text),
      Alarmed: tr.classList.contains("alarmed")})),
    BoldElements: document.querySelectorAll("b").length,
    Pending: document.querySelectorAll('[data-skew="pending"]').length,
  };
})()`

func eventually(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestBrowserSkewAndRefresh loads the page in headless Chromium: the skew
// report is drawn as bars with its bracket, TVD, grade and alarms (names
// as text), a 404 says "no skew data yet", a 500 says so without breaking
// the page; the matrix refreshes in place, a node that stops answering is
// flagged while the last view stays, and the CSP blocks injected script.
func TestBrowserSkewAndRefresh(t *testing.T) {
	var status atomic.Pointer[health.Status]
	var down atomic.Bool
	st := sampleStatus()
	status.Store(&st)
	base := skewServer(t, &status, &down)
	p := browsertest.Open(t, base+"/ui", 1280, 900)

	var v skewView
	eventually(t, 10*time.Second, "skew sections drawn", func() bool {
		if err := p.Eval(readSkew, &v); err != nil {
			t.Fatal(err)
		}
		return v.Pending == 0
	})
	if v.API != "report" || v.Web != "none" || v.WebText != "no skew data yet" || v.DB != "error" ||
		v.DBText != "skew report unavailable: HTTP 500" {
		t.Fatalf("skew sections: %+v", v)
	}
	if !strings.Contains(v.Headline, "skew index (TVD) 0.420") || !strings.Contains(v.Headline, "window 5m") ||
		!strings.Contains(v.Headline, "confidence Medium (N_eff 14 < 30; bracket 6 pp > 5 pp)") || v.Grade != "grade grade-medium" {
		t.Errorf("headline %q, grade class %q", v.Headline, v.Grade)
	}
	want := []skewRow{
		{Endpoint: "use1", Name: "use1", Intended: "150.0", Estimated: "276.0", Bracket: []string{"267.0-285.0", "267.0-267.0", "285.0-285.0"},
			Numbers: []string{"50.0 %", "92.0 % [89.0 % – 95.0 %]", "61.0 %"}},
		{Endpoint: "<b>euw1</b>", Name: "<b>euw1</b>", Intended: "150.0", Estimated: "24.0", Bracket: []string{"15.0-33.0", "15.0-15.0", "33.0-33.0"},
			Numbers: []string{"50.0 %", "8.0 % [5.0 % – 11.0 %]", "39.0 %"}, Alarmed: true},
	}
	if got, _ := json.Marshal(v.Rows); string(got) != string(must(json.Marshal(want))) {
		t.Errorf("rows:\n got %s\nwant %s", got, must(json.Marshal(want)))
	}
	if len(v.Alarms) != 1 || v.Alarms[0] != "ACTIVE_PASSIVE <b>euw1</b> — upper bound 11.0 % is below a quarter of the intended 50.0 %" {
		t.Errorf("alarms %q", v.Alarms)
	}
	if v.BoldElements != 0 {
		t.Error("a name from the report became markup")
	}

	// The matrix refreshes in place: r1's vote on "two" goes down.
	var before int
	mustEval(t, p, `+document.getElementById("live").dataset.refreshes`, &before)
	st2 := sampleStatus()
	st2.Services[0].Endpoints[1].Votes[0] = health.VoteStatus{Region: "r1", State: "down", Down: 1}
	st2.Services[0].Endpoints[1].Observers[0] = health.ObserverJSON{Node: "n1", Region: "r1", Voting: true, State: "down",
		Since: t0, Reason: "timeout", Detail: "no answer in 1s"}
	status.Store(&st2)
	eventually(t, 10*time.Second, "cell two/r1 turns down without a reload", func() bool {
		var s string
		mustEval(t, p, `document.querySelector('tr[data-endpoint="two"] td[data-region="r1"]').dataset.state`, &s)
		return s == "down"
	})
	var after struct {
		Refreshes  int
		Text, Skew string
	}
	mustEval(t, p, `({Refreshes: +document.getElementById("live").dataset.refreshes,
		Text: document.querySelector('tr[data-endpoint="two"] td[data-region="r1"]').textContent,
		Skew: document.querySelector('.skew[data-service="api.example.test."] .skew-body').dataset.skew})`, &after)
	if after.Refreshes <= before || !strings.Contains(after.Text, "timeout") || !strings.Contains(after.Text, "last error: timeout: no answer in 1s") {
		t.Errorf("after refresh: %+v (refreshes before %d)", after, before)
	}
	if after.Skew != "report" {
		t.Errorf("the skew report was not kept across a refresh: %q", after.Skew)
	}

	// The node stops answering: the page says so and keeps the last view.
	down.Store(true)
	eventually(t, 10*time.Second, "page flags the node as not answering", func() bool {
		var live string
		mustEval(t, p, `document.getElementById("live").dataset.live`, &live)
		return live == "stale"
	})
	var rows int
	mustEval(t, p, `document.querySelectorAll(".matrix tr[data-endpoint]").length`, &rows)
	if rows != 3 {
		t.Errorf("the last view was not kept: %d rows", rows)
	}
	p.Screenshot(filepath.Join(screenshotDir(t), "ui-fixture.png"))
	down.Store(false)
	eventually(t, 10*time.Second, "page live again", func() bool {
		var live string
		mustEval(t, p, `document.getElementById("live").dataset.live`, &live)
		return live == "ok"
	})

	// The CSP lets only the page's own script run.
	var ran bool
	mustEval(t, p, `(() => { const s = document.createElement("script"); s.textContent = "window.injected = 1";
		document.body.appendChild(s); return window.injected === 1; })()`, &ran)
	if ran {
		t.Error("an injected inline script ran")
	}
	for _, pr := range p.Problems() {
		// 404, 500 and 503 above are on purpose; the injected script's
		// refusal is the CSP working. Anything else is a fault.
		if strings.Contains(pr, "Failed to load resource") || strings.Contains(pr, "window.injected") ||
			strings.Contains(pr, "Executing inline script violates") {
			continue
		}
		t.Errorf("browser reported: %s", pr)
	}
}

func mustEval(t *testing.T, p *browsertest.Page, expr string, v any) {
	t.Helper()
	if err := p.Eval(expr, v); err != nil {
		t.Fatal(err)
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
