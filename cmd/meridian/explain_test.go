package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestExplainLatency asks a running node why clients of two networks get
// the endpoints they get.
func TestExplainLatency(t *testing.T) {
	dnsPort, httpPort := freePort(t), freePort(t)
	file := filepath.Join(t.TempDir(), "config.toml")
	os.WriteFile(file, []byte(fmt.Sprintf(`
[node]
name = "n1"
region = "us-east"
[dns]
listen = ["127.0.0.1:%d"]
[http]
listen = "127.0.0.1:%d"
[regions.us-east]
location = [39.04, -77.49]
[regions.eu-west]
location = [53.35, -6.26]
networks = ["10.2.0.0/16"]
[[zones]]
origin = "example.test."
ns = ["ns1.example.test."]
[[services]]
name = "api.example.test."
policy = "latency"
endpoints = [
  { name = "use1", region = "us-east", address = "192.0.2.1" },
  { name = "euw1", region = "eu-west", address = "192.0.2.2" },
]
`, dnsPort, httpPort)), 0o644)
	startServe(t, file, httpPort)
	http := fmt.Sprintf("127.0.0.1:%d", httpPort)
	cases := []struct {
		args []string
		want []string
	}{
		{[]string{"api.example.test", "-ecs", "10.2.7.0/24"}, []string{`placed in eu-west by rule "network" (network 10.2.0.0/16); ECS scope /16`,
			"euw1 eu-west 192.0.2.2 up 1 0 0.0ms (distance) yes", "use1 us-east 192.0.2.1 up 1 0 54.6ms (distance)\n"}},
		{[]string{"-client", "203.0.113.9", "api.example.test"}, []string{`placed in us-east by rule "node"; ECS scope /0`,
			"use1 us-east 192.0.2.1 up 1 0 0.0ms (distance) yes"}},
	}
	for _, c := range cases {
		var out, errb strings.Builder
		if code := run(t.Context(), append([]string{"explain", "-http", http}, c.args...), &out, &errb); code != 0 {
			t.Fatalf("explain %v exited %d: %s", c.args, code, errb.String())
		}
		for _, w := range c.want {
			if !strings.Contains(squeeze(out.String()), w) {
				t.Errorf("explain %v lacks %q:\n%s", c.args, w, out.String())
			}
		}
	}
	var out, errb strings.Builder
	if code := run(t.Context(), []string{"explain", "-http", http, "nx.example.test"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "not a steered name") {
		t.Errorf("explain of a missing name: exit %d, %q", code, errb.String())
	}
}

// squeeze folds runs of spaces (table padding) into one, keeping newlines.
func squeeze(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.Join(strings.Fields(l), " ")
	}
	return strings.Join(lines, "\n")
}
