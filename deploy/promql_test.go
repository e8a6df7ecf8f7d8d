package deploy_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// promqlRefs is what a PromQL expression names: the metrics it selects, the
// label names in each selector's matchers, and the label names of its
// by/without/on/ignoring/group_left/group_right clauses. It comes from a
// small lexer, not Prometheus's parser (whose module is large); promtool
// checks the syntax separately. The lexer drops strings, durations in [],
// numbers, keywords and function and aggregation names; every other
// identifier is a metric name.
type promqlRefs struct {
	metrics  []string
	matchers map[string][]string // metric → label names; "" for {…} with no name before it
	grouping []string
}

func wordSet(words ...string) map[string]bool {
	m := map[string]bool{}
	for _, w := range words {
		m[w] = true
	}
	return m
}

var (
	promqlAggregations = wordSet("sum", "min", "max", "avg", "group", "stddev", "stdvar", "count",
		"count_values", "bottomk", "topk", "quantile", "limitk", "limit_ratio")
	promqlGrouping = wordSet("by", "without", "on", "ignoring", "group_left", "group_right")
	promqlKeywords = wordSet("and", "or", "unless", "bool", "offset", "atan2", "inf", "nan")
)

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isIdentChar(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }

// skipString returns the index just past the string literal starting at i.
func skipString(s string, i int) (int, error) {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch {
		case s[j] == '\\' && q != '`':
			j++
		case s[j] == q:
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("unterminated string at offset %d", i)
}

// skipSpace returns the index of the next non-space byte at or after i.
func skipSpace(s string, i int) int {
	for i < len(s) && strings.ContainsRune(" \t\r\n", rune(s[i])) {
		i++
	}
	return i
}

// labelList reads "(a, b, …)" starting at the '(' at i.
func labelList(s string, i int) ([]string, int, error) {
	end := strings.IndexByte(s[i:], ')')
	if end < 0 {
		return nil, 0, fmt.Errorf("unclosed label list at offset %d", i)
	}
	var out []string
	for _, l := range strings.Split(s[i+1:i+end], ",") {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		for k := range len(l) {
			if !isIdentChar(l[k]) || l[k] == ':' {
				return nil, 0, fmt.Errorf("%q at offset %d is not a label name", l, i)
			}
		}
		out = append(out, l)
	}
	return out, i + end + 1, nil
}

// matcherLabels reads the label names of "{a="x", b=~"y"}" starting at the
// '{' at i.
func matcherLabels(s string, i int) ([]string, int, error) {
	var out []string
	for j := i + 1; j < len(s); {
		c := s[j]
		switch {
		case c == '}':
			return out, j + 1, nil
		case c == '"' || c == '\'' || c == '`':
			k, err := skipString(s, j)
			if err != nil {
				return nil, 0, err
			}
			j = k
		case isIdentStart(c):
			k := j
			for k < len(s) && isIdentChar(s[k]) {
				k++
			}
			if n := skipSpace(s, k); n < len(s) && strings.ContainsRune("=!", rune(s[n])) {
				out = append(out, s[j:k])
			}
			j = k
		default:
			j++
		}
	}
	return nil, 0, fmt.Errorf("unclosed selector at offset %d", i)
}

// parsePromQL lists what expr names.
func parsePromQL(expr string) (promqlRefs, error) {
	r := promqlRefs{matchers: map[string][]string{}}
	s, last := expr, "" // last: a metric name a following {…} belongs to
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case strings.ContainsRune(" \t\r\n", rune(c)):
			i++
			continue // keeps last: "name {…}" is one selector
		case c == '"' || c == '\'' || c == '`':
			j, err := skipString(s, i)
			if err != nil {
				return r, err
			}
			i = j
		case c == '#':
			if j := strings.IndexByte(s[i:], '\n'); j >= 0 {
				i += j
			} else {
				i = len(s)
			}
		case c == '[':
			j := strings.IndexByte(s[i:], ']')
			if j < 0 {
				return r, fmt.Errorf("unclosed [ at offset %d", i)
			}
			i += j + 1
		case c == '{':
			labels, j, err := matcherLabels(s, i)
			if err != nil {
				return r, err
			}
			r.matchers[last] = append(r.matchers[last], labels...)
			i = j
		case c >= '0' && c <= '9' || c == '.':
			for i < len(s) && (isIdentChar(s[i]) || s[i] == '.') {
				i++
			}
		case c == '$': // a Grafana variable outside a string
			i++
			for i < len(s) && (isIdentChar(s[i]) || s[i] == '{' || s[i] == '}') {
				i++
			}
		case isIdentStart(c):
			j := i
			for j < len(s) && isIdentChar(s[j]) {
				j++
			}
			word, next := s[i:j], skipSpace(s, j)
			i = j
			lw := strings.ToLower(word)
			switch {
			case promqlGrouping[lw]:
				if next < len(s) && s[next] == '(' {
					labels, k, err := labelList(s, next)
					if err != nil {
						return r, err
					}
					r.grouping = append(r.grouping, labels...)
					i = k
				}
			case promqlAggregations[lw] || promqlKeywords[lw]:
			case next < len(s) && s[next] == '(': // a function
			default:
				r.metrics = append(r.metrics, word)
				last = word
				continue
			}
		default:
			i++
		}
		last = ""
	}
	return r, nil
}

func TestParsePromQL(t *testing.T) {
	for _, c := range []struct {
		expr     string
		metrics  []string
		matchers map[string][]string
		grouping []string
	}{
		{expr: `histogram_quantile(0.95, sum by (le, check, phase) (rate(meridian_probe_duration_seconds_bucket[$__rate_interval])))`,
			metrics: []string{"meridian_probe_duration_seconds_bucket"}, grouping: []string{"le", "check", "phase"}},
		{expr: `sort((min by (check, target) (x_seconds) - time()) / 86400)`,
			metrics: []string{"x_seconds"}, grouping: []string{"check", "target"}},
		{expr: `up{job=~".*meridian.*"} == 0`, metrics: []string{"up"}, matchers: map[string][]string{"up": {"job"}}},
		{expr: `a < max_over_time(a[6h])`, metrics: []string{"a", "a"}},
		{expr: "sum(rate(foo {a=\"}\", b!~'x'}[5m])) without (c) > bool 1 and on() bar offset 5m # bar2\n+ baz",
			metrics: []string{"foo", "bar", "baz"}, matchers: map[string][]string{"foo": {"a", "b"}}, grouping: []string{"c"}},
		{expr: `count by (instance, region) (x) unless count by (region) (y{service=~"$service"}) * on (i) group_left(r) z`,
			metrics: []string{"x", "y", "z"}, matchers: map[string][]string{"y": {"service"}},
			grouping: []string{"instance", "region", "region", "i", "r"}},
		{expr: `{__name__="x", job="j"}`, matchers: map[string][]string{"": {"__name__", "job"}}},
	} {
		got, err := parsePromQL(c.expr)
		if err != nil {
			t.Errorf("%s: %v", c.expr, err)
			continue
		}
		if !slices.Equal(got.metrics, c.metrics) || !slices.Equal(got.grouping, c.grouping) {
			t.Errorf("%s: metrics %q grouping %q, want %q %q", c.expr, got.metrics, got.grouping, c.metrics, c.grouping)
		}
		for m, want := range c.matchers {
			if !slices.Equal(got.matchers[m], want) {
				t.Errorf("%s: matchers of %q = %q, want %q", c.expr, m, got.matchers[m], want)
			}
		}
		if len(got.matchers) != len(c.matchers) {
			t.Errorf("%s: matchers %q, want %q", c.expr, got.matchers, c.matchers)
		}
	}
	for _, bad := range []string{`foo{a="x"`, `rate(foo[5m)`, `"unterminated`, `sum by (a (x)`} {
		if _, err := parsePromQL(bad); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}
