package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"

	"meridian/config"
	"meridian/delegation"
)

const delegationUsage = `usage: meridian delegation check ZONE [flags]

Checks the delegation of ZONE the way one would with dig: asks the parent
zone's servers (found from the root, or -parent) for the zone's NS set and
glue, then every listed name server at every address for the zone's SOA and
NS set, and reports each finding as ok, warning or error. Exit status 1 when
any finding is an error.

Flags:
  -parent ADDR[:PORT]   ask this server of the parent zone instead of walking
                        from the root (port 53 if absent)
  -root ADDR[:PORT],... start the walk at these servers instead of the
                        built-in root hints (a lab or private root)
  -port N               port the name servers found from NS records and glue
                        are asked on (default 53; other ports are for labs)
  -config FILE          also compare with this node's configuration: the
                        zone's ns list, its records for the name servers and
                        dns.listen
  -json                 print the report as JSON
  -query-timeout D      time to wait for one answer (default 2s)
  -tries N              tries per query over UDP (default 2)
  -timeout D            time limit of the whole check (default 30s)
`

// runDelegation implements `meridian delegation check ZONE`.
func runDelegation(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "check" {
		fmt.Fprint(stderr, delegationUsage)
		return 2
	}
	var f delegationFlags
	fs := f.register()
	zone, rest := splitPositional(fs, args[1:])
	if err := fs.Parse(rest); err != nil || zone == "" || fs.NArg() > 0 {
		fmt.Fprint(stderr, delegationUsage)
		return 2
	}
	opts, err := f.options()
	if err != nil {
		fmt.Fprintf(stderr, "meridian delegation check: %v\n", err)
		return 2
	}
	if f.config != "" {
		if opts.Expect, err = expectFromConfig(f.config, zone); err != nil {
			fmt.Fprintf(stderr, "meridian delegation check: %v\n", err)
			return 1
		}
	}
	rep, err := delegation.Check(ctx, zone, opts)
	if err != nil {
		fmt.Fprintf(stderr, "meridian delegation check: %v\n", err)
		return 2
	}
	if f.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
	} else {
		printDelegation(stdout, rep)
	}
	if rep.Failed() {
		return 1
	}
	return 0
}

// delegationFlags are the flags of `meridian delegation check`.
type delegationFlags struct {
	parent, roots, config string
	port                  uint
	tries                 int
	json                  bool
	queryTimeout, timeout time.Duration
}

func (f *delegationFlags) register() *flag.FlagSet {
	fs := flag.NewFlagSet("delegation check", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // delegationUsage says it all
	fs.StringVar(&f.parent, "parent", "", "")
	fs.StringVar(&f.roots, "root", "", "")
	fs.UintVar(&f.port, "port", delegation.DefaultPort, "")
	fs.StringVar(&f.config, "config", "", "")
	fs.BoolVar(&f.json, "json", false, "")
	fs.DurationVar(&f.queryTimeout, "query-timeout", delegation.DefaultQueryTimeout, "")
	fs.IntVar(&f.tries, "tries", delegation.DefaultTries, "")
	fs.DurationVar(&f.timeout, "timeout", delegation.DefaultTimeout, "")
	return fs
}

// options checks the flags' values and turns them into Options.
func (f *delegationFlags) options() (delegation.Options, error) {
	switch {
	case f.port < 1 || f.port > 65535:
		return delegation.Options{}, fmt.Errorf("-port %d is outside 1..65535", f.port)
	case f.tries < 1 || f.tries > 10:
		return delegation.Options{}, fmt.Errorf("-tries %d is outside 1..10", f.tries)
	case f.queryTimeout <= 0 || f.timeout <= 0:
		return delegation.Options{}, fmt.Errorf("-query-timeout and -timeout must be positive")
	}
	opts := delegation.Options{Parent: f.parent, Port: uint16(f.port), QueryTimeout: f.queryTimeout,
		Tries: f.tries, Timeout: f.timeout}
	if f.roots != "" {
		opts.Roots = strings.Split(f.roots, ",")
	}
	return opts, nil
}

// splitPositional takes the first argument that is neither a flag nor a
// flag's value as the positional one, so that flags may come before or
// after it.
func splitPositional(fs *flag.FlagSet, args []string) (string, []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" || !strings.HasPrefix(a, "-") {
			if a == "--" {
				i++
			}
			if i < len(args) {
				return args[i], append(slices.Clone(args[:i]), args[i+1:]...)
			}
			break
		}
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		if fl := fs.Lookup(name); fl != nil {
			if b, ok := fl.Value.(interface{ IsBoolFlag() bool }); !ok || !b.IsBoolFlag() {
				i++ // the flag's value
			}
		}
	}
	return "", args
}

// expectFromConfig reads what the configuration in file says about zone:
// its ns list, the addresses its records give those names, and the node's
// DNS listen addresses.
func expectFromConfig(file, zone string) (*delegation.Expect, error) {
	cfg, err := config.Load(file)
	if err != nil {
		return nil, err
	}
	origin := strings.ToLower(dns.Fqdn(zone))
	i := slices.IndexFunc(cfg.Zones, func(z config.Zone) bool { return z.Origin == origin })
	if i < 0 {
		var have []string
		for _, z := range cfg.Zones {
			have = append(have, z.Origin)
		}
		return nil, fmt.Errorf("%s has no zone %s (it has %s)", file, origin, strings.Join(have, ", "))
	}
	z := cfg.Zones[i]
	e := &delegation.Expect{Source: file, NS: z.NS, Addrs: map[string][]netip.Addr{}}
	for _, rr := range z.RRs {
		name := strings.ToLower(rr.Header().Name)
		if !slices.ContainsFunc(z.NS, func(ns string) bool { return strings.EqualFold(ns, name) }) {
			continue
		}
		switch rr := rr.(type) {
		case *dns.A:
			a, _ := netip.AddrFromSlice(rr.A)
			e.Addrs[name] = append(e.Addrs[name], a.Unmap())
		case *dns.AAAA:
			a, _ := netip.AddrFromSlice(rr.AAAA)
			e.Addrs[name] = append(e.Addrs[name], a)
		}
	}
	for _, l := range cfg.DNS.Listen {
		if ap, err := netip.ParseAddrPort(l); err == nil {
			e.Listen = append(e.Listen, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
		}
	}
	return e, nil
}

// printDelegation writes the report: a heading, one finding per line and
// a count.
func printDelegation(w io.Writer, rep *delegation.Report) {
	fmt.Fprintf(w, "delegation of %s", rep.Zone)
	if rep.Parent != "" {
		fmt.Fprintf(w, " from parent zone %s", rep.Parent)
	}
	if len(rep.ParentServers) > 0 {
		fmt.Fprintf(w, " (asked %s)", strings.Join(rep.ParentServers, ", "))
	}
	fmt.Fprintln(w)
	for _, f := range rep.Findings {
		fmt.Fprintf(w, "%-7s  %-6s  %s\n", f.Severity, f.Check, f.Message)
	}
	errs, warns := rep.Count(delegation.Error), rep.Count(delegation.Warning)
	verdict := "the delegation is sound"
	if errs > 0 {
		verdict = "the delegation is broken"
	}
	fmt.Fprintf(w, "%s: %d error(s), %d warning(s)\n", verdict, errs, warns)
}
