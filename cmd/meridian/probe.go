package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"meridian/config"
	"meridian/probe"
)

const probeUsage = `usage: meridian probe [-config config.toml] [-json] --check NAME ADDRESS[:PORT]

Runs the check NAME of the configuration once against ADDRESS, an IP
address (the port defaults to the check's), presenting the configured client
certificate, and prints every phase with its time, the server's certificate
chain and the verdict. Flags may follow ADDRESS. With -json it prints the
result as JSON (durations in nanoseconds).

Exit status: 0 up, 1 down, 2 when the probe could not run (usage, an unknown
check, a configuration or client identity that does not load).
`

// Exit statuses of `meridian probe`.
const (
	probeExitUp    = 0
	probeExitDown  = 1
	probeExitUsage = 2
)

// runProbe implements `meridian probe`: one check, once, every phase shown.
func runProbe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("meridian probe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, probeUsage)
		fs.PrintDefaults()
	}
	file := fs.String("config", "config.toml", "configuration file")
	check := fs.String("check", "", "the check to run: its name in [checks]")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	positional, err := certsParseInterspersed(fs, args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return probeExitUp
	case err != nil:
		return probeExitUsage
	case *check == "" || len(positional) != 1:
		fmt.Fprintf(stderr, "meridian probe: want --check NAME and one ADDRESS, got --check %q and %q\n\n", *check, positional)
		fs.Usage()
		return probeExitUsage
	}
	spec, target, err := probeCmdPrepare(*file, *check, positional[0])
	if err != nil {
		fmt.Fprintln(stderr, "meridian probe:", err)
		return probeExitUsage
	}
	r := spec.Run(ctx, target)
	if *asJSON {
		err = probeCmdJSON(stdout, target, r)
	} else {
		err = probeCmdPrint(stdout, spec, target, r)
	}
	if err != nil {
		fmt.Fprintln(stderr, "meridian probe:", err)
		return probeExitUsage
	}
	if !r.OK {
		return probeExitDown
	}
	return probeExitUp
}

// probeCmdPrepare loads the configuration and builds the check's Spec and
// the target at address.
func probeCmdPrepare(file, check, address string) (*probe.Spec, probe.Target, error) {
	cfg, err := config.Load(file)
	if err != nil {
		return nil, probe.Target{}, err
	}
	c, ok := cfg.Checks[check]
	if !ok {
		names := slices.Sorted(maps.Keys(cfg.Checks))
		return nil, probe.Target{}, fmt.Errorf("%s has no check %q (have: %s)", file, check, orNone(strings.Join(names, ", ")))
	}
	target, err := probeCmdTarget(check, address, c.Port)
	if err != nil {
		return nil, probe.Target{}, err
	}
	spec, err := probe.NewSpec(check, c, cfg.TLS)
	if err != nil {
		return nil, probe.Target{}, err
	}
	return spec, target, nil
}

// probeCmdTarget parses ADDRESS[:PORT]: an IPv4 or IPv6 address, with a
// port in the form net.Dial takes ([2001:db8::1]:443); port is the default.
func probeCmdTarget(check, address string, port int) (probe.Target, error) {
	var addr netip.Addr
	if ap, err := netip.ParseAddrPort(address); err == nil {
		addr, port = ap.Addr(), int(ap.Port())
	} else if addr, err = netip.ParseAddr(address); err != nil {
		return probe.Target{}, fmt.Errorf("ADDRESS %q is not an IP address or IP:port", address)
	}
	if port <= 0 || port > 65535 {
		return probe.Target{}, fmt.Errorf("no port: give ADDRESS:PORT, or a port in check %s", check)
	}
	return probe.Target{Check: check, Address: addr.Unmap(), Port: port}, nil
}

// probeCmdJSON writes the target and the Result as one JSON object.
func probeCmdJSON(w io.Writer, t probe.Target, r probe.Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		Target string
		probe.Result
	}{t.String(), r})
}

// probeCmdPrint writes the result for a person: phases, chain, verdict.
func probeCmdPrint(w io.Writer, spec *probe.Spec, t probe.Target, r probe.Result) error {
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "probe %s (%s, timeout %s)\n", t, spec.Check.Type, spec.Check.Timeout)
	for _, p := range []struct {
		name string
		d    time.Duration
	}{{"connect", r.Phases.Connect}, {"tls handshake", r.Phases.TLSHandshake},
		{"first byte", r.Phases.FirstByte}, {"total", r.Duration}, {"rtt", r.RTT}} {
		fmt.Fprintf(tw, "  %s\t%s\n", p.name, probeCmdDuration(p.d))
	}
	if len(r.Chain) == 0 {
		fmt.Fprintln(tw, "server certificate chain: none seen")
	} else {
		fmt.Fprintf(tw, "server certificate chain (%d):\n", len(r.Chain))
	}
	for i, c := range r.Chain {
		fmt.Fprintf(tw, "  [%d] subject\t%s\n", i, c.Subject)
		fmt.Fprintf(tw, "      issuer\t%s\n", c.Issuer)
		fmt.Fprintf(tw, "      expires\t%s (%s)\n", c.NotAfter.UTC().Format("2006-01-02 15:04:05 UTC"), probeCmdUntil(c.NotAfter, r.Start))
		fmt.Fprintf(tw, "      dns names\t%s\n", orNone(strings.Join(c.DNSNames, ", ")))
	}
	if r.OK {
		fmt.Fprintln(tw, "verdict: up")
	} else {
		fmt.Fprintln(tw, "verdict: down")
		fmt.Fprintf(tw, "  reason\t%s\n", r.Reason)
		fmt.Fprintf(tw, "  detail\t%s\n", r.Detail)
	}
	return tw.Flush()
}

// probeCmdDuration shows a phase's time to the microsecond; "-" for a
// phase the probe did not reach or the check type does not have.
func probeCmdDuration(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return d.Round(time.Microsecond).String()
}

// probeCmdUntil says how far expiry is from now, in days.
func probeCmdUntil(expiry, now time.Time) string {
	days := int(expiry.Sub(now).Hours() / 24)
	if expiry.Before(now) {
		return fmt.Sprintf("expired %d days ago", -days)
	}
	return fmt.Sprintf("in %d days", days)
}
