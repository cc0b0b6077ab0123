package capability

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	good := []struct {
		in   string
		want Size
	}{
		{"0", 0},
		{"123", 123},
		{"123B", 123},
		{"64K", 64 << 10},
		{"64KiB", 64 << 10},
		{"512k", 512 << 10},
		{"64kib", 64 << 10},
		{"64Ki", 64 << 10},
		{"64M", 64 << 20},
		{"64MiB", 64 << 20},
		{"1G", 1 << 30},
		{"1GiB", 1 << 30},
		{"2T", 2 << 40},
		{"9223372036854775807", 1<<63 - 1},
		{"8388607T", 8388607 << 40},
	}
	for _, c := range good {
		got, err := ParseSize(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
	bad := []struct{ in, reason string }{
		{"", "want decimal digits"},
		{"-1", "negative"},
		{"-64M", "negative"},
		{"+1", "want decimal digits"},
		{"1.5G", "fractions"},
		{"64MB", "ambiguous"},
		{"64kb", "ambiguous"},
		{"64 MiB", "unknown unit"},
		{"64X", "unknown unit"},
		{"1_000", "unknown unit"},
		{"abc", "want decimal digits"},
		{"0x10", "unknown unit"},
		{"9223372036854775808", "too large"},
		{"8388608T", "too large"},
		{"99999999999999999999G", "too large"},
	}
	for _, c := range bad {
		_, err := ParseSize(c.in)
		if err == nil {
			t.Errorf("ParseSize(%q) succeeded", c.in)
			continue
		}
		if !strings.Contains(err.Error(), c.reason) || !strings.Contains(err.Error(), `"`+c.in+`"`) {
			t.Errorf("ParseSize(%q) error %q: want it to name the value and say %q", c.in, err, c.reason)
		}
	}
}

func TestSizeString(t *testing.T) {
	for n, want := range map[Size]string{
		0: "0", 1: "1", 1000: "1000", KiB: "1KiB", 1536: "1536", 3 * KiB: "3KiB",
		64 * MiB: "64MiB", GiB: "1GiB", 1025 * MiB: "1025MiB", 2 * TiB: "2TiB", -5: "-5",
	} {
		if got := n.String(); got != want {
			t.Errorf("Size(%d).String() = %q, want %q", int64(n), got, want)
		}
		if n >= 0 {
			if back, err := ParseSize(want); err != nil || back != n {
				t.Errorf("ParseSize(%q) = %d, %v; want %d", want, back, err, n)
			}
		}
	}
}

func TestSizeJSON(t *testing.T) {
	for in, want := range map[string]Size{
		`1024`: 1024, `"64MiB"`: 64 * MiB, `"512k"`: 512 * KiB, `"7"`: 7, `0`: 0,
	} {
		var n Size
		if err := json.Unmarshal([]byte(in), &n); err != nil || n != want {
			t.Errorf("Unmarshal(%s) = %d, %v; want %d", in, n, err, want)
		}
	}
	for _, in := range []string{`-1`, `1.5`, `1e6`, `"1.5G"`, `"64MB"`, `true`, `[]`, `"-1"`} {
		var n Size
		if err := json.Unmarshal([]byte(in), &n); err == nil {
			t.Errorf("Unmarshal(%s) = %d, want error", in, n)
		}
	}
	b, err := json.Marshal(64 * MiB)
	if err != nil || string(b) != "67108864" {
		t.Errorf("Marshal(64MiB) = %s, %v", b, err)
	}
}

func TestDurationJSON(t *testing.T) {
	for in, want := range map[string]time.Duration{
		`"30s"`: 30 * time.Second, `"1m30s"`: 90 * time.Second, `"250ms"`: 250 * time.Millisecond, `"0s"`: 0,
	} {
		var d Duration
		if err := json.Unmarshal([]byte(in), &d); err != nil || time.Duration(d) != want {
			t.Errorf("Unmarshal(%s) = %v, %v; want %v", in, d, err, want)
		}
	}
	for in, reason := range map[string]string{
		`30`:      "ambiguous",
		`1.5`:     "ambiguous",
		`"30"`:    "duration string",
		`"soon"`:  "duration string",
		`"-5s"`:   "negative",
		`true`:    "ambiguous",
		`"1 min"`: "duration string",
	} {
		var d Duration
		err := json.Unmarshal([]byte(in), &d)
		if err == nil || !strings.Contains(err.Error(), reason) {
			t.Errorf("Unmarshal(%s) = %v, want error containing %q", in, err, reason)
		}
	}
	b, err := json.Marshal(Duration(time.Minute))
	if err != nil || string(b) != `"1m0s"` {
		t.Errorf("Marshal(1m) = %s, %v", b, err)
	}
}
