package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"text/tabwriter"

	"meridian/resolver"
)

// explainHandler serves /api/v1/explain?name=NAME&client=IP|ecs=SUBNET.
func explainHandler(dns *resolver.Server) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		client, err := explainClient(r.URL.Query())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ex, err := dns.Explain(r.URL.Query().Get("name"), client)
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(ex)
	})
}

// explainClient reads the client from ?client=IP or ?ecs=SUBNET (its address).
func explainClient(q url.Values) (netip.Addr, error) {
	if s := q.Get("ecs"); s != "" {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("ecs %q is not a subnet", s)
		}
		return p.Masked().Addr(), nil
	}
	a, err := netip.ParseAddr(q.Get("client"))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("client %q is not an IP address (give client=IP or ecs=SUBNET)", q.Get("client"))
	}
	return a.Unmap(), nil
}

// runExplain implements `meridian explain NAME [-client IP | -ecs SUBNET]`.
func runExplain(args []string, stdout, stderr io.Writer) int {
	var c adminClient
	var client, ecs string
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c.register(fs)
	fs.StringVar(&client, "client", "127.0.0.1", "the client (or resolver) address")
	fs.StringVar(&ecs, "ecs", "", "the client subnet a resolver would send (overrides -client)")
	name, rest := splitName(args)
	if err := fs.Parse(rest); err != nil || name == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: meridian explain NAME [-client IP | -ecs SUBNET] [-http ADDR] [-json]")
		return 2
	}
	q := url.Values{"name": {name}, "client": {client}}
	if ecs != "" {
		q.Set("ecs", ecs)
	}
	var ex resolver.Explanation
	raw, err := c.get("/api/v1/explain?"+q.Encode(), &ex)
	if err != nil {
		fmt.Fprintln(stderr, "meridian explain:", err)
		return 1
	}
	if c.json {
		stdout.Write(raw)
		return 0
	}
	printExplanation(stdout, ex)
	return 0
}

// splitName takes the first argument not starting with "-" as the name, so
// flags may come before or after it.
func splitName(args []string) (string, []string) {
	for i, a := range args {
		if len(a) > 0 && a[0] != '-' && (i == 0 || !flagTakesValue(args[i-1])) {
			return a, append(append([]string{}, args[:i]...), args[i+1:]...)
		}
	}
	return "", args
}

func flagTakesValue(f string) bool {
	switch f {
	case "-http", "--http", "-ca", "--ca", "-cert", "--cert", "-key", "--key", "-client", "--client", "-ecs", "--ecs":
		return true
	}
	return false
}

func printExplanation(w io.Writer, ex resolver.Explanation) {
	fmt.Fprintf(w, "%s (%s) for client %s\n", ex.Name, ex.Policy, ex.Client)
	if p := ex.Placement; p != nil {
		fmt.Fprintf(w, "placed in %s by rule %q", p.Region, p.Rule)
		if p.Network != "" {
			fmt.Fprintf(w, " (network %s)", p.Network)
		}
		fmt.Fprintf(w, "; ECS scope /%d\n", p.Scope)
	}
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "\nendpoint\tregion\taddress\thealth\tweight\tpriority\trtt\tin answer")
	for _, c := range ex.Candidates {
		health, rtt, in := "down", "-", ""
		if c.Up {
			health = "up"
		}
		if c.RTTSource != "" && c.RTTSource != "unknown" {
			rtt = fmt.Sprintf("%.1fms (%s)", c.RTTms, c.RTTSource)
		}
		if c.InAnswer {
			in = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", c.Endpoint, c.Region, c.Address, health, c.Weight, c.Priority, rtt, in)
	}
	tw.Flush()
	fmt.Fprintf(w, "\n%s\n", ex.Reason)
}
