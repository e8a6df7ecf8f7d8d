package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"meridian/config"
)

// FuzzParse checks that no input makes Parse panic, that every failure is a
// *config.Error naming at least one problem, and that validation does not
// depend on map iteration order. The file name puts relative paths in
// testdata, so the seeds' zone files are read too.
func FuzzParse(f *testing.F) {
	seeds, err := filepath.Glob("testdata/*.toml")
	if err != nil {
		f.Fatal(err)
	}
	for _, path := range append(seeds, "../config.toml") {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := config.Parse(data, "testdata/fuzz.toml")
		if err == nil {
			if c == nil {
				t.Fatal("Parse returned neither a Config nor an error")
			}
			return
		}
		var ce *config.Error
		if !errors.As(err, &ce) || len(ce.Problems) == 0 {
			t.Fatalf("Parse error %v (%T) is not a *config.Error with problems", err, err)
		}
		for _, p := range ce.Problems {
			if p.Msg == "" {
				t.Errorf("problem at %q has no message", p.Key)
			}
		}
		// The TOML library walks tables in map order: it stops at the first
		// bad value, and when two keys differ only in case (it matches
		// field names case-insensitively) either may fill the field. Only
		// validation must report the same problems in the same order.
		md, derr := toml.Decode(string(data), new(config.Config))
		if derr != nil || caseCollision(md.Keys()) {
			return
		}
		if _, again := config.Parse(data, "testdata/fuzz.toml"); again == nil || again.Error() != err.Error() {
			t.Fatalf("Parse is not deterministic:\n%v\nthen\n%v", err, again)
		}
	})
}

// caseCollision reports whether two keys differ only in letter case.
func caseCollision(keys []toml.Key) bool {
	seen := map[string]string{}
	for _, k := range keys {
		s := k.String()
		if prev, ok := seen[strings.ToLower(s)]; ok && prev != s {
			return true
		}
		seen[strings.ToLower(s)] = s
	}
	return false
}
