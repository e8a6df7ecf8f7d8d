// Package netlab builds small networks with real, per-link round-trip times
// for tests, on a kernel without netem.
//
// A Lab is a set of hosts, each a network namespace with one interface
// (eth0, an address in Subnet). Every eth0 is one end of a veth pair whose
// other end sits in the lab's hub namespace, where no address is configured:
// the test process reads each hub-side end with an AF_PACKET raw socket and
// acts as an Ethernet switch (MAC learning, flooding of broadcast and unknown
// destinations) that holds every frame for the one-way delay of its (source
// host, destination host) link before sending it on. Each link is a FIFO
// with its own timer, so frames of one link keep their order and a link's
// delay never holds up another's. Because the delay is applied to packets,
// not to a proxied stream, a TCP handshake between two hosts really takes
// two one-way delays: probes that time their connect see the link's RTT.
//
//	host a (ns) eth0 ─veth─ p0 ┐
//	host b (ns) eth0 ─veth─ p1 ┼─ hub namespace: AF_PACKET sockets, relayed
//	host c (ns) eth0 ─veth─ p2 ┘  by this process with a delay per (src, dst)
//
// Transmit checksum offload is turned off on both ends of every veth
// (SIOCETHTOOL), so frames the kernel hands the hub carry complete
// checksums and the kernel segments TCP itself; otherwise relayed frames
// would arrive with checksums left for hardware that does not exist.
//
// Nothing is configured in the caller's own namespace, so concurrent labs
// (in one process or several) never clash: namespace names carry the
// process ID and a sequence number, and every lab can reuse Subnet. The
// test reaches a host through Host.DialContext and Host.Listen, which create
// the socket inside the host's namespace (a socket keeps the namespace it
// was created in), and runs programs there with Host.Command (`ip netns
// exec`). Close, registered with t.Cleanup by New, stops the hub and deletes
// every namespace, which destroys the veths with them; New also deletes the
// namespaces of labs whose process died without cleaning up (RemoveStale:
// the names carry the creator's process ID, looked up in /proc).
//
// netlab needs root and `ip` (iproute2). Without root, New fails the test
// with how to run it, unless MERIDIAN_NETLAB=skip asks for a skip in so
// many words (a developer's laptop); CI runs as root. Everything it runs is
// bounded in time.
package netlab
