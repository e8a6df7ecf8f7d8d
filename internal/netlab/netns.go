package netlab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// cmdTimeout bounds every `ip` command netlab runs.
const cmdTimeout = 10 * time.Second

// netnsDir is where `ip netns` keeps its named namespaces.
const netnsDir = "/run/netns"

// namespace is a named network namespace, held open by a file descriptor
// so that code can enter it without looking the name up again.
type namespace struct {
	name string
	fd   int
}

// addNamespace creates the named namespace (`ip netns add`) and opens it.
// On error it leaves no namespace behind.
func addNamespace(name string) (*namespace, error) {
	if err := ip("netns", "add", name); err != nil {
		return nil, errors.Join(err, deleteNamespace(name))
	}
	fd, err := unix.Open(filepath.Join(netnsDir, name), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("open namespace %s: %w", name, err), deleteNamespace(name))
	}
	return &namespace{name: name, fd: fd}, nil
}

// close releases the descriptor; the namespace stays until deleted.
func (n *namespace) close() {
	if n.fd >= 0 {
		unix.Close(n.fd)
		n.fd = -1
	}
}

// do runs f on a fresh OS thread that has entered the namespace, and
// returns f's error. Sockets f creates belong to the namespace for their
// whole life. The thread is never unlocked, so the Go runtime ends it when
// f returns instead of reusing it outside the namespace. do returns only
// after f does.
func (n *namespace) do(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if err := unix.Setns(n.fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("enter namespace %s: %w", n.name, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// deleteNamespace deletes the named namespace (`ip netns del`); a name that
// is already gone is not an error.
func deleteNamespace(name string) error {
	if _, err := os.Stat(filepath.Join(netnsDir, name)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	err := ip("netns", "del", name)
	if _, serr := os.Stat(filepath.Join(netnsDir, name)); err != nil && errors.Is(serr, os.ErrNotExist) {
		return nil // deleted meanwhile by another process's RemoveStale
	}
	return err
}

// ip runs `ip args...` within cmdTimeout; the error quotes the command and
// its output.
func ip(args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// operUp reports whether the interface dev in namespace ns is
// operationally up, with its carrier (`ip link show`: state UP).
func operUp(ns, dev string) (bool, error) {
	out, err := ipOutput("-n", ns, "-o", "link", "show", "dev", dev)
	if err != nil {
		return false, err
	}
	return strings.Contains(out, "LOWER_UP") && strings.Contains(out, " state UP "), nil
}

// ipOutput is ip that returns the command's standard output.
func ipOutput(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}
