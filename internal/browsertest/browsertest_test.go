package browsertest

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// page serves a document whose script changes it after 200 ms and whose
// CSP forbids any other script.
func page(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		sum := sha256.Sum256([]byte(script))
		w.Header().Set("Content-Security-Policy", "default-src 'none'; script-src 'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'")
		fmt.Fprint(w, `<!doctype html><title>t</title><p id="p">static</p><script>`+script+`</script>`)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

const script = `setTimeout(function () { document.getElementById("p").textContent = "scripted"; }, 200);`

func TestDumpDOMRunsScripts(t *testing.T) {
	dom := DumpDOM(t, page(t), 2*time.Second)
	if !strings.Contains(dom, `<p id="p">scripted</p>`) {
		t.Fatalf("the page's script did not run before the dump:\n%s", dom)
	}
}

func TestScreenshotWritesPNG(t *testing.T) {
	file := filepath.Join(t.TempDir(), "shot.png")
	Screenshot(t, page(t), file, 400, 300, time.Second)
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 100 || string(b[1:4]) != "PNG" {
		t.Fatalf("not a PNG: %d bytes", len(b))
	}
}

// TestPageEvalAndProblems drives a tab: Eval sees the script's change, and a
// script the CSP blocks is reported as a problem and does not run.
func TestPageEvalAndProblems(t *testing.T) {
	p := Open(t, page(t), 800, 600)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var text string
		if err := p.Eval(`document.getElementById("p").textContent`, &text); err != nil {
			t.Fatal(err)
		}
		if text == "scripted" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("text is %q, want scripted", text)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(p.Problems()) != 0 {
		t.Fatalf("problems on a clean page: %q", p.Problems())
	}
	var ran bool
	if err := p.Eval(`(function () { var s = document.createElement("script"); s.textContent = "window.injected = true"; document.body.appendChild(s); return window.injected === true; })()`, &ran); err != nil {
		t.Fatal(err)
	}
	if ran {
		t.Fatal("an inline script outside the CSP ran")
	}
	deadline = time.Now().Add(5 * time.Second)
	for !strings.Contains(strings.Join(p.Problems(), "\n"), "Content Security Policy") {
		if time.Now().After(deadline) {
			t.Fatalf("the CSP violation was not reported; problems: %q", p.Problems())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := p.Eval(`throw new Error("boom")`, nil); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("Eval of a throwing expression: %v", err)
	}
	file := filepath.Join(t.TempDir(), "tab.png")
	p.Screenshot(file)
	if st, err := os.Stat(file); err != nil || st.Size() < 100 {
		t.Fatalf("tab screenshot: %v", err)
	}
}
