package main

import (
	"bytes"
	"os"
	"runtime/debug"
	"strconv"
)

// memLimitFraction of the container's memory limit becomes the Go runtime's
// soft limit: the collector works harder near it instead of letting the
// heap grow into the OOM killer, and the rest is left for what the runtime
// does not count (binary text, stacks, fragmentation).
const memLimitFraction = 0.9

// cgroupLimitFiles hold the container's memory limit: cgroup v2 first, then
// v1. Inside a container /sys/fs/cgroup is the container's own cgroup.
var cgroupLimitFiles = []string{
	"/sys/fs/cgroup/memory.max",
	"/sys/fs/cgroup/memory/memory.limit_in_bytes",
}

// setDefaultMemoryLimit sets the runtime's soft memory limit from the
// container's cgroup limit, unless GOMEMLIMIT is set (the runtime has read
// it already) or there is no limit. It returns the limit in effect, in
// bytes, or "none" (for the start-up log).
func setDefaultMemoryLimit() string {
	if l, ok := defaultMemoryLimit(os.Getenv("GOMEMLIMIT"), os.ReadFile); ok {
		debug.SetMemoryLimit(l)
	}
	if l := debug.SetMemoryLimit(-1); l != int64(^uint64(0)>>1) {
		return strconv.FormatInt(l, 10)
	}
	return "none"
}

// defaultMemoryLimit is the soft limit to set: memLimitFraction of the first
// cgroup limit found, when env (GOMEMLIMIT) is empty.
func defaultMemoryLimit(env string, read func(string) ([]byte, error)) (int64, bool) {
	if env != "" {
		return 0, false
	}
	for _, f := range cgroupLimitFiles {
		b, err := read(f)
		if err != nil {
			continue
		}
		limit, ok := parseCgroupLimit(b)
		if !ok {
			return 0, false
		}
		return int64(float64(limit) * memLimitFraction), true
	}
	return 0, false
}

// parseCgroupLimit reads a memory.max (cgroup v2: bytes or "max") or
// memory.limit_in_bytes (v1: bytes, a huge number when unlimited) file.
// ok is false for no limit and for anything unreadable.
func parseCgroupLimit(b []byte) (int64, bool) {
	s := string(bytes.TrimSpace(b))
	if s == "" || s == "max" {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	// v1 reports "unlimited" as the largest page-aligned int64; nothing
	// real comes near 1<<62 bytes.
	if err != nil || n <= 0 || n >= 1<<62 {
		return 0, false
	}
	return n, true
}
