package gossip

import (
	"sync"
	"testing"
	"time"
)

// TestMembersWhileMetadataChanges reads Members and sends heartbeats while
// a peer's metadata keeps changing. memberlist rewrites its Node structs in
// place when a peer's metadata changes, so a node that read the pointers
// ml.Members() returns raced with it (the race detector caught it in the
// three-process end-to-end test); the node now reads its own copies, taken
// in the event delegate under memberlist's lock. Run with -race.
func TestMembersWhileMetadataChanges(t *testing.T) {
	checkGoroutines(t)
	nodes := startCluster(t, spec{name: "a", region: "us-east"}, spec{name: "b", region: "eu-west"})
	a, b := nodes[0], nodes[1]
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, m := range a.node.Members() {
				if m.Name == "b" && m.Region != "eu-west" {
					t.Errorf("b's region read as %q", m.Region)
				}
			}
			a.node.sendHeartbeat(a.node.ml.Load())
		}
	})
	for i := range 40 {
		if err := b.node.SetDraining(i%2 == 0); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	eventually(t, 5*time.Second, "b's last metadata (not draining) reaching a", func() bool {
		return a.hasMember("b")
	})
	close(stop)
	wg.Wait()
}
