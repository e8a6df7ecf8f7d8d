// Command meridian is a DNS-based multi-region health router: an
// authoritative DNS server that answers with the healthy endpoints of each
// steered name. `meridian help` lists the subcommands.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `meridian: a DNS-based multi-region health router.

Usage:
  meridian serve [-config config.toml] [-log-format text|json] [-log-level info]
  meridian demo [-fail-after 30s]      a three-region cluster on loopback, no files needed
  meridian check [config.toml]         validate a configuration and print its plan
  meridian probe [-config config.toml] [-json] --check NAME ADDRESS[:PORT]
                                       run one check once and print every phase
  meridian status [-http ADDR] [-json] the health matrix of a running node
  meridian explain NAME [-client IP | -ecs SUBNET]   why a client gets the answer it gets
  meridian skew [-http ADDR] [-service NAME] [-window 1h] [-json]
                                       where the traffic really goes: the client-skew report
  meridian certs init|issue|inspect    create and inspect the mTLS PKI
  meridian keygen [-out FILE]          write a new AES-256 gossip key
  meridian delegation check ZONE [-parent ADDR] [-config FILE] [-json]
                                       verify the parent's delegation against the zone's servers
  meridian version

Run 'meridian COMMAND -h' for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one subcommand and returns the process exit status:
// 0 success, 1 failure, 2 usage error.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return runServe(ctx, args[1:], stdout, stderr)
	case "check":
		return runCheck(args[1:], stdout, stderr)
	case "probe":
		return runProbe(ctx, args[1:], stdout, stderr)
	case "explain":
		return runExplain(args[1:], stdout, stderr)
	case "status":
		return runStatus(args[1:], stdout, stderr)
	case "skew":
		return runSkew(args[1:], stdout, stderr)
	case "demo":
		return runDemo(ctx, args[1:], stdout, stderr)
	case "keygen":
		return runKeygen(args[1:], stdout, stderr)
	case "certs":
		return runCerts(args[1:], stdout, stderr)
	case "delegation":
		return runDelegation(ctx, args[1:], stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintf(stdout, "meridian %s (%s, %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return 0
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "meridian: unknown command %q\n\n%s", args[0], usage)
	return 2
}
