package main

import (
	"bytes"
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"meridian/internal/browsertest"
)

// uiNode starts `meridian serve` with an mTLS https check over two real
// backends (one at 127.0.0.1, two at 127.0.0.2) that demand client
// certificates, waits until both answer, and returns the backends and the
// node's admin base URL.
func uiNode(t *testing.T) (map[string]*mtlsBackend, string) {
	t.Helper()
	n := startTwoBackendNode(t, "ui-node", "eu-west")
	return n.backends, fmt.Sprintf("http://127.0.0.1:%d", n.httpPort)
}

// matrixRow finds endpoint's row in a dumped page and returns its verdict
// and the state of its region cell ("" when absent).
func matrixRow(dom, endpoint string) (verdict, cell string) {
	row := regexp.MustCompile(`(?s)<tr data-endpoint="` + regexp.QuoteMeta(endpoint) + `">(.*?)</tr>`).FindStringSubmatch(dom)
	if row == nil {
		return "", ""
	}
	if m := regexp.MustCompile(`data-verdict="(\w+)"`).FindStringSubmatch(row[1]); m != nil {
		verdict = m[1]
	}
	if m := regexp.MustCompile(`data-region="eu-west" data-state="(\w+)"`).FindStringSubmatch(row[1]); m != nil {
		cell = m[1]
	}
	return verdict, cell
}

// TestUIInBrowser loads /ui from a running node in headless Chromium: the
// matrix lists both endpoints up with their RTTs; the skew section says
// there is no data (or shows a report) without breaking the page; when a
// backend stops, its cell turns down in the open page by itself and in a
// fresh load; a screenshot is written and is a real picture.
func TestUIInBrowser(t *testing.T) {
	browsertest.Path(t)
	backends, base := uiNode(t)

	dom := browsertest.DumpDOM(t, base+"/ui", 3*time.Second)
	for _, e := range []string{"one", "two"} {
		if v, c := matrixRow(dom, e); v != "up" || c != "up" {
			t.Errorf("fresh page: endpoint %s verdict %q cell %q, want up/up", e, v, c)
		}
	}
	for _, want := range []string{`<th class="region">eu-west</th>`, `data-member="ui-node" data-state="alive"`,
		`<div class="skew" data-service="api.example.test.">`} {
		if !strings.Contains(dom, want) {
			t.Errorf("fresh page lacks %s", want)
		}
	}
	if !regexp.MustCompile(`data-endpoint="one">(?s:.*?)\d+\.\d ms`).MatchString(dom) {
		t.Error("no RTT in one's cell")
	}
	if m := regexp.MustCompile(`data-skew="(\w+)"`).FindAllStringSubmatch(dom, -1); len(m) != 1 || (m[0][1] != "none" && m[0][1] != "report") {
		t.Errorf("skew section after the script ran: %v, want none (no skew data yet) or a report", m)
	} else if m[0][1] == "none" && !strings.Contains(dom, "no skew data yet") {
		t.Error(`the skew section does not say "no skew data yet"`)
	}

	p := browsertest.Open(t, base+"/ui", 1280, 900)
	state := func(endpoint string) (s struct{ Verdict, Cell, Live string }) {
		t.Helper()
		if err := p.Eval(`(() => { const tr = document.querySelector('.matrix tr[data-endpoint="`+endpoint+`"]');
			return {Verdict: tr.querySelector("[data-verdict]").dataset.verdict,
				Cell: tr.querySelector('[data-region="eu-west"]').dataset.state,
				Live: document.getElementById("live").dataset.live}; })()`, &s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	if s := state("two"); s.Verdict != "up" || s.Cell != "up" {
		t.Fatalf("open page before the stop: %+v", s)
	}
	backends["127.0.0.2"].Stop()
	// Probes see it within fall × interval + timeout (550 ms); the page
	// refreshes every 3 s. 15 s leaves room for a loaded machine.
	eventually(t, 15*time.Second, "two's cell turned down in the open page", func() bool {
		s := state("two")
		return s.Verdict == "down" && s.Cell == "down" && s.Live == "ok"
	})
	if s := state("one"); s.Verdict != "up" || s.Cell != "up" {
		t.Errorf("one after two stopped: %+v", s)
	}
	var text string
	if err := p.Eval(`document.querySelector('.matrix tr[data-endpoint="two"] [data-region="eu-west"]').textContent`, &text); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, "refused") || !strings.Contains(text, "last error: refused") {
		t.Errorf("two's down cell does not say why: %q", strings.Join(strings.Fields(text), " "))
	}
	for _, pr := range p.Problems() {
		if !strings.Contains(pr, "Failed to load resource") { // /api/v1/skew may be 404: said on the page
			t.Errorf("browser reported: %s", pr)
		}
	}

	dom = browsertest.DumpDOM(t, base+"/ui", time.Second)
	if v, c := matrixRow(dom, "two"); v != "down" || c != "down" {
		t.Errorf("fresh page after the stop: two verdict %q cell %q, want down/down", v, c)
	}

	file := filepath.Join(screenshotDir(t), "ui.png")
	browsertest.Screenshot(t, base+"/ui", file, 1280, 900, 2*time.Second)
	checkScreenshot(t, file, 1280, 900)
	t.Logf("screenshot: %s", file)
}

// checkScreenshot decodes the PNG and checks it is a picture of a page: the
// right size, and more than a blank background.
func checkScreenshot(t *testing.T, file string, width, height int) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("screenshot %s (%d bytes): %v", file, len(b), err)
	}
	if r := img.Bounds(); r.Dx() != width || r.Dy() != height {
		t.Errorf("screenshot is %dx%d, want %dx%d", r.Dx(), r.Dy(), width, height)
	}
	bg := img.At(0, 0)
	colors, inked := map[[4]uint32]bool{}, 0
	for y := img.Bounds().Min.Y; y < img.Bounds().Max.Y; y += 2 {
		for x := img.Bounds().Min.X; x < img.Bounds().Max.X; x += 2 {
			c := img.At(x, y)
			r, g, b, a := c.RGBA()
			colors[[4]uint32{r, g, b, a}] = true
			if c != bg {
				inked++
			}
		}
	}
	// Text, the table and the status colours: hundreds of colours and a
	// few percent of the pixels; a blank or error page has neither.
	if len(colors) < 50 || inked < width*height/4/50 {
		t.Errorf("screenshot looks empty: %d colours, %d non-background samples", len(colors), inked)
	}
}

// screenshotDir is where screenshots go: the test's temp dir, or
// $MERIDIAN_SCREENSHOT_DIR to keep them for a person to look at.
func screenshotDir(t *testing.T) string {
	if d := os.Getenv("MERIDIAN_SCREENSHOT_DIR"); d != "" {
		return d
	}
	return t.TempDir()
}
