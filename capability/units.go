package capability

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Size is a number of bytes.
//
// In manifests a Size is written either as a JSON/YAML integer (bytes) or as
// a string accepted by ParseSize ("64MiB", "512K", "1G"). It is always
// marshaled canonically as a plain integer number of bytes, so that the
// encoding of a policy does not depend on how its author spelled a size.
type Size int64

// Binary size units. All suffixes are 1024-based.
const (
	KiB Size = 1 << 10
	MiB Size = 1 << 20
	GiB Size = 1 << 30
	TiB Size = 1 << 40
)

// ParseSize parses a non-negative byte count: decimal digits, optionally
// followed by a binary unit suffix. The suffixes, matched without regard to
// case, are B (bytes), K/Ki/KiB, M/Mi/MiB, G/Gi/GiB and T/Ti/TiB; every one is
// a power of 1024, so "64K" and "64KiB" are both 65536. "KB", "MB" and so on
// are rejected because they are commonly read as powers of 1000. Signs,
// fractions, spaces, underscores and values that overflow int64 are errors.
func ParseSize(s string) (Size, error) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	digits, unit := s[:i], s[i:]
	if digits == "" {
		if strings.HasPrefix(s, "-") {
			return 0, fmt.Errorf("capability: size %q: must not be negative", s)
		}
		return 0, fmt.Errorf("capability: size %q: want decimal digits with an optional unit (64MiB, 512K, 1G)", s)
	}
	var mult Size
	switch strings.ToLower(unit) {
	case "", "b":
		mult = 1
	case "k", "ki", "kib":
		mult = KiB
	case "m", "mi", "mib":
		mult = MiB
	case "g", "gi", "gib":
		mult = GiB
	case "t", "ti", "tib":
		mult = TiB
	case "kb", "mb", "gb", "tb":
		return 0, fmt.Errorf("capability: size %q: ambiguous unit %q (write %s%siB; units are powers of 1024)", s, unit, digits, strings.ToUpper(unit[:1]))
	default:
		if strings.HasPrefix(unit, ".") || strings.HasPrefix(unit, ",") {
			return 0, fmt.Errorf("capability: size %q: fractions are not allowed", s)
		}
		return 0, fmt.Errorf("capability: size %q: unknown unit %q (want B, K, KiB, M, MiB, G, GiB, T or TiB)", s, unit)
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || n > math.MaxInt64/int64(mult) {
		return 0, fmt.Errorf("capability: size %q: too large", s)
	}
	return Size(n) * mult, nil
}

// String returns n in the largest binary unit that divides it exactly
// ("64MiB", "3KiB"), or as plain decimal bytes ("1000") otherwise. The result
// is accepted by ParseSize when n is not negative.
func (n Size) String() string {
	if n > 0 {
		for _, u := range []struct {
			size Size
			name string
		}{{TiB, "TiB"}, {GiB, "GiB"}, {MiB, "MiB"}, {KiB, "KiB"}} {
			if n%u.size == 0 {
				return strconv.FormatInt(int64(n/u.size), 10) + u.name
			}
		}
	}
	return strconv.FormatInt(int64(n), 10)
}

// MarshalJSON encodes n as a plain integer number of bytes.
func (n Size) MarshalJSON() ([]byte, error) {
	return strconv.AppendInt(nil, int64(n), 10), nil
}

// UnmarshalJSON accepts a non-negative integer number of bytes or a string
// accepted by ParseSize. JSON null leaves n unchanged. YAML manifests reach
// this method too: sigs.k8s.io/yaml converts YAML to JSON first.
func (n *Size) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("capability: size %s: %v", b, err)
		}
		v, err := ParseSize(s)
		if err != nil {
			return err
		}
		*n = v
		return nil
	}
	v, err := ParseSize(string(b))
	if err != nil {
		return err
	}
	*n = v
	return nil
}

// Duration is a time.Duration.
//
// In manifests a Duration is written only as a Go duration string ("30s",
// "1m30s", "250ms"). Bare numbers are rejected because their unit would be a
// guess (seconds to a human, nanoseconds to time.Duration). It is marshaled
// as the string time.Duration.String returns ("1m0s").
type Duration time.Duration

// String returns the duration in time.Duration's format ("1m30s").
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON encodes d as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON accepts a non-negative Go duration string. JSON null leaves
// d unchanged; numbers are rejected.
func (d *Duration) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		return nil
	}
	if len(b) == 0 || b[0] != '"' {
		return fmt.Errorf("capability: duration %s: want a duration string such as \"30s\" or \"1m30s\" (a bare number is ambiguous: no unit)", b)
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("capability: duration %s: %v", b, err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("capability: duration %q: want a duration string such as \"30s\" or \"1m30s\"", s)
	}
	if v < 0 {
		return fmt.Errorf("capability: duration %q: must not be negative", s)
	}
	*d = Duration(v)
	return nil
}
