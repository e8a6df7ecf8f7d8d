package deploy_test

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

const unitFile = "deploy/systemd/meridian.service"

// unit is a parsed systemd unit file: section → key → values in order.
type unit map[string]map[string][]string

func parseUnit(t *testing.T, data []byte) unit {
	t.Helper()
	u := unit{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
			u[section] = map[string][]string{}
		case strings.HasSuffix(line, "\\"):
			t.Fatalf("%s:%d: continuation lines are not used in this unit; keep one setting per line", unitFile, n)
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: %q is not key=value inside a section", unitFile, n, line)
			}
			u[section][strings.TrimSpace(k)] = append(u[section][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	return u
}

// one returns the single value of a [Service] key, failing when it is set
// other than once.
func (u unit) one(t *testing.T, key string) string {
	t.Helper()
	v := u["Service"][key]
	if len(v) != 1 {
		t.Errorf("%s: [Service] %s is set %d times, want once", unitFile, key, len(v))
		return ""
	}
	return v[0]
}

// TestSystemdUnit checks the hardening the unit promises, then runs
// `systemd-analyze verify` (which must print nothing: it reports unknown
// keys only as warnings) and `systemd-analyze security --offline` on a copy
// pointed at a freshly built meridian.
func TestSystemdUnit(t *testing.T) {
	analyze := requireTool(t, "systemd-analyze", "systemd")
	data := readFile(t, unitFile)
	u := parseUnit(t, data)

	want := map[string]string{
		"DynamicUser":             "yes",
		"AmbientCapabilities":     "CAP_NET_BIND_SERVICE",
		"CapabilityBoundingSet":   "CAP_NET_BIND_SERVICE",
		"NoNewPrivileges":         "yes",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"PrivateDevices":          "yes",
		"ProtectKernelTunables":   "yes",
		"ProtectKernelModules":    "yes",
		"ProtectKernelLogs":       "yes",
		"ProtectControlGroups":    "yes",
		"ProtectClock":            "yes",
		"RestrictNamespaces":      "yes",
		"RestrictRealtime":        "yes",
		"RestrictSUIDSGID":        "yes",
		"LockPersonality":         "yes",
		"MemoryDenyWriteExecute":  "yes",
		"SystemCallArchitectures": "native",
		"ConfigurationDirectory":  "meridian",
		"StateDirectory":          "meridian",
		"WorkingDirectory":        "/var/lib/meridian",
	}
	for k, v := range want {
		if got := u.one(t, k); got != v {
			t.Errorf("%s: %s=%s, want %s", unitFile, k, got, v)
		}
	}
	for _, k := range []string{"User", "Group"} {
		if v, ok := u["Service"][k]; ok {
			t.Errorf("%s: %s=%v: the service must run as its DynamicUser, no fixed account", unitFile, k, v)
		}
	}
	if !slices.Contains(u["Service"]["SystemCallFilter"], "@system-service") {
		t.Errorf("%s: SystemCallFilter does not allow-list @system-service: %v", unitFile, u["Service"]["SystemCallFilter"])
	}
	if fams := u.one(t, "RestrictAddressFamilies"); strings.HasPrefix(fams, "~") || !strings.Contains(fams, "AF_INET6") {
		t.Errorf("%s: RestrictAddressFamilies=%s: want an allow-list with AF_INET and AF_INET6", unitFile, fams)
	}

	reload := u["Service"]["ExecReload"]
	if len(reload) == 0 || !regexp.MustCompile(`^/\S*/kill -(HUP|s HUP|SIGHUP) \$MAINPID$`).MatchString(reload[len(reload)-1]) {
		t.Errorf("%s: the last ExecReload is %q, want kill -HUP $MAINPID", unitFile, reload)
	}
	start := strings.Fields(u.one(t, "ExecStart"))
	if len(start) < 2 || filepath.Base(start[0]) != "meridian" {
		t.Fatalf("%s: ExecStart=%v does not run meridian", unitFile, start)
	}
	if i := slices.Index(start, "-config"); i < 0 || i+1 >= len(start) || !strings.HasPrefix(start[i+1], "/etc/meridian/") {
		t.Errorf("%s: ExecStart=%v: -config must name a file in the ConfigurationDirectory /etc/meridian", unitFile, start)
	}

	bin := meridianBinary(t)
	checkServeArgs(t, unitFile+" ExecStart", bin, start[1:])

	// A copy pointed at the built binary: verify checks that ExecStart exists.
	dir := t.TempDir()
	unitCopy := filepath.Join(dir, "meridian.service")
	body := strings.ReplaceAll(string(data), start[0], bin)
	if err := os.WriteFile(unitCopy, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runTool(t, dir, time.Minute, analyze, "verify", unitCopy)
	if err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify %s: %v: it must pass without a warning:\n%s", unitFile, err, out)
	}

	out, err = runTool(t, dir, time.Minute, analyze, "security", "--offline=true", "--no-pager", unitCopy)
	m := regexp.MustCompile(`Overall exposure level for meridian\.service: ([0-9.]+)`).FindStringSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("systemd-analyze security --offline: %v:\n%s", err, out)
	}
	exposure, _ := strconv.ParseFloat(m[1], 64)
	t.Logf("systemd-analyze security: exposure %.1f", exposure)
	if exposure > 2.0 {
		t.Errorf("systemd-analyze security rates the unit's exposure %.1f, want at most 2.0 (hardening lost):\n%s", exposure, out)
	}
}
