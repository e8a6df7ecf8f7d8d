package probe

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"meridian/config"
	"meridian/internal/certtest"
)

// TestReloadingParsesOnlyOnChange checks that an unchanged file costs no
// parse, a changed one is parsed again, and a broken one keeps the last good
// value until it is fixed.
func TestReloadingParsesOnlyOnChange(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(file+".new", []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(file+".new", file); err != nil {
			t.Fatal(err)
		}
	}
	parses := 0
	l := &reloading[string]{files: []string{file}, parse: func(d [][]byte) (string, error) {
		parses++
		if bytes.Equal(d[0], []byte("bad")) {
			return "", errors.New("bad content")
		}
		return string(d[0]), nil
	}}
	get := func(want string, wantParses int) {
		t.Helper()
		if v, err := l.get(); v != want || err != nil || parses != wantParses {
			t.Fatalf("get = %q, %v after %d parses; want %q after %d", v, err, parses, want, wantParses)
		}
	}
	write("bad")
	if _, err := l.get(); err == nil {
		t.Fatal("first load of a bad file: want an error")
	}
	write("one")
	get("one", 2)
	get("one", 2)
	write("bad")
	get("one", 3) // half-done rotation: keep the last good value
	get("one", 4) // and try again next time
	write("two")
	get("two", 5)
}

func TestNewSpec(t *testing.T) {
	ca := certtest.New(t)
	good := clientFiles(t, ca, ca, "probe")
	for _, tc := range []struct {
		name  string
		check config.Check
		files config.TLSFiles
		want  string
	}{
		{"unknown type", config.Check{Type: "smtp"}, good, `check test: unknown type "smtp"`},
		{"bad regexp", config.Check{Type: "https", ExpectBody: "("}, good, "check test: expect_body: error parsing regexp: missing closing ): `(`"},
		{"bad qtype", config.Check{Type: "dns", QueryType: "BOGUS"}, good, `check test: query_type "BOGUS" is not a DNS type`},
		{"bad rcode", config.Check{Type: "dns", ExpectRcode: "MAYBE"}, good, `check test: expect_rcode "MAYBE" is not a DNS rcode`},
		{"missing cert", config.Check{Type: "tls"}, config.TLSFiles{Cert: "/nonexistent.pem", Key: "/nonexistent.key"},
			"check test: client identity: stat /nonexistent.pem: no such file or directory"},
		{"key of another cert", config.Check{Type: "tls", TLSFiles: config.TLSFiles{Cert: good.Cert, Key: clientFiles(t, ca, ca, "x").Key}}, good,
			"check test: client identity: parse [" + good.Cert},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewSpec("test", tc.check, tc.files)
			if err == nil || len(err.Error()) < len(tc.want) || err.Error()[:len(tc.want)] != tc.want {
				t.Fatalf("error %v, want prefix %q", err, tc.want)
			}
		})
	}
}

func TestMergeFiles(t *testing.T) {
	defaults := config.TLSFiles{CA: "ca", Cert: "cert", Key: "key"}
	if got := mergeFiles(config.TLSFiles{}, defaults); got != defaults {
		t.Errorf("no override: %+v", got)
	}
	got := mergeFiles(config.TLSFiles{CA: "ca2"}, defaults)
	if got != (config.TLSFiles{CA: "ca2", Cert: "cert", Key: "key"}) {
		t.Errorf("CA override: %+v", got)
	}
	got = mergeFiles(config.TLSFiles{Cert: "c2", Key: "k2"}, defaults)
	if got != (config.TLSFiles{CA: "ca", Cert: "c2", Key: "k2"}) {
		t.Errorf("pair override: %+v", got)
	}
}
