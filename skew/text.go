package skew

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// barWidth is the width of the share bars in characters.
const barWidth = 30

// WriteText writes the report for a terminal (`meridian skew`): the share
// table with brackets, bars for intended and estimated shares, the alarms
// and the top contributors.
func (rep *Report) WriteText(w io.Writer) error {
	b := bufio.NewWriter(w)
	fmt.Fprintf(b, "%s  (%s, window %s: %s – %s)\n", rep.Service, rep.Policy, rep.Window,
		rep.From.Format("2006-01-02 15:04:05Z"), rep.To.Format("15:04:05Z"))
	fmt.Fprintf(b, "nodes %s · %d answers · %d unverified · %d identities\n",
		strings.Join(rep.Nodes, ", "), rep.Answers, rep.Unverified, rep.Identities)
	fmt.Fprintf(b, "skew index (TVD) %.3f · unattributable %.0f%% · confidence %s\n\n",
		rep.TVD, 100*rep.Unattrib, rep.Confidence.Grade)
	fmt.Fprintf(b, "%-16s %-12s %9s %9s %9s %9s  %-17s %6s %6s\n",
		"endpoint", "region", "intended", "answered", "occupancy", "estimated", "bracket", "rho", "z")
	for _, e := range rep.Endpoints {
		fmt.Fprintf(b, "%-16s %-12s %8.1f%% %8.1f%% %8.1f%% %8.1f%%  [%5.1f%% – %5.1f%%] %6.2f %6.1f\n",
			e.Name, e.Region, 100*e.Intended, 100*e.Answered, 100*e.Occupancy, 100*e.Estimated,
			100*e.Lo, 100*e.Hi, e.Rho, e.Z)
	}
	fmt.Fprintf(b, "(answered: %s)\n\n", rep.AnsweredLabel)
	for _, e := range rep.Endpoints {
		fmt.Fprintf(b, "%-16s intended  %s %5.1f%%\n", e.Name, bar(e.Intended, -1, -1), 100*e.Intended)
		fmt.Fprintf(b, "%-16s estimated %s %5.1f%%\n", "", bar(e.Estimated, e.Lo, e.Hi), 100*e.Estimated)
	}
	if len(rep.Regions) > 1 {
		fmt.Fprintf(b, "\n%-16s %9s %9s %9s  %s\n", "region", "intended", "answered", "estimated", "bracket")
		for _, r := range rep.Regions {
			fmt.Fprintf(b, "%-16s %8.1f%% %8.1f%% %8.1f%%  [%5.1f%% – %5.1f%%]\n",
				r.Name, 100*r.Intended, 100*r.Answered, 100*r.Estimated, 100*r.Lo, 100*r.Hi)
		}
	}
	c := rep.Concentration
	fmt.Fprintf(b, "\nconcentration: top-1 %.1f%%, top-5 %.1f%%, top-20 %.1f%%, HHI %.3f, effective caches %.1f\n",
		100*c.Top1, 100*c.Top5, 100*c.Top20, c.HHI, c.NEff)
	t := rep.TTL
	fmt.Fprintf(b, "ttl: %d clamping (%.1f%% of demand), %d prefetching, %d pooled, %d saturated\n",
		t.Clamped, 100*t.ClampedShare, t.Prefetching, t.Pooled, t.Saturated)
	for _, f := range t.Clamps {
		fmt.Fprintf(b, "  floor %4.0f s: %d caches, %.1f%% of demand\n", f.FloorS, f.Identities, 100*f.Share)
	}
	if t.DrainEndpoint != "" {
		state := "complete"
		if !t.DrainDone {
			state = "still draining"
		}
		fmt.Fprintf(b, "drain of %s: below 5%% after %.0f s, below 1%% after %.0f s (%s)\n",
			t.DrainEndpoint, t.Drain5, t.Drain1, state)
	}
	fmt.Fprintln(b, "\nalarms:")
	if len(rep.Alarms) == 0 {
		fmt.Fprintln(b, "  none")
	}
	for _, a := range rep.Alarms {
		fmt.Fprintf(b, "  %s %s: %s\n", a.Kind, a.Endpoint, a.Detail)
	}
	if len(rep.Top) > 0 {
		fmt.Fprintln(b, "\ntop contributors to the skew:")
		for _, x := range rep.Top {
			fmt.Fprintf(b, "  %-40s %5.1f%% of demand, %+6.1f pp to %s (%s, %.2f lookups/s)\n",
				x.Identity, 100*x.Share, 100*x.Contribution, x.Endpoint, x.Class, x.Demand)
		}
	}
	fmt.Fprintf(b, "\nconfidence %s: %s\n", rep.Confidence.Grade, strings.Join(rep.Confidence.Reasons, "; "))
	return b.Flush()
}

// bar draws share v as a bar of barWidth characters; lo and hi (when not
// negative) mark the bracket with [ and ].
func bar(v, lo, hi float64) string {
	cells := []rune(strings.Repeat(" ", barWidth))
	n := int(clamp01(v)*barWidth + 0.5)
	for i := 0; i < n; i++ {
		cells[i] = '█'
	}
	if lo >= 0 && hi >= 0 {
		l := min(int(clamp01(lo)*barWidth), barWidth-1)
		h := min(int(clamp01(hi)*barWidth+0.5), barWidth-1)
		cells[l] = '['
		cells[h] = ']'
	}
	return "|" + string(cells) + "|"
}
