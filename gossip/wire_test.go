package gossip

import (
	"bytes"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"meridian/health"
	"meridian/probe"
)

var (
	targetV4 = probe.Target{Check: "api", Address: netip.MustParseAddr("203.0.113.10"), Port: 443}
	targetV6 = probe.Target{Check: "db", Address: netip.MustParseAddr("2001:db8::1"), Port: 5432}
)

// sampleViews are valid views covering every field's edge values; they also
// seed FuzzDecode.
func sampleViews() []health.View {
	since := time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC)
	return []health.View{
		{Origin: "use1-a", Region: "us-east", Epoch: 1, Seq: 0},
		{Origin: "n", Full: true},
		{Origin: "use1-a", Region: "us-east", Epoch: 1_700_000_000_000_000_000, Seq: 42, Obs: []health.Observation{
			{Target: targetV4, State: health.Up, Since: since, RTT: 12 * time.Millisecond, Seq: 41},
		}},
		{Origin: strings.Repeat("o", maxOrigin), Region: strings.Repeat("r", maxRegion), Epoch: ^uint64(0), Seq: ^uint64(0), Full: true,
			Obs: []health.Observation{
				{Target: targetV4, State: health.Down, Since: since, Reason: probe.ReasonTimeout, Detail: "dial tcp: i/o timeout", Seq: 7},
				{Target: targetV6, State: health.Unknown, Reason: probe.ReasonTLSUnknownAuthority, Detail: strings.Repeat("é", maxDetail/2), Seq: 8},
				{Target: probe.Target{Check: strings.Repeat("c", maxCheck), Address: netip.MustParseAddr("::ffff:192.0.2.1"), Port: 65535}, State: health.Up, RTT: 1<<63 - 1, Seq: ^uint64(0)},
				{Target: probe.Target{Check: "cname", Port: 0}, State: health.Up},
			}},
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	for i, v := range sampleViews() {
		b, err := Encode(v)
		if err != nil {
			t.Fatalf("view %d: %v", i, err)
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("view %d: %v", i, err)
		}
		assertSameView(t, got, v)
	}
}

func assertSameView(t *testing.T, got, want health.View) {
	t.Helper()
	if got.Origin != want.Origin || got.Region != want.Region || got.Epoch != want.Epoch || got.Seq != want.Seq || got.Full != want.Full {
		t.Fatalf("header: got %+v, want %+v", got, want)
	}
	if !slices.EqualFunc(got.Obs, want.Obs, func(x, y health.Observation) bool {
		return x.Target == y.Target && x.State == y.State && x.Since.Equal(y.Since) &&
			x.RTT == y.RTT && x.Reason == y.Reason && x.Detail == y.Detail && x.Seq == y.Seq
	}) {
		t.Fatalf("observations:\ngot  %+v\nwant %+v", got.Obs, want.Obs)
	}
}

func TestEncodeTruncatesDetail(t *testing.T) {
	long := strings.Repeat("x", maxDetail-1) + "é" + "tail" // é straddles the limit
	v := health.View{Origin: "a", Obs: []health.Observation{{Target: targetV4, State: health.Down, Detail: long}}}
	b, err := Encode(v)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if d := got.Obs[0].Detail; d != strings.Repeat("x", maxDetail-1) {
		t.Errorf("detail %d bytes %q..., want the %d bytes before the split rune", len(d), d[len(d)-3:], maxDetail-1)
	}
}

func TestEncodeRejects(t *testing.T) {
	obs := func(o health.Observation) health.View { return health.View{Origin: "a", Obs: []health.Observation{o}} }
	for _, tc := range []struct {
		name string
		v    health.View
		want string
	}{
		{"no origin", health.View{}, "origin must be 1..128 bytes, not 0"},
		{"long origin", health.View{Origin: strings.Repeat("o", maxOrigin+1)}, "origin must be 1..128 bytes, not 129"},
		{"long region", health.View{Origin: "a", Region: strings.Repeat("r", maxRegion+1)}, "region must be at most 64 bytes"},
		{"too many", health.View{Origin: "a", Obs: make([]health.Observation, maxObs+1)}, "10001 observations: at most 10000"},
		{"long check", obs(health.Observation{Target: probe.Target{Check: strings.Repeat("c", maxCheck+1)}}), "check name must be 1..64 bytes, not 65"},
		{"empty check", obs(health.Observation{}), "check name must be 1..64 bytes, not 0"},
		{"port", obs(health.Observation{Target: probe.Target{Check: "c", Port: 70000}}), "port 70000 is outside 0..65535"},
		{"state", obs(health.Observation{Target: targetV4, State: 3}), "state 3 is not unknown, up or down"},
		{"negative state", obs(health.Observation{Target: targetV4, State: -1}), "state -1 is not unknown, up or down"},
	} {
		_, err := Encode(tc.v)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
	}
}

// valid is a message Decode accepts, for the rejection cases to corrupt.
func valid(t *testing.T) []byte {
	t.Helper()
	b, err := Encode(sampleViews()[2])
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeRejects(t *testing.T) {
	b := valid(t)
	with := func(i int, c byte) []byte { x := bytes.Clone(b); x[i] = c; return x }
	// Offsets in sampleViews()[2]: type, version, origin (1+6), region (1+7),
	// epoch (9), seq (1), count (1), then the observation: check (1+3), addr
	// (1+4), port (2), state (1).
	obsStart := 2 + 7 + 8 + 9 + 1 + 1
	stateAt := obsStart + 4 + 5 + 2
	for _, tc := range []struct {
		name string
		msg  []byte
		want string
	}{
		{"empty", nil, "message truncated"},
		{"type only", []byte{msgView}, "message truncated"},
		{"unknown type", with(0, 9), "unknown message type 9"},
		{"unknown version", with(1, 2), "unsupported format version 2 (this node speaks 1)"},
		{"truncated", b[:len(b)-1], "truncated"},
		{"trailing", append(bytes.Clone(b), 0), "1 trailing bytes"},
		{"empty origin", []byte{msgView, wireVersion, 0, 0, 1, 1, 0}, "empty origin"},
		{"long origin", []byte{msgView, wireVersion, 0x81, 0x01}, "origin is 129 bytes, more than 128"},
		{"huge count", []byte{msgView, wireVersion, 1, 'a', 0, 1, 1, 0x91, 0x4e}, "10001 observations, more than 10000"},
		{"count beyond message", []byte{msgView, wireVersion, 1, 'a', 0, 1, 1, 5, 0}, "message truncated"},
		{"bad varint", []byte{msgView, wireVersion, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, "bad or truncated varint"},
		{"bad state", with(stateAt, 3), "state 3 is not unknown, up or down"},
		{"negative state", with(stateAt, 0xff), "state 255 is not unknown, up or down"},
		{"bad address length", with(obsStart+4, 5), "address length 5 is not 0, 4 or 16"},
		{"empty check", with(obsStart, 0), "empty check name"},
	} {
		_, err := Decode(tc.msg)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "gossip: decode: ") {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestDecodeUnknownReasonIsError(t *testing.T) {
	v := health.View{Origin: "a", Obs: []health.Observation{{Target: targetV4, State: health.Down, Reason: "from_the_future"}}}
	b, err := Encode(v)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if r := got.Obs[0].Reason; r != probe.ReasonError {
		t.Errorf("reason %q, want %q", r, probe.ReasonError)
	}
	for _, r := range probe.Reasons() {
		v.Obs[0].Reason = r
		b, _ := Encode(v)
		if got, err := Decode(b); err != nil || got.Obs[0].Reason != r {
			t.Errorf("reason %q: got %q, %v", r, got.Obs[0].Reason, err)
		}
	}
}

// TestLargestBroadcastFits checks that one observation's broadcast fits in
// what memberlist leaves for user messages in a UDP packet with the
// longest label and encryption: 1400 - 2 - (2+255) - 29 - 3 bytes.
func TestLargestBroadcastFits(t *testing.T) {
	v := health.View{Origin: strings.Repeat("o", maxOrigin), Region: strings.Repeat("r", maxRegion), Epoch: ^uint64(0), Seq: ^uint64(0),
		Obs: []health.Observation{{
			Target: probe.Target{Check: strings.Repeat("c", maxCheck), Address: targetV6.Address, Port: 65535},
			State:  health.Down, Since: time.Now(), RTT: 1<<63 - 1, Reason: probe.ReasonTLSUnknownAuthority,
			Detail: strings.Repeat("d", 2*maxDetail), Seq: ^uint64(0),
		}}}
	b, err := Encode(v)
	if err != nil {
		t.Fatal(err)
	}
	if limit := 1400 - 2 - 257 - 29 - 3; len(b) > limit {
		t.Errorf("largest broadcast is %d bytes, more than %d", len(b), limit)
	}
}

func TestDecodeNeverPanicsOnPrefixes(t *testing.T) {
	for _, v := range sampleViews() {
		b, _ := Encode(v)
		for i := range b {
			if _, err := Decode(b[:i]); err == nil {
				t.Errorf("prefix %d of %d bytes decoded", i, len(b))
			}
		}
	}
}

// FuzzDecode checks that Decode never panics and that whatever it accepts
// encodes again to a message that decodes to the same view.
func FuzzDecode(f *testing.F) {
	for _, v := range sampleViews() {
		b, err := Encode(v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{msgFullView, wireVersion})
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := Decode(b)
		if err != nil {
			return
		}
		again, err := Encode(v)
		if err != nil {
			t.Fatalf("decoded view does not encode: %v", err)
		}
		w, err := Decode(again)
		if err != nil {
			t.Fatalf("re-encoded view does not decode: %v", err)
		}
		assertSameView(t, w, v)
	})
}
