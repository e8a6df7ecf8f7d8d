package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDemo runs `meridian demo` on free ports: it becomes ready with every
// backend answered by every node, fails one backend after -fail-after and
// every node's answers drop it, and on cancel it stops cleanly and removes
// its temporary folder.
func TestDemo(t *testing.T) {
	dnsPort := freeRun(t, 3)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, logs := &syncBuffer{}, &syncBuffer{}
	args := []string{"demo", "-fail-after", "6s", "-dns-port", itoa(dnsPort), "-http-port", itoa(freeRun(t, 3)),
		"-gossip-port", itoa(freeRun(t, 3)), "-backend-port", itoa(freePort(t))}
	done := make(chan int, 1)
	start := time.Now()
	go func() { done <- run(ctx, args, out, logs) }()
	eventually(t, 30*time.Second, "the demo ready", func() bool {
		select {
		case code := <-done:
			t.Fatalf("demo exited %d: %s\n%s", code, out, logs)
		default:
		}
		return strings.Contains(out.String(), "meridian demo: ready")
	})
	t.Logf("demo ready, every backend up at every node, after %s", time.Since(start).Round(time.Millisecond))
	all := []string{"127.0.0.11", "127.0.0.12", "127.0.0.13"}
	// Ready means every node answered every backend once; under a loaded
	// machine a 500 ms probe can still time out and flap, so each node is
	// given a few seconds to answer all three again (fail-after is later).
	for i := range 3 {
		eventually(t, 10*time.Second, fmt.Sprintf("node %d answering every backend", i), func() bool {
			return slices.Equal(answersOf(t, dnsPort+i, "all.gslb.example.test"), all)
		})
	}
	for i := range 3 {
		eventually(t, 15*time.Second, "the failed backend leaving every node's answers", func() bool {
			return slices.Equal(answersOf(t, dnsPort+i, "all.gslb.example.test"), []string{"127.0.0.11", "127.0.0.13"})
		})
	}
	if !strings.Contains(logs.String(), "endpoint verdict changed") || !strings.Contains(logs.String(), "to=down") {
		t.Errorf("the failover is not in the log:\n%s", logs)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("demo exited %d after cancel:\n%s", code, logs)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("demo did not stop within 30 s of cancel")
	}
	m := regexp.MustCompile(`files: (\S+)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("the demo did not say where its files are:\n%s", out)
	}
	if _, err := os.Stat(m[1]); !os.IsNotExist(err) {
		t.Errorf("the demo left %s behind (%v)", m[1], err)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// freeRun returns the first of n consecutive ports free for UDP and TCP on
// 127.0.0.1.
func freeRun(t *testing.T, n int) int {
	t.Helper()
	for range 50 {
		base := freePort(t)
		if base+n > 65535 {
			continue
		}
		ok := true
		for p := base + 1; p < base+n && ok; p++ {
			ok = portFree(p)
		}
		if ok {
			return base
		}
	}
	t.Fatalf("no %d consecutive free ports", n)
	return 0
}

// portFree reports whether port is free for both TCP and UDP on 127.0.0.1.
func portFree(port int) bool {
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	defer l.Close()
	u, err := net.ListenPacket("udp", addr)
	if err != nil {
		return false
	}
	u.Close()
	return true
}
