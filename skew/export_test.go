package skew

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

// sampleRecorder records a little of everything: two services, ECS and
// not, IPv4 and IPv6, several windows, health events.
func sampleRecorder(t testing.TB) (*Recorder, int64) {
	r, err := New(testConfig())
	if err != nil {
		t.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(8, 8))
	v6 := netip.MustParseAddr("2001:db8::53")
	for i := 0; i < 30; i++ {
		src := addr(i)
		var ecs netip.Prefix
		if i%3 == 0 {
			src = v6
			ecs = netip.PrefixFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), 24).Masked()
		}
		svc := i % 2
		ends := len(testConfig().Services[svc].Endpoints)
		for at := t0 + int64(rnd.IntN(30))*1e9; at < t0+int64(25*time.Minute); at += int64((20 + 60*rnd.ExpFloat64()) * 1e9) {
			r.Record(Answer{Service: svc, Source: src, ECS: ecs, Endpoints: 1 << rnd.IntN(ends), TTL: 30, At: at})
		}
	}
	r.RecordHealth(t0+int64(7*time.Minute), 0, 1, false, 1)
	r.RecordHealth(t0+int64(9*time.Minute), 0, 1, true, 1)
	return r, t0 + int64(25*time.Minute)
}

func TestExportRoundTrip(t *testing.T) {
	r, now := sampleRecorder(t)
	b, err := r.Export(now)
	if err != nil {
		t.Fatal(err)
	}
	x, err := DecodeExport(b)
	if err != nil {
		t.Fatal(err)
	}
	if want := r.snapshot(now, ""); !reflect.DeepEqual(x, want) {
		t.Fatalf("decoded export differs from the state it was encoded from")
	}
	var events, seqs int
	for _, w := range x.Windows {
		for _, sw := range w.Services {
			for _, s := range sw.Sequences {
				seqs++
				events += len(s.Events)
			}
		}
	}
	if seqs == 0 || len(x.Health) != 2 || x.RingStart == 0 {
		t.Fatalf("export holds %d sequences, %d health events, ring start %d", seqs, len(x.Health), x.RingStart)
	}
	perEvent := float64(len(b)) / float64(events)
	t.Logf("%d bytes, %d sequences, %d events: %.1f bytes per event all told", len(b), seqs, events, perEvent)
}

// TestExportSizeBound lowers the bound and checks that the export drops
// the shortest sequences, says so, fits, and still decodes.
func TestExportSizeBound(t *testing.T) {
	r, now := sampleRecorder(t)
	full, err := r.Export(now)
	if err != nil {
		t.Fatal(err)
	}
	defer func(v int) { exportLimit = v }(exportLimit)
	exportLimit = len(full) * 2 / 3
	b, err := r.Export(now)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > exportLimit {
		t.Errorf("export is %d bytes, over the %d-byte bound", len(b), exportLimit)
	}
	x, err := DecodeExport(b)
	if err != nil {
		t.Fatal(err)
	}
	if !x.Truncated {
		t.Error("a shortened export does not say it was truncated")
	}
	exportLimit = 100
	if _, err := r.Export(now); err == nil || !strings.Contains(err.Error(), "without any sequence") {
		t.Errorf("an export that cannot fit even without sequences: err = %v", err)
	}
}

// TestDecodeExportRejects checks bad inputs get errors that say what is
// wrong, and that every truncation of a good export is an error.
func TestDecodeExportRejects(t *testing.T) {
	r, now := sampleRecorder(t)
	good, err := r.Export(now)
	if err != nil {
		t.Fatal(err)
	}
	for n := 0; n < len(good); n++ {
		if _, err := DecodeExport(good[:n]); err == nil {
			t.Fatalf("the first %d of %d bytes decode without error", n, len(good))
		}
	}
	header := func(version byte, window uint64) []byte {
		b := append([]byte("MSKW"), version)
		b = appendString(b, "n")
		b = binary.AppendVarint(b, 1)
		return binary.AppendUvarint(b, window)
	}
	cases := []struct {
		name string
		b    []byte
		want string
	}{
		{"magic", []byte("HTTP/1.1 200 OK"), "bad magic"},
		{"version", header(9, uint64(time.Minute)), "version 9, this build reads 1"},
		{"window", header(1, 5), "window 5 ns is outside 1s..2h"},
		{"trailing", append(bytes.Clone(good), 0), "1 bytes after the last window"},
		{"oversize", append([]byte("MSKW"), make([]byte, MaxExportBytes)...), "more than"},
	}
	for _, c := range cases {
		_, err := DecodeExport(c.b)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "skew: decode export: ") {
			t.Errorf("%s: err = %v, want it to say %q", c.name, err, c.want)
		}
	}
	// A sequence naming an endpoint the service does not have.
	x := r.snapshot(now, "")
	for wi := range x.Windows {
		for si := range x.Windows[wi].Services {
			if sq := x.Windows[wi].Services[si].Sequences; len(sq) > 0 {
				sq[0].Events[0].Endpoints = 1 << 9
				b := x.appendTo(nil, 1<<30)
				if _, err := DecodeExport(b); err == nil || !strings.Contains(err.Error(), "do not fit") {
					t.Errorf("endpoint bit 9 of a 2- or 3-endpoint service: err = %v", err)
				}
				return
			}
		}
	}
	t.Fatal("no sequence to corrupt")
}

// FuzzDecodeExport: DecodeExport never panics; what it accepts re-encodes
// to the same export; and a report built from it does not panic either.
func FuzzDecodeExport(f *testing.F) {
	r, now := sampleRecorder(f)
	good, err := r.Export(now)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)/2])
	empty, _ := New(testConfig())
	b, _ := empty.Export(now)
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		x, err := DecodeExport(b)
		if err != nil {
			return
		}
		again, err := DecodeExport(x.appendTo(nil, 1<<30))
		if err != nil {
			t.Fatalf("re-encoding an accepted export fails to decode: %v", err)
		}
		if !reflect.DeepEqual(again, x) {
			t.Fatal("re-encoded export decodes differently")
		}
		for _, s := range x.Services {
			if _, err := buildReport(s, []*Export{x}, int64(x.Window), x.At, int64(x.Window), nil); err != nil {
				t.Fatalf("report over an accepted export: %v", err)
			}
		}
	})
}
