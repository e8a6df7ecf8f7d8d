package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"debug/buildinfo"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	containerfile = "deploy/container/Containerfile"
	// dockerignore is the Containerfile's own ignore file: BuildKit reads
	// <Containerfile>.dockerignore next to the file before .dockerignore.
	dockerignore = containerfile + ".dockerignore"
)

// instruction is one Containerfile instruction, continuation lines joined.
type instruction struct {
	line  int    // of its first line
	cmd   string // upper case: FROM, RUN, COPY, ...
	args  string
	stage int // index of the FROM that began its stage
}

// parseContainerfile splits a Containerfile into instructions. Comment lines
// are dropped, also inside continuations, as BuildKit does.
func parseContainerfile(data []byte) ([]instruction, error) {
	var (
		out   []instruction
		cur   strings.Builder
		start int
		stage = -1
	)
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && cur.Len() == 0) {
			continue
		}
		if cur.Len() == 0 {
			start = n
		}
		cont := strings.HasSuffix(line, "\\")
		cur.WriteString(strings.TrimSuffix(line, "\\"))
		cur.WriteByte(' ')
		if cont {
			continue
		}
		text := strings.TrimSpace(cur.String())
		cur.Reset()
		cmd, args, _ := strings.Cut(text, " ")
		cmd = strings.ToUpper(cmd)
		if cmd == "FROM" {
			stage++
		}
		if stage < 0 && cmd != "ARG" {
			return nil, fmt.Errorf("line %d: %s before the first FROM", start, cmd)
		}
		out = append(out, instruction{line: start, cmd: cmd, args: strings.Join(strings.Fields(args), " "), stage: stage})
	}
	if cur.Len() > 0 {
		return nil, errors.New("the file ends inside a continuation line")
	}
	return out, sc.Err()
}

// buildVersion is the VERSION build argument the test passes, as
// `--build-arg VERSION=...` would.
const buildVersion = "deploytest"

// buildCommand is the Containerfile's `go build` RUN line, with ARG values
// substituted (VERSION set to buildVersion) and its -o pointed at out.
func buildCommand(instrs []instruction, out string) (string, error) {
	args := map[string]string{}
	for _, in := range instrs {
		if in.cmd == "ARG" {
			name, val, _ := strings.Cut(in.args, "=")
			args[name] = val
		}
	}
	if _, ok := args["VERSION"]; ok {
		args["VERSION"] = buildVersion
	}
	for _, in := range instrs {
		if in.cmd != "RUN" || !strings.Contains(in.args, "go build") {
			continue
		}
		cmd := regexp.MustCompile(`\$\{?(\w+)\}?`).ReplaceAllStringFunc(in.args, func(v string) string {
			name := strings.Trim(v, "${}")
			if val, ok := args[name]; ok && val != "" {
				return val
			}
			return v
		})
		o := regexp.MustCompile(`-o\s+\S+`)
		if len(o.FindAllString(cmd, -1)) != 1 {
			return "", fmt.Errorf("line %d: the go build command needs exactly one -o: %s", in.line, in.args)
		}
		return o.ReplaceAllLiteralString(cmd, "-o "+out), nil
	}
	return "", errors.New("no RUN instruction runs go build")
}

// ignoreRules are the patterns of a .dockerignore file.
type ignoreRules []string

func parseIgnore(data []byte) (ignoreRules, error) {
	var r ignoreRules
	for _, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.HasPrefix(l, "!") {
			return nil, fmt.Errorf("exception pattern %q: this test does not model exceptions", l)
		}
		r = append(r, path.Clean(strings.TrimPrefix(l, "/")))
	}
	return r, nil
}

// ignored reports whether a slash-separated path of the context is left out:
// a pattern matches the path or one of its parent folders; "**/" matches any
// number of leading folders.
func (r ignoreRules) ignored(rel string) bool {
	parts := strings.Split(rel, "/")
	for _, p := range r {
		rest, deep := strings.CutPrefix(p, "**/")
		n := strings.Count(rest, "/") + 1
		for end := 1; end <= len(parts); end++ { // rel and each parent folder
			for begin := 0; begin <= end-n; begin++ {
				if begin > 0 && !deep {
					break
				}
				if end-begin != n {
					continue
				}
				if ok, _ := path.Match(rest, strings.Join(parts[begin:end], "/")); ok {
					return true
				}
			}
		}
	}
	return false
}

// copyContext copies the repository into dst as a container build would
// see it: without what the ignore rules leave out.
func copyContext(src, dst string, rules ignoreRules) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil || rel == "." {
			return err
		}
		if rules.ignored(filepath.ToSlash(rel)) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type().IsRegular():
			return copyFile(p, target)
		}
		return nil // sockets, links: not part of a build context we rely on
	})
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// buildLikeContainerfile runs the Containerfile's go build command over the
// build context (the repository less the ignore file's patterns).
func buildLikeContainerfile() (string, error) {
	data, err := os.ReadFile(filepath.Join(root, containerfile))
	if err != nil {
		return "", err
	}
	instrs, err := parseContainerfile(data)
	if err != nil {
		return "", fmt.Errorf("%s: %w", containerfile, err)
	}
	ign, err := os.ReadFile(filepath.Join(root, dockerignore))
	if err != nil {
		return "", err
	}
	rules, err := parseIgnore(ign)
	if err != nil {
		return "", fmt.Errorf("%s: %w", dockerignore, err)
	}
	ctxDir := filepath.Join(binDir, "context")
	if err := copyContext(root, ctxDir, rules); err != nil {
		return "", fmt.Errorf("copy the build context: %w", err)
	}
	bin := filepath.Join(binDir, "meridian")
	cmdline, err := buildCommand(instrs, bin)
	if err != nil {
		return "", fmt.Errorf("%s: %w", containerfile, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", cmdline)
	cmd.Dir = ctxDir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%s (in the build context): %v\n%s", cmdline, err, out)
	}
	return bin, nil
}

// TestContainerfile checks the container file: a multi-stage build whose
// build command (run here, over the build context the ignore file leaves)
// makes a static binary without cgo, copied into a minimal image that runs
// it as a non-root user, with DNS exposed over UDP and TCP, no HEALTHCHECK
// (Kubernetes probes /healthz and /readyz), and a command line meridian
// accepts. No container engine runs here: the image itself is not built.
func TestContainerfile(t *testing.T) {
	instrs, err := parseContainerfile(readFile(t, containerfile))
	if err != nil {
		t.Fatalf("%s: %v", containerfile, err)
	}
	var froms, last []instruction
	for _, in := range instrs {
		if in.cmd == "FROM" {
			froms = append(froms, in)
		}
	}
	if len(froms) < 2 {
		t.Fatalf("%s: %d FROM: want a multi-stage build (a Go build stage, then a minimal image)", containerfile, len(froms))
	}
	final := len(froms) - 1
	for _, in := range instrs {
		if in.stage == final {
			last = append(last, in)
		}
		if in.cmd == "HEALTHCHECK" {
			t.Errorf("%s:%d: HEALTHCHECK: leave health to the orchestrator's probes of /healthz and /readyz", containerfile, in.line)
		}
	}
	base := strings.Fields(froms[final].args)[0]
	if !strings.HasPrefix(base, "gcr.io/distroless/static") && base != "scratch" {
		t.Errorf("%s:%d: final image %q: want distroless static or scratch", containerfile, froms[final].line, base)
	}
	checkFinalStage(t, last)
	cmdline, err := buildCommand(instrs, "OUT")
	if err != nil {
		t.Fatalf("%s: %v", containerfile, err)
	}
	for _, want := range []string{"CGO_ENABLED=0", "GOOS=linux", "-trimpath"} {
		if !strings.Contains(cmdline, want) {
			t.Errorf("%s: the build command lacks %s: %s", containerfile, want, cmdline)
		}
	}

	bin := meridianBinary(t)
	checkStatic(t, bin)
	checkBuildSettings(t, bin)
	if out, err := runTool(t, "", 10*time.Second, bin, "version"); err != nil || !strings.Contains(out, "meridian "+buildVersion) {
		t.Errorf("meridian version: %v: %q: want the version the build's -X main.version set (ARG VERSION)", err, out)
	}
	checkServeArgs(t, containerfile+" ENTRYPOINT+CMD", bin, imageCommand(t, last))
}

// checkFinalStage checks the runtime image: non-root USER, DNS exposed on
// UDP and TCP, the binary copied from the build stage.
func checkFinalStage(t *testing.T, last []instruction) {
	t.Helper()
	var user string
	var exposed []string
	copied := false
	for _, in := range last {
		switch in.cmd {
		case "USER":
			user = in.args
		case "EXPOSE":
			exposed = append(exposed, strings.Fields(in.args)...)
		case "COPY":
			copied = copied || strings.Contains(in.args, "--from=")
		case "RUN":
			t.Errorf("%s:%d: RUN in the final stage: a minimal image has no shell", containerfile, in.line)
		}
	}
	uid, _, _ := strings.Cut(user, ":")
	if uid == "" || uid == "0" || uid == "root" {
		t.Errorf("%s: final stage USER %q: want a non-root user (e.g. 65532:65532)", containerfile, user)
	} else if !regexp.MustCompile(`^[0-9]+$`).MatchString(uid) {
		t.Errorf("%s: USER %q: use a numeric UID, so runAsNonRoot can verify it", containerfile, user)
	}
	for _, p := range []string{"53/udp", "53/tcp"} {
		if !slices.Contains(exposed, p) {
			t.Errorf("%s: final stage does not EXPOSE %s (has %v)", containerfile, p, exposed)
		}
	}
	if !copied {
		t.Errorf("%s: final stage copies nothing from the build stage", containerfile)
	}
}

// imageCommand is the final stage's ENTRYPOINT followed by its CMD (both in
// exec form), less the binary itself.
func imageCommand(t *testing.T, last []instruction) []string {
	t.Helper()
	var entry, cmd []string
	for _, in := range last {
		var dst *[]string
		switch in.cmd {
		case "ENTRYPOINT":
			dst = &entry
		case "CMD":
			dst = &cmd
		default:
			continue
		}
		if err := json.Unmarshal([]byte(in.args), dst); err != nil {
			t.Fatalf("%s:%d: %s %s: use the exec (JSON) form: %v", containerfile, in.line, in.cmd, in.args, err)
		}
	}
	full := append(entry, cmd...)
	if len(full) < 2 || path.Base(full[0]) != "meridian" {
		t.Fatalf("%s: ENTRYPOINT+CMD %q: want the meridian binary and its arguments", containerfile, full)
	}
	return full[1:]
}

// checkStatic fails unless bin is a statically linked ELF executable: no
// program interpreter, no shared libraries.
func checkStatic(t *testing.T, bin string) {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatalf("%s is not an ELF file: %v", bin, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("the built binary has a program interpreter (PT_INTERP): it is dynamically linked")
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		t.Fatalf("read the binary's dynamic section: %v", err)
	}
	if len(libs) > 0 {
		t.Errorf("the built binary needs shared libraries %v: it would not run on distroless static or scratch", libs)
	}
}

// checkBuildSettings reads the build settings Go records in the binary (what
// `go version -m` prints): cgo off, trimmed paths.
func checkBuildSettings(t *testing.T, bin string) {
	t.Helper()
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatalf("read build info: %v", err)
	}
	got := map[string]string{}
	for _, s := range info.Settings {
		got[s.Key] = s.Value
	}
	for k, want := range map[string]string{"CGO_ENABLED": "0", "GOOS": "linux", "-trimpath": "true"} {
		if got[k] != want {
			t.Errorf("build setting %s = %q, want %q (settings: %v)", k, got[k], want, info.Settings)
		}
	}
}

// TestIgnoreRules checks the .dockerignore matcher the build context copy uses.
func TestIgnoreRules(t *testing.T) {
	rules, err := parseIgnore([]byte("# c\n.git\nmeridian\n**/*.key\n**/testdata\ncerts/\n"))
	if err != nil {
		t.Fatal(err)
	}
	for rel, want := range map[string]bool{
		".git": true, ".git/HEAD": true, "meridian": true, "cmd/meridian": false, "cmd/meridian/main.go": false,
		"a.key": true, "certs/probe.key": true, "certs": true, "x/certs": false, "config/testdata/x.toml": true,
		"testdata": true, "config/config.go": false, "go.mod": false,
	} {
		if got := rules.ignored(rel); got != want {
			t.Errorf("ignored(%q) = %v, want %v", rel, got, want)
		}
	}
	if _, err := parseIgnore([]byte("!keep")); err == nil {
		t.Error("an exception pattern was accepted")
	}
}
