package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"meridian/config"
)

// runCheck implements `meridian check [FILE]`: validate and print the plan.
func runCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil || fs.NArg() > 1 {
		fmt.Fprintln(stderr, "usage: meridian check [config.toml]")
		return 2
	}
	file := "config.toml"
	if fs.NArg() == 1 {
		file = fs.Arg(0)
	}
	cfg, err := config.Load(file)
	if err != nil {
		var cerr *config.Error
		if errors.As(err, &cerr) {
			fmt.Fprintf(stderr, "%s: %d problem(s):\n%v\n", file, len(cerr.Problems), err)
		} else {
			fmt.Fprintln(stderr, err)
		}
		return 1
	}
	printPlan(stdout, cfg)
	return 0
}

// printPlan writes what the configuration will do: zones, names, probes, warnings.
func printPlan(w io.Writer, cfg *config.Config) {
	fmt.Fprintf(w, "node %s in region %s; dns on %s; http on %s\n", cfg.Node.Name, cfg.Node.Region,
		strings.Join(cfg.DNS.Listen, ", "), cfg.HTTP.Listen)
	if cfg.Gossip.Enabled {
		fmt.Fprintf(w, "gossip on %s (%s, %s transport), joining %v\n", cfg.Gossip.Bind, cfg.Gossip.Profile, cfg.Gossip.Transport, cfg.Gossip.Join)
	} else {
		fmt.Fprintln(w, "gossip off: this node decides from its own probes")
	}
	for _, z := range cfg.Zones {
		fmt.Fprintf(w, "\nzone %s  ttl %d  ns %s  static records %d\n", z.Origin, z.TTL, strings.Join(z.NS, " "), len(z.RRs))
		printServices(w, cfg, z.Origin)
	}
	printProbes(w, cfg)
	if len(cfg.Warnings) > 0 {
		fmt.Fprintf(w, "\n%d warning(s):\n", len(cfg.Warnings))
		for _, p := range cfg.Warnings {
			fmt.Fprintf(w, "  %s\n", p)
		}
	}
}

func printServices(w io.Writer, cfg *config.Config, origin string) {
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	for _, s := range cfg.Services {
		if cfg.Zones[s.Zone].Origin != origin {
			continue
		}
		fmt.Fprintf(tw, "  %s\t%s\tttl %d\tmax %d\tcheck %s\tquorum %s\tfail_open %v\n", s.Name, s.Policy, s.TTL,
			s.MaxAnswers, orNone(s.Check), s.Quorum, s.FailsOpen())
		for _, e := range s.Endpoints {
			fmt.Fprintf(tw, "    %s\t%s\t%s\tweight %d\tpriority %d\tcheck %s\n", e.Name, e.Region,
				e.Address+e.CNAME, e.EffectiveWeight(), e.Priority, orNone(e.Check))
		}
	}
	tw.Flush()
}

// printProbes lists each distinct (check, address, port): each is probed once
// however many services use it.
func printProbes(w io.Writer, cfg *config.Config) {
	seen := map[string]bool{}
	var lines []string
	for _, s := range cfg.Services {
		for _, e := range s.Endpoints {
			if e.Check == "" {
				continue
			}
			addr := e.Address
			if e.ProbeAddress != "" {
				addr = e.ProbeAddress
			}
			ch := cfg.Checks[e.Check]
			key := fmt.Sprintf("%s %s port %d every %s (timeout %s, rise %d, fall %d)", e.Check, addr, ch.Port, ch.Interval, ch.Timeout, ch.Rise, ch.Fall)
			if !seen[key] {
				seen[key] = true
				lines = append(lines, key)
			}
		}
	}
	sort.Strings(lines)
	fmt.Fprintf(w, "\nprobes: %d\n", len(lines))
	for _, l := range lines {
		fmt.Fprintf(w, "  %s\n", l)
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
