package main

import (
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"meridian/health"
)

// runStatus implements `meridian status`: the region × endpoint health
// matrix of a running node.
func runStatus(args []string, stdout, stderr io.Writer) int {
	var c adminClient
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c.register(fs)
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return 2
	}
	var st health.Status
	raw, err := c.get("/api/v1/status", &st)
	if err != nil {
		fmt.Fprintln(stderr, "meridian status:", err)
		return 1
	}
	if c.json {
		stdout.Write(raw)
		return 0
	}
	printStatus(stdout, st)
	return 0
}

func printStatus(w io.Writer, st health.Status) {
	fmt.Fprintf(w, "node %s (%s) at %s\n\nmembers:\n", st.Node, st.Region, st.Time.Format("2006-01-02 15:04:05Z07:00"))
	regions := map[string]bool{}
	for _, m := range st.Members {
		state := "alive"
		if !m.Alive {
			state = "gone"
		}
		fmt.Fprintf(w, "  %-20s %-12s %s\n", m.Name, m.Region, state)
		regions[m.Region] = true
	}
	cols := sortedKeys(regions)
	for _, s := range st.Services {
		fmt.Fprintf(w, "\n%s  (%s, quorum %s)\n", s.Name, s.Policy, s.Quorum)
		tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
		fmt.Fprintf(tw, "  endpoint\taddress\tverdict\t%s\n", strings.Join(cols, "\t"))
		for _, e := range s.Endpoints {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", e.Name, e.Address, e.State, strings.Join(voteCells(e, cols), "\t"))
		}
		tw.Flush()
	}
}

// voteCells is one row of the matrix: each region's vote with its RTT, or
// the reason most of its nodes gave for down.
func voteCells(e health.EndpointStatus, regions []string) []string {
	cells := make([]string, len(regions))
	for i, r := range regions {
		cells[i] = "-"
		for _, v := range e.Votes {
			if v.Region == r && v.State != "unknown" {
				cells[i] = fmt.Sprintf("%s %.1fms", v.State, v.RTTms)
				if v.State == "down" {
					cells[i] = "down " + regionReason(e, r)
				}
			}
		}
	}
	return cells
}

func regionReason(e health.EndpointStatus, region string) string {
	for _, o := range e.Observers {
		if o.Region == region && o.State == "down" && o.Reason != "" {
			return "(" + o.Reason + ")"
		}
	}
	return ""
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
