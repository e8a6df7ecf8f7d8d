package main

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"meridian/gossip"
)

func keygenRun(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = runKeygen(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestKeygenPrints(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		bytes int
	}{
		{nil, 32},
		{[]string{"-bits", "256"}, 32},
		{[]string{"-bits", "192"}, 24},
		{[]string{"-bits=128"}, 16},
	} {
		code, out, errOut := keygenRun(tc.args...)
		if code != 0 || errOut != "" {
			t.Fatalf("keygen %q: exit %d, stderr %q", tc.args, code, errOut)
		}
		if !strings.HasSuffix(out, "\n") || strings.Count(out, "\n") != 1 {
			t.Errorf("keygen %q: output %q is not one line", tc.args, out)
		}
		key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(out))
		if err != nil || len(key) != tc.bytes {
			t.Errorf("keygen %q: %d bytes (%v), want %d", tc.args, len(key), err, tc.bytes)
		}
	}
	_, a, _ := keygenRun()
	_, b, _ := keygenRun()
	if a == b {
		t.Error("two keys are equal")
	}
}

func TestKeygenWritesKeyringFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "gossip.keyring")
	code, out, errOut := keygenRun("-out", file, "-bits", "128")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if out != "wrote "+file+": 128-bit gossip key\n" {
		t.Errorf("stdout %q", out)
	}
	info, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", info.Mode().Perm())
	}
	data, _ := os.ReadFile(file)
	if strings.Contains(out, strings.TrimSpace(string(data))) {
		t.Error("the key was printed as well as written")
	}
	keys, err := gossip.ReadKeyring(file)
	if err != nil || len(keys) != 1 || len(keys[0]) != 16 {
		t.Fatalf("ReadKeyring: %d keys, %v", len(keys), err)
	}

	// An existing file is never replaced.
	code, _, errOut = keygenRun("-out", file)
	if code != 1 || !strings.Contains(errOut, "exists") {
		t.Errorf("second write: exit %d, stderr %q", code, errOut)
	}
	if again, _ := os.ReadFile(file); !bytes.Equal(again, data) {
		t.Error("the existing key file was changed")
	}
	code, _, _ = keygenRun("-out", filepath.Join(t.TempDir(), "missing", "k"))
	if code != 1 {
		t.Errorf("unwritable directory: exit %d, want 1", code)
	}
}

func TestKeygenUsage(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"-bits", "512"}, 2, "-bits 512: want 128, 192 or 256"},
		{[]string{"-bits", "x"}, 2, "invalid value"},
		{[]string{"extra"}, 2, `unexpected argument "extra"`},
		{[]string{"-nope"}, 2, "flag provided but not defined"},
		{[]string{"-h"}, 0, "usage: meridian keygen"},
	} {
		code, out, errOut := keygenRun(tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.stderr) || out != "" {
			t.Errorf("keygen %q: exit %d, stdout %q, stderr %q; want exit %d and %q", tc.args, code, out, errOut, tc.code, tc.stderr)
		}
	}
}
