package netlab

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// stalePrefix starts the name of every namespace a lab creates; the
// creating process's ID follows it: <stalePrefix><pid>-<seq>-<host|hub>.
const stalePrefix = "netlab-"

// RemoveStale deletes the namespaces of labs whose process is gone (no
// /proc/<pid>): what a test killed before its Close left behind. Labs of
// running processes, this one's included, are left alone. It returns the
// names it deleted, and every failure joined.
func RemoveStale() ([]string, error) {
	entries, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil // no named namespace at all
	}
	if err != nil {
		return nil, fmt.Errorf("remove stale labs: %w", err)
	}
	var removed []string
	var errs []error
	for _, e := range entries {
		pid, ok := labPID(e.Name())
		if !ok || processAlive(pid) {
			continue
		}
		if err := deleteNamespace(e.Name()); err != nil {
			errs = append(errs, fmt.Errorf("remove stale lab namespace %s: %w", e.Name(), err))
			continue
		}
		removed = append(removed, e.Name())
	}
	return removed, errors.Join(errs...)
}

// labPID is the process ID in a lab namespace's name; ok is false for a
// name no lab made.
func labPID(name string) (pid int, ok bool) {
	rest, found := strings.CutPrefix(name, stalePrefix)
	if !found {
		return 0, false
	}
	digits, _, found := strings.Cut(rest, "-")
	if !found {
		return 0, false
	}
	pid, err := strconv.Atoi(digits)
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, true
}

// processAlive reports whether a process with ID pid exists. A process ID
// reused by another process keeps its dead lab until that one ends too.
func processAlive(pid int) bool {
	_, err := os.Stat("/proc/" + strconv.Itoa(pid))
	return err == nil
}
