package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

// keygenUsage describes `meridian keygen`.
const keygenUsage = `usage: meridian keygen [-bits 256] [-out FILE]

Prints a new random AES key for the gossip keyring, base64-encoded on one
line, or writes it to FILE (mode 0600; an existing file is not replaced).
A keyring file holds one key per line, the first one primary.
`

// runKeygen implements `meridian keygen [-bits 128|192|256] [-out FILE]`.
// It returns 0 on success, 1 when the key cannot be written and 2 on a
// usage error.
func runKeygen(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("meridian keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, keygenUsage)
		fs.PrintDefaults()
	}
	bits := fs.Int("bits", 256, "key size in bits: 128, 192 or 256 (AES-128, -192, -256)")
	out := fs.String("out", "", "write the key to this file (mode 0600) instead of printing it")
	switch err := fs.Parse(args); {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case err != nil:
		return 2
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "meridian keygen: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return 2
	case *bits != 128 && *bits != 192 && *bits != 256:
		fmt.Fprintf(stderr, "meridian keygen: -bits %d: want 128, 192 or 256\n", *bits)
		return 2
	}
	key := make([]byte, *bits/8)
	if _, err := rand.Read(key); err != nil {
		fmt.Fprintf(stderr, "meridian keygen: %v\n", err)
		return 1
	}
	line := base64.StdEncoding.EncodeToString(key) + "\n"
	if *out == "" {
		fmt.Fprint(stdout, line)
		return 0
	}
	if err := keygenWrite(*out, line); err != nil {
		fmt.Fprintf(stderr, "meridian keygen: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote %s: %d-bit gossip key\n", *out, *bits)
	return 0
}

// keygenWrite creates file with mode 0600 and writes line to it; it never
// replaces an existing file.
func keygenWrite(file, line string) error {
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		os.Remove(file)
		return err
	}
	return f.Close()
}
