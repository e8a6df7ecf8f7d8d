package config_test

import (
	"bufio"
	"bytes"
	"encoding"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"meridian/config"
)

// referenceDoc is the configuration reference: one table row per key.
const referenceDoc = "../deploy/CONFIGURATION.md"

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

// configKeys walks t's toml tags and returns every key a configuration file
// can set, as the reference writes them: tables joined with ".", a map's
// key as NAME ("regions.NAME.location"), an array of tables as "[]"
// ("services[].endpoints[].weight"). Embedded structs add their fields to
// the outer table, as BurntSushi/toml decodes them.
func configKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if tag == "-" || !f.IsExported() {
			continue
		}
		if f.Anonymous && tag == "" {
			keys = append(keys, configKeys(f.Type, prefix)...)
			continue
		}
		if tag == "" {
			tag = f.Name
		}
		keys = append(keys, fieldKeys(f.Type, prefix+tag)...)
	}
	return keys
}

// fieldKeys returns the key of a field of type ft, or the keys inside it
// when it is a table, a map of tables or an array of tables.
func fieldKeys(ft reflect.Type, key string) []string {
	for ft.Kind() == reflect.Pointer {
		ft = ft.Elem()
	}
	table := func(t reflect.Type) bool {
		return t.Kind() == reflect.Struct && !reflect.PointerTo(t).Implements(textUnmarshaler)
	}
	switch {
	case table(ft):
		return configKeys(ft, key+".")
	case ft.Kind() == reflect.Map && table(ft.Elem()):
		return configKeys(ft.Elem(), key+".NAME.")
	case ft.Kind() == reflect.Slice && table(ft.Elem()):
		return configKeys(ft.Elem(), key+"[].")
	}
	return []string{key}
}

// docRow is one row of a reference table: | `key` | type | default | applies | meaning |.
type docRow struct {
	line  int
	key   string
	cells []string
}

var rowKey = regexp.MustCompile("^`([^`]+)`$")

// docRows returns the table rows of the reference whose first cell is a
// key in backticks.
func docRows(doc []byte) []docRow {
	var rows []docRow
	sc := bufio.NewScanner(bytes.NewReader(doc))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "|") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if m := rowKey.FindStringSubmatch(cells[0]); m != nil {
			rows = append(rows, docRow{line: n, key: m[1], cells: cells})
		}
	}
	return rows
}

// TestConfigurationReference keeps deploy/CONFIGURATION.md complete: every
// key the config structs decode has a row with its type, default, whether a
// reload applies it, and its meaning; every documented key exists.
func TestConfigurationReference(t *testing.T) {
	doc, err := os.ReadFile(referenceDoc)
	if err != nil {
		t.Fatalf("the configuration reference must exist: %v", err)
	}
	keys := configKeys(reflect.TypeFor[config.Config](), "")
	if len(keys) < 50 || !slices.Contains(keys, "services[].endpoints[].weight") || !slices.Contains(keys, "gossip.ca") {
		t.Fatalf("the struct walk found %d keys %v: it misses nested, array or embedded tables", len(keys), keys)
	}
	documented := map[string]docRow{}
	for _, r := range docRows(doc) {
		if prev, dup := documented[r.key]; dup {
			t.Errorf("%s:%d: key %s is documented twice (also line %d)", referenceDoc, r.line, r.key, prev.line)
		}
		documented[r.key] = r
		if !slices.Contains(keys, r.key) {
			t.Errorf("%s:%d: key %s is documented, but the configuration has no such key", referenceDoc, r.line, r.key)
		}
		if len(r.cells) != 5 || slices.Contains(r.cells, "") {
			t.Errorf("%s:%d: key %s: want 5 filled cells (key, type, default, applies, meaning), have %q", referenceDoc, r.line, r.key, r.cells)
			continue
		}
		if a := r.cells[3]; a != "reload" && a != "restart" {
			t.Errorf("%s:%d: key %s: applies %q, want reload or restart", referenceDoc, r.line, r.key, a)
		}
	}
	for _, k := range keys {
		if _, ok := documented[k]; !ok {
			t.Errorf("%s: key %s is not documented: add a row | `%s` | type | default | reload or restart | meaning |", referenceDoc, k, k)
		}
	}
}

func TestConfigKeysWalk(t *testing.T) {
	type inner struct {
		A string `toml:"a"`
	}
	type Files struct {
		CA string `toml:"ca"`
	}
	type outer struct {
		Plain  int               `toml:"plain"`
		Skip   string            `toml:"-"`
		Dur    config.Duration   `toml:"dur"`
		Ptr    *int              `toml:"ptr"`
		Table  inner             `toml:"table"`
		Map    map[string]inner  `toml:"map"`
		Labels map[string]string `toml:"labels"`
		List   []inner           `toml:"list"`
		Ints   []int             `toml:"ints"`
		Files
	}
	got := configKeys(reflect.TypeFor[outer](), "")
	want := []string{"plain", "dur", "ptr", "table.a", "map.NAME.a", "labels", "list[].a", "ints", "ca"}
	if !slices.Equal(got, want) {
		t.Errorf("configKeys = %q, want %q", got, want)
	}
}

// TestDeployDocTOMLBlocks keeps the configuration examples of the deploy
// guides in step with the schema, as TestReadmeTOMLBlocks does for the README.
func TestDeployDocTOMLBlocks(t *testing.T) {
	for _, file := range []string{"../deploy/DELEGATION.md", "../deploy/CONFIGURATION.md"} {
		doc, err := os.ReadFile(file)
		if err != nil {
			t.Fatalf("read %s: %v", file, err)
		}
		for _, b := range tomlBlocks(doc) {
			var c config.Config
			md, err := toml.Decode(b.text, &c)
			if err != nil {
				t.Errorf("%s:%d: toml block does not decode: %v", file, b.line, err)
				continue
			}
			for _, k := range md.Undecoded() {
				t.Errorf("%s:%d: toml block has unknown key %q", file, b.line, k.String())
			}
		}
	}
}
