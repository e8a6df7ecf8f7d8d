package config_test

import (
	"testing"
	"time"

	"meridian/config"
)

func TestQuorumNeeded(t *testing.T) {
	var (
		anyOne   = config.Quorum{Kind: config.QuorumAny}
		majority = config.Quorum{Kind: config.QuorumMajority}
		all      = config.Quorum{Kind: config.QuorumAll}
		two      = config.Quorum{Kind: config.QuorumCount, N: 2}
	)
	for _, tc := range []struct {
		name   string
		q      config.Quorum
		voters int
		want   int
	}{
		{"any of 0", anyOne, 0, 1},
		{"any of 5", anyOne, 5, 1},
		{"majority of 0", majority, 0, 1},
		{"majority of 1", majority, 1, 1},
		{"majority of 2", majority, 2, 2},
		{"majority of 3", majority, 3, 2},
		{"majority of 4", majority, 4, 3},
		{"majority of 5", majority, 5, 3},
		{"all of 0", all, 0, 1},
		{"all of 1", all, 1, 1},
		{"all of 4", all, 4, 4},
		{"2 of 0", two, 0, 1},
		{"2 of 1", two, 1, 1},
		{"2 of 2", two, 2, 2},
		{"2 of 5", two, 5, 2},
		{"zero value is majority", config.Quorum{}, 3, 2},
	} {
		if got := tc.q.Needed(tc.voters); got != tc.want {
			t.Errorf("%s: Needed(%d) = %d, want %d", tc.name, tc.voters, got, tc.want)
		}
	}
}

func TestParseQuorum(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want config.Quorum
	}{
		{"any", config.Quorum{Kind: config.QuorumAny}},
		{"majority", config.Quorum{Kind: config.QuorumMajority}},
		{"all", config.Quorum{Kind: config.QuorumAll}},
		{"1", config.Quorum{Kind: config.QuorumCount, N: 1}},
		{"3", config.Quorum{Kind: config.QuorumCount, N: 3}},
	} {
		got, err := config.ParseQuorum(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseQuorum(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestParseQuorumErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", `"" is not any, majority, all or a region count ≥ 1`},
		{"most", `"most" is not any, majority, all or a region count ≥ 1`},
		{"Majority", `"Majority" is not any, majority, all or a region count ≥ 1`},
		{"0", `"0" is not any, majority, all or a region count ≥ 1`},
		{"-1", `"-1" is not any, majority, all or a region count ≥ 1`},
		{"1.5", `"1.5" is not any, majority, all or a region count ≥ 1`},
	} {
		_, err := config.ParseQuorum(tc.in)
		if err == nil || err.Error() != tc.want {
			t.Errorf("ParseQuorum(%q) error = %v, want %q", tc.in, err, tc.want)
		}
	}
}

func TestParseTolerance(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want config.Tolerance
	}{
		{"0s", config.Tolerance{}},
		{"10ms", config.Tolerance{Abs: 10 * time.Millisecond}},
		{"1.5s", config.Tolerance{Abs: 1500 * time.Millisecond}},
		{"0%", config.Tolerance{}},
		{"20%", config.Tolerance{Fraction: 0.2}},
		{"12.5%", config.Tolerance{Fraction: 0.125}},
		{"1000%", config.Tolerance{Fraction: 10}},
	} {
		got, err := config.ParseTolerance(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseTolerance(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestParseToleranceErrors(t *testing.T) {
	const notDuration = ` is not a duration ("10ms") or a percentage ("20%")`
	const notPercent = ` is not a percentage between 0% and 1000%`
	for _, tc := range []struct{ in, want string }{
		{"", `""` + notDuration},
		{"fast", `"fast"` + notDuration},
		{"10", `"10"` + notDuration},
		{"-5ms", `"-5ms"` + notDuration},
		{"%", `"%"` + notPercent},
		{"-1%", `"-1%"` + notPercent},
		{"1001%", `"1001%"` + notPercent},
		{"NaN%", `"NaN%"` + notPercent},
		{"Inf%", `"Inf%"` + notPercent},
		{"ten%", `"ten%"` + notPercent},
	} {
		_, err := config.ParseTolerance(tc.in)
		if err == nil || err.Error() != tc.want {
			t.Errorf("ParseTolerance(%q) error = %v, want %q", tc.in, err, tc.want)
		}
	}
}

func TestToleranceWithin(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		name      string
		tol       string
		rtt, best time.Duration
		want      bool
	}{
		{"best itself, absolute", "10ms", 20 * ms, 20 * ms, true},
		{"inside absolute", "10ms", 29 * ms, 20 * ms, true},
		{"at the absolute edge", "10ms", 30 * ms, 20 * ms, true},
		{"past the absolute edge", "10ms", 31 * ms, 20 * ms, false},
		{"zero tolerance, best", "0s", 20 * ms, 20 * ms, true},
		{"zero tolerance, slower", "0s", 20*ms + 1, 20 * ms, false},
		{"best itself, fraction", "20%", 50 * ms, 50 * ms, true},
		{"inside fraction", "20%", 59 * ms, 50 * ms, true},
		{"at the fraction edge", "20%", 60 * ms, 50 * ms, true},
		{"past the fraction edge", "20%", 61 * ms, 50 * ms, false},
		{"fraction of a zero best", "20%", 1, 0, false},
		{"zero percent, best", "0%", 50 * ms, 50 * ms, true},
		{"zero percent, slower", "0%", 50*ms + 1, 50 * ms, false},
		{"faster than best", "10ms", 5 * ms, 20 * ms, true},
	} {
		tol, err := config.ParseTolerance(tc.tol)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := tol.Within(tc.rtt, tc.best); got != tc.want {
			t.Errorf("%s: %s Within(%s, %s) = %v, want %v", tc.name, tc.tol, tc.rtt, tc.best, got, tc.want)
		}
	}
}

func TestInZone(t *testing.T) {
	for _, tc := range []struct {
		name, origin string
		want         bool
	}{
		{"example.test.", "example.test.", true},
		{"api.example.test.", "example.test.", true},
		{"a.b.example.test.", "example.test.", true},
		{"badexample.test.", "example.test.", false},
		{"example.test.", "api.example.test.", false},
		{"anything.", ".", true},
	} {
		if got := config.InZone(tc.name, tc.origin); got != tc.want {
			t.Errorf("InZone(%q, %q) = %v, want %v", tc.name, tc.origin, got, tc.want)
		}
	}
}
