package main

import (
	"errors"
	"io/fs"
	"testing"
)

func TestMemLimitParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"268435456\n", 268435456, true},           // v2, 256Mi
		{"max\n", 0, false},                        // v2, no limit
		{"9223372036854771712\n", 0, false},        // v1, no limit
		{"536870912", 536870912, true},             // v1, 512Mi
		{"", 0, false},                             // empty
		{"0\n", 0, false},                          // nonsense
		{"-1\n", 0, false},                         // nonsense
		{"256Mi\n", 0, false},                      // not a cgroup file
		{"99999999999999999999999\n", 0, false},    // overflows
		{"  1073741824  \n", 1073741824, true},     // spaces
		{"4611686018427387904\n", 0, false},        // 1<<62: unlimited
		{"4611686018427387903\n", 1<<62 - 1, true}, // just below
	} {
		got, ok := parseCgroupLimit([]byte(tc.in))
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseCgroupLimit(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestMemLimitDefault(t *testing.T) {
	files := func(m map[string]string) func(string) ([]byte, error) {
		return func(name string) ([]byte, error) {
			if v, ok := m[name]; ok {
				return []byte(v), nil
			}
			return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
		}
	}
	v2, v1 := cgroupLimitFiles[0], cgroupLimitFiles[1]
	for _, tc := range []struct {
		name  string
		env   string
		files map[string]string
		want  int64
		ok    bool
	}{
		{"v2 limit", "", map[string]string{v2: "268435456\n"}, 241591910, true},
		{"v2 unlimited", "", map[string]string{v2: "max\n", v1: "268435456\n"}, 0, false},
		{"v1 limit", "", map[string]string{v1: "1000\n"}, 900, true},
		{"v1 unlimited", "", map[string]string{v1: "9223372036854771712\n"}, 0, false},
		{"no cgroup files", "", map[string]string{}, 0, false},
		{"GOMEMLIMIT wins", "200MiB", map[string]string{v2: "268435456\n"}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := defaultMemoryLimit(tc.env, files(tc.files))
			if got != tc.want || ok != tc.ok {
				t.Errorf("defaultMemoryLimit = %d, %v; want %d, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
	// A file that cannot be read is skipped, not fatal.
	failing := func(name string) ([]byte, error) {
		if name == v2 {
			return nil, errors.New("permission denied")
		}
		return []byte("2000"), nil
	}
	if got, ok := defaultMemoryLimit("", failing); got != 1800 || !ok {
		t.Errorf("unreadable v2 file: got %d, %v; want 1800 from v1", got, ok)
	}
}
