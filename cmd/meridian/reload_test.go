package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// queryLoad sends A queries for name to server from a few clients, one
// query in flight per client, until stop is closed or limit queries have
// been sent; a query without an answer within a second is lost.
type queryLoad struct {
	sent, answered, lost atomic.Int64
	stop                 chan struct{}
	wg                   sync.WaitGroup
}

func startQueryLoad(server, name string, clients int, limit int64) *queryLoad {
	l := &queryLoad{stop: make(chan struct{})}
	for range clients {
		l.wg.Go(func() {
			c := &dns.Client{Net: "udp", Timeout: time.Second}
			q := new(dns.Msg).SetQuestion(dns.Fqdn(name), dns.TypeA)
			for l.sent.Load() < limit {
				select {
				case <-l.stop:
					return
				default:
				}
				l.sent.Add(1)
				if r, _, err := c.Exchange(q, server); err == nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) > 0 {
					l.answered.Add(1)
				} else {
					l.lost.Add(1)
				}
			}
		})
	}
	return l
}

func (l *queryLoad) finish() { close(l.stop); l.wg.Wait() }

// postReload calls POST /api/v1/reload and returns the status code and the
// decoded body.
func postReload(t *testing.T, httpPort int) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/api/v1/reload", httpPort), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("reload answered %q: %v", body, err)
	}
	return resp.StatusCode, out
}

// metricValue returns the value of an unlabelled metric on /metrics.
func metricValue(t *testing.T, httpPort int, name string) string {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", httpPort))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == name {
			return f[1]
		}
	}
	t.Fatalf("no %s on /metrics", name)
	return ""
}

// TestReloadUnderLoadLosesNoQuery reloads through POST /api/v1/reload 20
// times, good and bad files in turn, while clients query without pause:
// every query is answered, a bad file is refused with its error (422) and
// the old configuration keeps serving, and the reload metrics follow.
func TestReloadUnderLoadLosesNoQuery(t *testing.T) {
	file, dnsPort, httpPort := repoConfig(t)
	startServe(t, file, httpPort)
	good, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(good), `address = "192.0.2.10"`, `address = "192.0.2.300"`, 1)
	reweighted := strings.Replace(string(good), `weight = 100 },`, `weight = 0 },`, 2)

	load := startQueryLoad(fmt.Sprintf("127.0.0.1:%d", dnsPort), "api.gslb.example.test", 3, 200_000)
	for i := range 20 {
		text, wantOK := reweighted, true
		switch {
		case i%2 == 1:
			text, wantOK = bad, false
		case i%4 == 2:
			text = string(good)
		}
		if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		code, body := postReload(t, httpPort)
		if wantOK && (code != http.StatusOK || body["ok"] != true) {
			t.Fatalf("reload %d of a good file: %d %v", i, code, body)
		}
		if !wantOK {
			if code != http.StatusUnprocessableEntity || !strings.Contains(fmt.Sprint(body["error"]), `"192.0.2.300" is not an IP address`) {
				t.Fatalf("reload %d of a bad file: %d %v", i, code, body)
			}
			if got := metricValue(t, httpPort, "meridian_config_last_reload_successful"); got != "0" {
				t.Errorf("after a rejected reload meridian_config_last_reload_successful = %s", got)
			}
		}
		time.Sleep(25 * time.Millisecond) // let queries run against each configuration
	}
	load.finish()
	if got := metricValue(t, httpPort, "meridian_config_last_reload_successful"); got != "0" {
		t.Errorf("last reload was rejected, yet meridian_config_last_reload_successful = %s", got)
	}
	t.Logf("%d queries during 20 reloads: %d answered, %d lost", load.sent.Load(), load.answered.Load(), load.lost.Load())
	if load.lost.Load() != 0 || load.answered.Load() < 100 {
		t.Errorf("%d queries lost, %d answered", load.lost.Load(), load.answered.Load())
	}
	// The last good file set weights 0 on two endpoints: only aps1 answers.
	os.WriteFile(file, []byte(reweighted), 0o644)
	if code, body := postReload(t, httpPort); code != http.StatusOK {
		t.Fatalf("final reload: %d %v", code, body)
	}
	if out := strings.TrimSpace(dig(t, dnsPort, "api.gslb.example.test", "+short")); out != "192.0.2.30" {
		t.Errorf("after the reload only aps1 has weight, got %q", out)
	}
	if got := metricValue(t, httpPort, "meridian_config_last_reload_successful"); got != "1" {
		t.Errorf("after a good reload meridian_config_last_reload_successful = %s", got)
	}
}
