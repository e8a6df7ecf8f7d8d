// Package deploy_test checks the deploy kit in deploy/ against the real
// meridian: the container file's build command is run and its binary must be
// static; the systemd unit passes `systemd-analyze verify` pointed at that
// binary; the Kubernetes manifests parse, cross-reference each other, and
// their configuration passes `meridian check`; the Prometheus rules pass
// `promtool check rules` and `promtool test rules`; and every metric a rule
// or the Grafana dashboard names is one a running `meridian serve` exposes.
//
// The tools come from Debian packages that scripts/deps.sh installs
// (systemd, prometheus); a missing tool fails the test with an install hint.
package deploy_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// root is the repository root, relative to this package's folder.
const root = ".."

// binDir holds the meridian binary built for this test run (see meridianBinary).
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "meridian-deploy-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "deploy test:", err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var (
	buildOnce sync.Once
	buildBin  string
	buildErr  error
)

// meridianBinary builds meridian once per test run, with the Containerfile's
// own build command run over the build context its ignore file leaves (so
// the image build's flags and context are what is tested), and returns the
// binary's path.
func meridianBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() { buildBin, buildErr = buildLikeContainerfile() })
	if buildErr != nil {
		t.Fatalf("build meridian as deploy/container/Containerfile does: %v", buildErr)
	}
	return buildBin
}

// requireTool returns the path of a command the test needs, or fails the
// test naming the Debian package that has it.
func requireTool(t *testing.T, name, debianPkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed: run scripts/deps.sh (or: apt-get install -y %s)", name, debianPkg)
	}
	return p
}

// runTool runs a command with a deadline and returns its combined output.
func runTool(t *testing.T, dir string, timeout time.Duration, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s did not finish within %s: %w", name, timeout, ctx.Err())
	}
	return out.String(), err
}

// readFile reads a file of the repository (path relative to its root).
func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, path))
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return b
}

// eventually polls cond every 100 ms until it holds, failing the test with
// what after limit.
func eventually(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// exitCode is the exit status of a finished command (0 when err is nil).
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

// checkServeArgs runs the binary with a `meridian serve` command line taken
// from a deploy file, with the configuration path pointed at a missing file:
// every flag must be accepted (a usage error exits 2), and the run must fail
// on the configuration (exit 1), which shows the flags were parsed.
func checkServeArgs(t *testing.T, where string, bin string, args []string) {
	t.Helper()
	if len(args) == 0 || args[0] != "serve" {
		t.Errorf("%s: command %q does not start with serve", where, args)
		return
	}
	args = append([]string(nil), args...)
	found := false
	for i := range args[:len(args)-1] {
		if args[i] == "-config" || args[i] == "--config" {
			args[i+1] = filepath.Join(t.TempDir(), "absent.toml")
			found = true
		}
	}
	if !found {
		t.Errorf("%s: %q has no -config: meridian would read ./config.toml", where, args)
		return
	}
	out, err := runTool(t, "", 30*time.Second, bin, args...)
	if code := exitCode(err); code != 1 || !strings.Contains(out, "configuration rejected") {
		t.Errorf("%s: meridian %s: exit %d (want 1: rejected configuration, not a usage error):\n%s",
			where, strings.Join(args, " "), code, out)
	}
}
