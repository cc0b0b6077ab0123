package cgroup

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
)

// parseFlatKeyed parses the "flat keyed" format used by cpu.stat,
// memory.events, memory.oom_control and cpuacct.stat: one "key value" pair
// per line. Lines that do not parse are an error.
func parseFlatKeyed(s string) (map[string]uint64, error) {
	out := map[string]uint64{}
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("malformed line %q", line)
		}
		v, err := parseUintOrMax(f[1])
		if err != nil {
			return nil, fmt.Errorf("malformed value in %q: %w", line, err)
		}
		out[f[0]] = v
	}
	return out, nil
}

// parseUintOrMax parses a single counter; "max" maps to MaxUint64.
func parseUintOrMax(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	if s == "max" {
		return math.MaxUint64, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		// Some v1 files report negative numbers (-1 = unlimited).
		if n, err2 := strconv.ParseInt(s, 10, 64); err2 == nil && n < 0 {
			return math.MaxUint64, nil
		}
		return 0, err
	}
	return v, nil
}

// readUint reads a single-value file.
func readUint(file string) (uint64, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	v, err := parseUintOrMax(string(b))
	if err != nil {
		return 0, fmt.Errorf("parse %s: %w", file, err)
	}
	return v, nil
}

// readFlatKeyed reads a flat keyed file.
func readFlatKeyed(file string) (map[string]uint64, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	m, err := parseFlatKeyed(string(b))
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", file, err)
	}
	return m, nil
}

// parsePids parses cgroup.procs.
func parsePids(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Fields(s) {
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("malformed pid %q", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func readPids(file string) ([]int, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	p, err := parsePids(string(b))
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", file, err)
	}
	return p, nil
}

// kernelAtLeast reports whether the running kernel release is >= major.minor.
func kernelAtLeast(release string, major, minor int) bool {
	maj, min, ok := parseRelease(release)
	if !ok {
		return false
	}
	return maj > major || (maj == major && min >= minor)
}

func parseRelease(release string) (int, int, bool) {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return 0, 0, false
	}
	maj, err := strconv.Atoi(parts[0])
	if err != nil {
		return 0, 0, false
	}
	end := 0
	for end < len(parts[1]) && parts[1][end] >= '0' && parts[1][end] <= '9' {
		end++
	}
	min, err := strconv.Atoi(parts[1][:end])
	if err != nil {
		return 0, 0, false
	}
	return maj, min, true
}
