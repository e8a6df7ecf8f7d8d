// Package browsertest runs headless Chromium (Debian's `chromium`) for
// tests: one-shot runs (--dump-dom, --screenshot) and a page driven over
// the DevTools protocol on a pipe (--remote-debugging-pipe), which needs no
// WebSocket library and no port.
//
// Every browser gets a fresh profile under t.TempDir(), runs in its own
// process group, is bounded by a timeout and is killed, with all its child
// processes, when the run or the test ends. A missing chromium fails the
// test with the install hint; it never skips.
package browsertest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// InstallHint says how to get the browser the tests need.
const InstallHint = "chromium is not installed: run `make test` (scripts/deps.sh installs it) or apt-get install -y chromium"

// RunTimeout bounds every one-shot chromium run and every page's lifetime
// unless the caller's context ends first.
const RunTimeout = 60 * time.Second

// Path returns the chromium binary, or fails t with InstallHint.
func Path(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	t.Fatal(InstallHint)
	return ""
}

// flags are the switches of every run: headless, no sandbox (tests run as
// root in CI), no GPU, and nothing that talks to the network by itself.
func flags(profile string, width, height int) []string {
	return []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-default-apps", "--disable-extensions", "--no-default-browser-check",
		"--hide-scrollbars", "--mute-audio", "--password-store=basic",
		"--user-data-dir=" + profile,
		fmt.Sprintf("--window-size=%d,%d", width, height),
	}
}

// command builds a chromium command in its own process group, killed as a
// group when ctx ends.
func command(ctx context.Context, t testing.TB, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, Path(t), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// killGroup ends whatever is left of cmd's process group.
func killGroup(cmd *exec.Cmd) {
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}

// DumpDOM loads url in a fresh browser, lets its scripts run for budget of
// virtual time, and returns the document as serialized then.
func DumpDOM(t testing.TB, url string, budget time.Duration) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), RunTimeout)
	defer cancel()
	args := append(flags(t.TempDir(), 1280, 900),
		fmt.Sprintf("--virtual-time-budget=%d", budget.Milliseconds()), "--dump-dom", url)
	cmd := command(ctx, t, args...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err := cmd.Run()
	killGroup(cmd)
	if err != nil {
		t.Fatalf("chromium --dump-dom %s: %v\n%s", url, err, tail(stderr.String()))
	}
	return out.String()
}

// Screenshot loads url at width×height in a fresh browser, lets its
// scripts run for budget of virtual time, and writes a PNG to file.
func Screenshot(t testing.TB, url, file string, width, height int, budget time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), RunTimeout)
	defer cancel()
	args := append(flags(t.TempDir(), width, height),
		fmt.Sprintf("--virtual-time-budget=%d", budget.Milliseconds()), "--screenshot="+file, url)
	cmd := command(ctx, t, args...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	err := cmd.Run()
	killGroup(cmd)
	if err != nil {
		t.Fatalf("chromium --screenshot %s: %v\n%s", url, err, tail(stderr.String()))
	}
}

// tail is the end of a browser's log, for failure messages.
func tail(s string) string {
	if len(s) > 4000 {
		return "…" + s[len(s)-4000:]
	}
	return s
}

// Page is one tab of a headless Chromium driven over the DevTools protocol.
// Its methods are safe for use from one goroutine at a time.
type Page struct {
	t       testing.TB
	cmd     *exec.Cmd
	cancel  context.CancelFunc
	w       *os.File // our end of the browser's command pipe (its fd 3)
	wmu     sync.Mutex
	session string
	stderr  *syncBuffer

	mu       sync.Mutex
	nextID   int
	pending  map[int]chan message
	problems []string // console errors, exceptions, security violations
	dead     error    // set when the browser's pipe closes
}

// message is a DevTools protocol message: a reply (ID) or an event (Method).
type message struct {
	ID        int             `json:"id,omitempty"`
	Method    string          `json:"method,omitempty"`
	Params    json.RawMessage `json:"params,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
	Error     *struct{ Message string }
	SessionID string `json:"sessionId,omitempty"`
}

// Open starts a fresh browser with a width×height viewport, opens url in a
// tab and waits (bounded) until the document has loaded. The browser is
// killed when the test ends.
func Open(t testing.TB, url string, width, height int) *Page {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), RunTimeout)
	cmdR, cmdW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	args := append(flags(t.TempDir(), width, height), "--remote-debugging-pipe", "about:blank")
	p := &Page{t: t, cancel: cancel, w: cmdW, pending: map[int]chan message{}, stderr: &syncBuffer{}}
	p.cmd = command(ctx, t, args...)
	p.cmd.ExtraFiles = []*os.File{cmdR, outW} // fd 3: commands in, fd 4: replies out
	p.cmd.Stdout, p.cmd.Stderr = p.stderr, p.stderr
	if err := p.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start chromium: %v", err)
	}
	cmdR.Close()
	outW.Close()
	t.Cleanup(p.close)
	go p.read(outR)

	var target struct{ TargetID string }
	p.call("", "Target.createTarget", map[string]any{"url": "about:blank"}, &target)
	var attached struct{ SessionID string }
	p.call("", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &attached)
	p.session = attached.SessionID
	for _, m := range []string{"Page.enable", "Runtime.enable", "Log.enable"} {
		p.call(p.session, m, nil, nil)
	}
	p.call(p.session, "Emulation.setDeviceMetricsOverride",
		map[string]any{"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}, nil)
	p.Navigate(url)
	return p
}

// Navigate loads url in the tab and waits (bounded) for its load event.
func (p *Page) Navigate(url string) {
	p.t.Helper()
	var nav struct{ ErrorText string }
	p.call(p.session, "Page.navigate", map[string]any{"url": url}, &nav)
	if nav.ErrorText != "" {
		p.t.Fatalf("chromium: navigate %s: %s", url, nav.ErrorText)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		var state string
		if err := p.Eval("document.readyState", &state); err == nil && state == "complete" {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("chromium: %s did not finish loading in 20s", url)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Eval evaluates expr in the page (awaiting a promise it returns) and
// decodes its JSON value into v (which may be nil).
func (p *Page) Eval(expr string, v any) error {
	var res struct {
		Result struct {
			Value json.RawMessage
		}
		ExceptionDetails *struct {
			Text      string
			Exception *struct{ Description string }
		}
	}
	if err := p.send(p.session, "Runtime.evaluate",
		map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true}, &res); err != nil {
		return err
	}
	if d := res.ExceptionDetails; d != nil {
		msg := d.Text
		if d.Exception != nil {
			msg += " " + d.Exception.Description
		}
		return fmt.Errorf("evaluate %q: %s", expr, msg)
	}
	if v == nil || len(res.Result.Value) == 0 {
		return nil
	}
	return json.Unmarshal(res.Result.Value, v)
}

// Screenshot writes a PNG of the tab's viewport to file.
func (p *Page) Screenshot(file string) {
	p.t.Helper()
	var shot struct{ Data string }
	p.call(p.session, "Page.captureScreenshot", map[string]any{"format": "png"}, &shot)
	png, err := base64.StdEncoding.DecodeString(shot.Data)
	if err != nil {
		p.t.Fatalf("chromium: screenshot: %v", err)
	}
	if err := os.WriteFile(file, png, 0o644); err != nil {
		p.t.Fatal(err)
	}
}

// Problems returns what the page reported as wrong so far: uncaught
// exceptions, console errors and security (CSP) violations, one line each.
func (p *Page) Problems() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.problems...)
}

// call is send that fails the test on error.
func (p *Page) call(session, method string, params, result any) {
	p.t.Helper()
	if err := p.send(session, method, params, result); err != nil {
		p.t.Fatalf("chromium: %v\n%s", err, tail(p.stderr.String()))
	}
}

// send issues one command and waits (bounded) for its reply.
func (p *Page) send(session, method string, params, result any) error {
	p.mu.Lock()
	if p.dead != nil {
		p.mu.Unlock()
		return fmt.Errorf("%s: browser gone: %w", method, p.dead)
	}
	p.nextID++
	id := p.nextID
	reply := make(chan message, 1)
	p.pending[id] = reply
	p.mu.Unlock()
	msg := map[string]any{"id": id, "method": method}
	if params != nil {
		msg["params"] = params
	}
	if session != "" {
		msg["sessionId"] = session
	}
	b, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	p.wmu.Lock()
	_, err = p.w.Write(append(b, 0))
	p.wmu.Unlock()
	if err != nil {
		return fmt.Errorf("%s: write to browser: %w", method, err)
	}
	select {
	case m, ok := <-reply:
		if !ok {
			return fmt.Errorf("%s: browser gone before replying", method)
		}
		if m.Error != nil {
			return fmt.Errorf("%s: %s", method, m.Error.Message)
		}
		if result != nil {
			return json.Unmarshal(m.Result, result)
		}
		return nil
	case <-time.After(15 * time.Second):
		p.mu.Lock()
		delete(p.pending, id)
		p.mu.Unlock()
		return fmt.Errorf("%s: no reply in 15s", method)
	}
}

// read dispatches the browser's messages (NUL-terminated JSON) until its
// pipe closes.
func (p *Page) read(r *os.File) {
	defer r.Close()
	br := bufio.NewReaderSize(r, 1<<20)
	for {
		b, err := br.ReadBytes(0)
		if err != nil {
			p.mu.Lock()
			p.dead = fmt.Errorf("devtools pipe: %w", err)
			for id, c := range p.pending {
				close(c)
				delete(p.pending, id)
			}
			p.mu.Unlock()
			return
		}
		var m message
		if json.Unmarshal(bytes.TrimSuffix(b, []byte{0}), &m) != nil {
			continue
		}
		p.mu.Lock()
		if m.ID != 0 {
			if c, ok := p.pending[m.ID]; ok {
				c <- m
				delete(p.pending, m.ID)
			}
		} else if line := problem(m); line != "" {
			p.problems = append(p.problems, line)
		}
		p.mu.Unlock()
	}
}

// problem turns an event that reports something wrong into one line.
func problem(m message) string {
	switch m.Method {
	case "Runtime.exceptionThrown":
		var e struct {
			ExceptionDetails struct {
				Text      string
				Exception *struct{ Description string }
			}
		}
		_ = json.Unmarshal(m.Params, &e)
		line := "exception: " + e.ExceptionDetails.Text
		if x := e.ExceptionDetails.Exception; x != nil {
			line += " " + x.Description
		}
		return line
	case "Log.entryAdded":
		var e struct {
			Entry struct{ Source, Level, Text, URL string }
		}
		_ = json.Unmarshal(m.Params, &e)
		if e.Entry.Level == "error" || e.Entry.Source == "security" {
			return fmt.Sprintf("%s %s: %s %s", e.Entry.Source, e.Entry.Level, e.Entry.Text, e.Entry.URL)
		}
	case "Runtime.consoleAPICalled":
		var e struct {
			Type string
			Args []struct {
				Value       any
				Description string
			}
		}
		_ = json.Unmarshal(m.Params, &e)
		if e.Type == "error" || e.Type == "assert" {
			parts := []string{"console." + e.Type + ":"}
			for _, a := range e.Args {
				parts = append(parts, fmt.Sprint(a.Value, a.Description))
			}
			return strings.Join(parts, " ")
		}
	}
	return ""
}

// close asks the browser to quit, then kills its process group and waits.
func (p *Page) close() {
	done := make(chan error, 1)
	go func() { done <- p.send("", "Browser.close", nil, nil) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
	}
	p.w.Close()
	waited := make(chan error, 1)
	go func() { waited <- p.cmd.Wait() }()
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
		p.cancel() // kills the group
		<-waited
	}
	killGroup(p.cmd)
	p.cancel()
}

// syncBuffer collects a browser's log, keeping the last 64 KiB.
type syncBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (s *syncBuffer) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b = append(s.b, b...)
	if len(s.b) > 64<<10 {
		s.b = append([]byte(nil), s.b[len(s.b)-64<<10:]...)
	}
	return len(b), nil
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.b)
}
