// Package gossip spreads every node's health observations to the others
// over hashicorp/memberlist, and feeds what it hears into a health.Table.
// It is the only package that imports memberlist.
//
// A Node owns one memberlist. Its delegates are thin, after memberlist's
// delegate.go and alertmanager's cluster/delegate.go: they decode, count and
// hand a health.View to Table.Merge, whose short mutex section is the only
// thing they wait for. The state lives in health.Local (this node's own
// observations) and health.Table (everyone's); gossip only carries it:
//
//   - A change to one of this node's observations goes out as a broadcast
//     named after its target, so a newer change to the same target replaces
//     the one still queued (memberlist.NamedBroadcast). A change of RTT alone
//     only goes out when it is large enough (see rttMoved).
//   - Push/pull (anti-entropy, and the state exchanged on join) carries this
//     node's whole own view and nothing else, so what a dead node said fades
//     at every receiver after stale_after instead of being passed around.
//   - Every view carries its origin's epoch (process start) and seq, so a
//     restarted node supersedes what it said before; receivers never compare
//     wall clocks (serf's ordering).
//   - Every stale_after/3 each node sends every live peer a heartbeat (a
//     view with no observations), so a node that has nothing new to say
//     stays fresh, and one whose delegate hangs while memberlist keeps it
//     alive goes stale at every receiver after stale_after (heartbeat.go).
//
// Besides health, a node can share opaque state with every peer (Options.
// Exchange: the skew package's per-node statistics). That goes point to
// point, never relayed: each interval, and shortly after a peer joins, the
// node sends its export to every live peer over memberlist's reliable
// stream, and hands each peer's newest export to Exchange.Accept from its
// own goroutine (see exchange.go).
//
// Packets are encrypted with the memberlist keyring (AES-GCM; the keyring
// file can be rotated without a partition, see Node.UpdateKeyring) and
// labelled with the cluster name, so a node with a wrong key or of another
// cluster is never merged. Transport "tls" replaces memberlist's UDP and TCP
// with mutual TLS over TCP.
package gossip
