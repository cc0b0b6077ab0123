package safetext

import "testing"

func TestClean(t *testing.T) {
	for _, c := range []struct {
		in, want string
		removed  int
	}{
		{"plain text\n\tok\r\n", "plain text\n\tok\r\n", 0},
		{"\x1b[31mred\x1b[0m", "red", 2},
		{"title\x1b]0;evil\x07 after", "title after", 1},
		{"osc st\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\", "osc stlink", 2},
		{"keep é 日本 ✓", "keep é 日本 ✓", 0},
		{"abc\u202egnp.exe", "abcgnp.exe", 1},
		{"zero\u200bwidth\u2066iso\u2069", "zerowidthiso", 3},
		{"tag\U000E0041\U000E0042 hidden", "tag hidden", 2},
		{"bom\ufeff", "bom", 1},
		{"bell\a nul\x00 del\x7f", "bell nul del", 3},
		{"c1 csi \u009b31m x", "c1 csi  x", 1},
		{"bad \xff utf8", "bad \ufffd utf8", 0},
		{"\x1b[", "", 1},
	} {
		got, n := Clean(c.in)
		if got != c.want || n != c.removed {
			t.Errorf("Clean(%q) = %q, %d; want %q, %d", c.in, got, n, c.want, c.removed)
		}
	}
}
