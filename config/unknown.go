package config

import (
	"encoding"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// BurntSushi's MetaData.Undecoded names an unknown key inside an array of
// tables without the element's index ("services.polcy"), which leaves the
// reader to find which of twenty services holds the typo. unknownKeys walks
// the decoded TOML tree next to the Config type instead, and names each
// unknown key with its indexes ("services[0].polcy",
// "services[1].endpoints[2].wieght"). An undecoded key the walk does not
// account for (it should not happen) is still reported as Undecoded has it,
// so that no unknown key goes unreported; and a path the walk finds but
// Undecoded does not (a key BurntSushi matched to a field regardless of
// case) is not reported.

var (
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
	indexes         = regexp.MustCompile(`\[\d+\]`)
)

// unknownKeys returns the key paths of data that no field of Config takes,
// in document order (then by index), given the decode's metadata.
func unknownKeys(data string, md toml.MetaData) []string {
	undecoded := md.Undecoded()
	if len(undecoded) == 0 {
		return nil
	}
	var tree map[string]any
	var found []string
	if _, err := toml.Decode(data, &tree); err == nil {
		walkUnknown(tree, reflect.TypeFor[Config](), "", &found)
	}
	// Order by the document order of the key without indexes; keys the walk
	// missed keep Undecoded's form.
	order := map[string]int{}
	for i, k := range undecoded {
		if _, ok := order[k.String()]; !ok {
			order[k.String()] = i
		}
	}
	// Report only what Undecoded reports too: BurntSushi also matches keys
	// to fields regardless of case, which the walk does not.
	found = slices.DeleteFunc(found, func(p string) bool {
		_, ok := order[indexes.ReplaceAllString(p, "")]
		return !ok
	})
	covered := map[string]bool{}
	for _, p := range found {
		covered[indexes.ReplaceAllString(p, "")] = true
	}
	for _, k := range undecoded {
		if !covered[k.String()] {
			found = append(found, k.String())
			covered[k.String()] = true
		}
	}
	sort.SliceStable(found, func(i, j int) bool { return before(found[i], found[j], order) })
	return found
}

// before orders two key paths as the document holds them: within one
// array of tables by index, otherwise by where Undecoded first met the key
// (order holds that position by the path without indexes).
func before(a, b string, order map[string]int) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for k := 0; k < len(as) && k < len(bs); k++ {
		an, ai, aok := strings.Cut(as[k], "[")
		bn, bi, bok := strings.Cut(bs[k], "[")
		if an != bn {
			break
		}
		if aok && bok && ai != bi {
			x, _ := strconv.Atoi(strings.TrimSuffix(ai, "]"))
			y, _ := strconv.Atoi(strings.TrimSuffix(bi, "]"))
			return x < y
		}
	}
	return order[indexes.ReplaceAllString(a, "")] < order[indexes.ReplaceAllString(b, "")]
}

// walkUnknown appends to out the path of every key of table that type t
// (a struct) has no field for, and walks into the values of those it has.
func walkUnknown(table map[string]any, t reflect.Type, path string, out *[]string) {
	fields := tomlFields(t)
	keys := make([]string, 0, len(table))
	for k := range table {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		ft, ok := fields[k]
		if !ok {
			*out = append(*out, join(path, k))
			continue
		}
		walkValue(table[k], ft, join(path, k), out)
	}
}

// walkValue walks v, the value of a field of type t at path.
func walkValue(v any, t reflect.Type, path string, out *[]string) {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(textUnmarshaler) {
		return // a leaf written as a string (Duration)
	}
	switch t.Kind() {
	case reflect.Struct:
		if m, ok := v.(map[string]any); ok {
			walkUnknown(m, t, path, out)
		}
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			return
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			walkValue(m[k], t.Elem(), join(path, k), out)
		}
	case reflect.Slice, reflect.Array:
		for i, e := range elements(v) {
			walkValue(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i), out)
		}
	}
}

// elements returns the items of a decoded TOML array: an array of tables
// decodes as []map[string]any, any other array as []any.
func elements(v any) []any {
	switch a := v.(type) {
	case []map[string]any:
		out := make([]any, len(a))
		for i, m := range a {
			out[i] = m
		}
		return out
	case []any:
		return a
	}
	return nil
}

// tomlFields maps the TOML keys of struct type t to their field types,
// with the fields of embedded structs promoted, as BurntSushi decodes them.
func tomlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("toml")
		name, _, _ := strings.Cut(tag, ",")
		switch {
		case name == "-" || !f.IsExported():
		case f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct:
			for k, ft := range tomlFields(f.Type) {
				out[k] = ft
			}
		case name != "":
			out[name] = f.Type
		default:
			out[f.Name] = f.Type
		}
	}
	return out
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
