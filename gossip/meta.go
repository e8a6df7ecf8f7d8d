package gossip

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The gossip protocol version a node announces in its metadata. A peer
// with another major version is logged and ignored: it is not a member of
// the table and its views are not merged. Minor versions interoperate:
//
//	1.0  views (broadcast and full), exchange
//	1.1  heartbeats every stale_after/3 (see heartbeat.go): a peer's
//	     silence past stale_after makes its views stale while it is alive
const (
	protocolMajor = 1
	protocolMinor = 1

	minorHeartbeats = 1 // the first minor version that sends heartbeats
)

// metaVersion is the first byte of the node metadata.
const metaVersion byte = 1

// Metadata flags.
const flagDraining byte = 1 << 0

// meta is what a node tells the cluster about itself in memberlist's node
// metadata (at most memberlist.MetaMaxSize, 512 bytes):
//
//	metaVersion:byte major:byte minor:byte flags:byte region:string
type meta struct {
	Major, Minor byte
	Draining     bool
	Region       string
}

func (m meta) encode() []byte {
	var flags byte
	if m.Draining {
		flags |= flagDraining
	}
	b := make([]byte, 0, 6+len(m.Region))
	b = append(b, metaVersion, m.Major, m.Minor, flags)
	return appendString(b, m.Region)
}

func decodeMeta(b []byte) (meta, error) {
	if len(b) < 4 {
		return meta{}, errors.New("node metadata truncated")
	}
	if b[0] != metaVersion {
		return meta{}, fmt.Errorf("node metadata version %d (this node speaks %d)", b[0], metaVersion)
	}
	m := meta{Major: b[1], Minor: b[2], Draining: b[3]&flagDraining != 0}
	n, k := binary.Uvarint(b[4:])
	if k <= 0 || n > maxRegion || n > uint64(len(b)-4-k) {
		return meta{}, errors.New("node metadata: bad region")
	}
	m.Region = string(b[4+k : 4+k+int(n)])
	return m, nil
}

// compatible reports whether a peer speaking m can be merged.
func (m meta) compatible() bool { return m.Major == protocolMajor }

// heartbeats reports whether a peer speaking m sends heartbeats.
func (m meta) heartbeats() bool { return m.compatible() && m.Minor >= minorHeartbeats }
