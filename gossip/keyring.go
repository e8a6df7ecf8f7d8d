package gossip

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/hashicorp/memberlist"
)

// maxKeyringFile bounds the size of a keyring file.
const maxKeyringFile = 64 << 10

// ReadKeyring reads a keyring file: one base64 AES key (16, 24 or 32 bytes)
// per line, the first one primary; blank lines and lines starting with #
// are ignored, and a key listed twice counts once. Errors name the file and
// line, never a key.
func ReadKeyring(file string) ([][]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("read keyring: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyringFile+1))
	if err != nil {
		return nil, fmt.Errorf("read keyring %s: %w", file, err)
	}
	if len(data) > maxKeyringFile {
		return nil, fmt.Errorf("read keyring %s: larger than %d bytes", file, maxKeyringFile)
	}
	keys, err := parseKeyring(data)
	if err != nil {
		return nil, fmt.Errorf("read keyring %s: %w", file, err)
	}
	return keys, nil
}

func parseKeyring(data []byte) ([][]byte, error) {
	var keys [][]byte
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		key, err := base64.StdEncoding.DecodeString(text)
		if err != nil {
			return nil, fmt.Errorf("line %d: not a base64 key", line)
		}
		if err := memberlist.ValidateKey(key); err != nil {
			return nil, fmt.Errorf("line %d: a key of %d bytes: want 16, 24 or 32 (AES-128, -192, -256)", line, len(key))
		}
		if !slices.ContainsFunc(keys, func(k []byte) bool { return bytes.Equal(k, key) }) {
			keys = append(keys, key)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, errors.New("no key")
	}
	return keys, nil
}

// UpdateKeyring rereads the keyring file and applies it to the running
// keyring in the order that never splits the cluster: add the keys that are
// new, make the file's first key primary, then remove the keys the file no
// longer lists. Call it on every configuration reload; an unchanged file
// changes nothing.
//
// Rotating a key across the cluster takes three rollouts, each finished on
// every node before the next begins: add the new key second ("A, B"), make
// it primary ("B, A"), drop the old one ("B"). A node only encrypts with
// its primary key and decrypts with any, so at every step each node can
// read what every other sends.
//
// A node started without a keyring cannot turn encryption on; that takes a
// restart (and, for a running cluster, memberlist's gossip_verify rollout),
// so UpdateKeyring refuses.
func (n *Node) UpdateKeyring(file string) error {
	if n.keyring == nil {
		return errors.New("gossip: update keyring: gossip was started without a keyring; encrypting it needs a restart")
	}
	keys, err := ReadKeyring(file)
	if err != nil {
		return fmt.Errorf("gossip: update keyring: %w", err)
	}
	n.keyMu.Lock()
	defer n.keyMu.Unlock()
	added, removed, err := applyKeyring(n.keyring, keys)
	if err != nil {
		return fmt.Errorf("gossip: update keyring %s: %w", file, err)
	}
	if added > 0 || removed > 0 {
		n.log.Info("gossip keyring updated", "file", file, "keys", len(keys), "added", added, "removed", removed)
	}
	return nil
}

// applyKeyring installs keys (the first primary) into kr and removes the
// keys not among them, in that order.
func applyKeyring(kr *memberlist.Keyring, keys [][]byte) (added, removed int, err error) {
	installed := slices.Clone(kr.GetKeys()) // GetKeys returns the keyring's own slice
	has := func(set [][]byte, k []byte) bool {
		return slices.ContainsFunc(set, func(x []byte) bool { return bytes.Equal(x, k) })
	}
	for _, k := range keys {
		if has(installed, k) {
			continue
		}
		if err := kr.AddKey(k); err != nil {
			return added, removed, err
		}
		added++
	}
	if err := kr.UseKey(keys[0]); err != nil {
		return added, removed, err
	}
	for _, k := range installed {
		if has(keys, k) {
			continue
		}
		if err := kr.RemoveKey(k); err != nil {
			return added, removed, err
		}
		removed++
	}
	return added, removed, nil
}
