package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"

	"meridian/skew"
)

// skewUsage is the usage line of `meridian skew`.
const skewUsage = "usage: meridian skew [-http ADDR] [-service NAME] [-window 1h] [-json] [-ca FILE -cert FILE -key FILE]"

// runSkew implements `meridian skew`: a running node's cluster-wide client
// skew report, for one service or every service with answers in the
// window, as text (Report.WriteText) or the node's JSON.
func runSkew(args []string, stdout, stderr io.Writer) int {
	var c adminClient
	var service, window string
	fs := flag.NewFlagSet("skew", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, skewUsage); fs.PrintDefaults() }
	c.register(fs)
	fs.StringVar(&service, "service", "", "the service (a steered name); default: every service with answers")
	fs.StringVar(&window, "window", "1h", "the report's window: a multiple of 5m up to 1h")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "meridian skew: unexpected argument %q\n%s\n", fs.Arg(0), skewUsage)
		return 2
	}
	q := url.Values{"window": {window}}
	var reports []skew.Report
	var raw []byte
	var err error
	if service != "" {
		q.Set("service", service)
		var rep skew.Report
		raw, err = c.get("/api/v1/skew?"+q.Encode(), &rep)
		reports = []skew.Report{rep}
	} else {
		raw, err = c.get("/api/v1/skew?"+q.Encode(), &reports)
	}
	if err != nil {
		fmt.Fprintln(stderr, "meridian skew:", err)
		return 1
	}
	if c.json {
		stdout.Write(raw)
		return 0
	}
	if len(reports) == 0 {
		fmt.Fprintf(stdout, "no answers recorded for any service in the last %s yet\n", window)
		return 0
	}
	for i := range reports {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		if err := reports[i].WriteText(stdout); err != nil {
			fmt.Fprintln(stderr, "meridian skew:", err)
			return 1
		}
	}
	return 0
}
