// Package safetext cleans a tool's output before it is handed to a model.
//
// Tool output is a prompt-injection path into the model that reads it.
// Terminal escape sequences can hide or rewrite what a human reviewing the
// transcript sees, and invisible Unicode (bidirectional overrides and
// isolates, zero-width characters, the tag characters U+E0000-U+E007F that
// can spell out hidden instructions) carries text the reviewer cannot see.
// Clean removes them and says how many it removed; the raw bytes stay the
// caller's (sandbox.Result.Stdout).
package safetext

import (
	"strings"
	"unicode/utf8"
)

// Clean returns s without terminal escape sequences (ESC and C1 control
// sequences: CSI, OSC, DCS and the like, and single-character escapes),
// other control characters but tab, newline and carriage return, and
// invisible or direction-changing Unicode; invalid UTF-8 becomes U+FFFD.
// It returns how many sequences or characters it removed.
func Clean(s string) (string, int) {
	var b strings.Builder
	b.Grow(len(s))
	removed := 0
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b.WriteRune(utf8.RuneError)
			i++
			continue
		case r == 0x1b: // ESC
			i += escapeLen(s[i:])
			removed++
			continue
		case r >= 0x80 && r <= 0x9f: // C1 controls (CSI is 0x9b)
			i += c1Len(s[i:], r, size)
			removed++
			continue
		case r < 0x20 && r != '\t' && r != '\n' && r != '\r', r == 0x7f:
			removed++
		case invisible(r):
			removed++
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String(), removed
}

// invisible reports format and direction characters a reader cannot see.
func invisible(r rune) bool {
	switch {
	case r >= 0x200b && r <= 0x200f, // zero-width space/joiners, LRM, RLM
		r >= 0x202a && r <= 0x202e, // bidi embeddings and overrides
		r >= 0x2060 && r <= 0x2064, // word joiner, invisible operators
		r >= 0x2066 && r <= 0x2069, // bidi isolates
		r == 0x00ad, r == 0x061c, r == 0x180e, r == 0xfeff,
		r >= 0xfff9 && r <= 0xfffb,   // interlinear annotations
		r >= 0xe0000 && r <= 0xe007f: // tag characters
		return true
	}
	return false
}

// escapeLen is the length of the escape sequence starting at s[0] == ESC.
func escapeLen(s string) int {
	if len(s) < 2 {
		return len(s)
	}
	switch s[1] {
	case '[': // CSI: parameters and intermediates, then a final byte 0x40-0x7e
		for j := 2; j < len(s); j++ {
			if s[j] >= 0x40 && s[j] <= 0x7e {
				return j + 1
			}
		}
		return len(s)
	case ']', 'P', 'X', '^', '_': // OSC, DCS, SOS, PM, APC: up to BEL or ST
		return stringEnd(s, 2)
	}
	return 2 // a two-character escape
}

// c1Len is the length of a sequence started by a C1 control character.
func c1Len(s string, r rune, size int) int {
	switch r {
	case 0x9b: // CSI
		for j := size; j < len(s); j++ {
			if s[j] >= 0x40 && s[j] <= 0x7e {
				return j + 1
			}
		}
		return len(s)
	case 0x9d, 0x90, 0x98, 0x9e, 0x9f: // OSC, DCS, SOS, PM, APC
		return stringEnd(s, size)
	}
	return size
}

// stringEnd finds the end of a control string starting at from: after BEL,
// ESC \ or ST (U+009C), or the end of s.
func stringEnd(s string, from int) int {
	for j := from; j < len(s); j++ {
		switch {
		case s[j] == 0x07:
			return j + 1
		case s[j] == 0x1b && j+1 < len(s) && s[j+1] == '\\':
			return j + 2
		case s[j] == 0xc2 && j+1 < len(s) && s[j+1] == 0x9c:
			return j + 2
		}
	}
	return len(s)
}
