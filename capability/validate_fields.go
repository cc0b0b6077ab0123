// Checks of single fields: the name, limits, egress grants, HTTP APIs,
// address ranges, syscall kinds, environment.

package capability

import (
	"fmt"
	"math"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

func checkName(name string) []error {
	bad := func(reason string) []error {
		return []error{&FieldError{Field: "name", Value: shorten(name), Reason: reason}}
	}
	if len(name) > MaxNameLen {
		return bad(fmt.Sprintf("longer than %d bytes", MaxNameLen))
	}
	if !utf8.ValidString(name) {
		return bad("not valid UTF-8")
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return bad(fmt.Sprintf("contains the non-printable character %U", r))
		}
	}
	return nil
}

func (s *Set) checkLimits() []error {
	var errs []error
	size := func(field string, v, max, min Size, minWhy string) {
		reason := ""
		switch {
		case v < 0:
			reason = "must not be negative (0 means the default)"
		case v > max:
			reason = fmt.Sprintf("above the maximum %s (absurd)", max)
		case v > 0 && v < min:
			reason = fmt.Sprintf("below the minimum %s: %s", min, minWhy)
		}
		if reason != "" {
			errs = append(errs, &FieldError{Field: field, Value: v.String(), Reason: reason})
		}
	}
	size("memory", s.Memory, MaxMemory, MinMemory, "too small to start any process")
	size("tmp", s.Tmp, MaxTmp, 0, "")
	size("max_output", s.MaxOutput, MaxMaxOutput, 0, "")
	size("max_file_size", s.MaxFileSize, MaxMaxFileSize, 0, "")

	switch {
	case s.Pids < 0:
		errs = append(errs, &FieldError{Field: "pids", Value: strconv.FormatInt(s.Pids, 10), Reason: "must not be negative (0 means the default)"})
	case s.Pids > MaxPids:
		errs = append(errs, &FieldError{Field: "pids", Value: strconv.FormatInt(s.Pids, 10), Reason: fmt.Sprintf("above the maximum %d (absurd)", MaxPids)})
	}
	for _, c := range []struct {
		field  string
		v, max int64
	}{{"inotify_instances", s.InotifyInstances, MaxInotifyInstances}, {"inotify_watches", s.InotifyWatches, MaxInotifyWatches}} {
		switch {
		case c.v < 0:
			errs = append(errs, &FieldError{Field: c.field, Value: strconv.FormatInt(c.v, 10), Reason: "must not be negative (0 means the default)"})
		case c.v > c.max:
			errs = append(errs, &FieldError{Field: c.field, Value: strconv.FormatInt(c.v, 10), Reason: fmt.Sprintf("above the maximum %d (absurd)", c.max)})
		}
	}

	cpu := ""
	switch c := s.CPU; {
	case math.IsNaN(c):
		cpu = "not a number"
	case math.IsInf(c, 0):
		cpu = "infinite"
	case c < 0:
		cpu = "must not be negative (0 means the default)"
	case c > MaxCPU:
		cpu = fmt.Sprintf("above the maximum %g (absurd)", MaxCPU)
	case c > 0 && c < MinCPU:
		cpu = fmt.Sprintf("below the minimum %g", MinCPU)
	}
	if cpu != "" {
		errs = append(errs, &FieldError{Field: "cpu", Value: strconv.FormatFloat(s.CPU, 'g', -1, 64), Reason: cpu})
	}

	switch {
	case s.Timeout < 0:
		errs = append(errs, &FieldError{Field: "timeout", Value: s.Timeout.String(), Reason: "must not be negative (0 means the default)"})
	case s.Timeout > MaxTimeout:
		errs = append(errs, &FieldError{Field: "timeout", Value: s.Timeout.String(), Reason: fmt.Sprintf("above the maximum %s (absurd)", MaxTimeout)})
	}
	return errs
}

func validEnvName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '_', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// checkEgress checks each "name:port" egress grant.
func checkEgress(eps []string) []error {
	var errs []error
	for i, ep := range eps {
		if reason := egressProblem(ep); reason != "" {
			errs = append(errs, &FieldError{Field: fmt.Sprintf("egress[%d]", i), Value: shorten(ep), Reason: reason})
		}
	}
	return errs
}

func egressProblem(ep string) string {
	host, port, ok := strings.Cut(ep, ":")
	if strings.Contains(ep, "/") {
		return "a grant is name:port, not a URL"
	}
	if strings.HasPrefix(ep, "[") || strings.Count(ep, ":") > 1 {
		return "an IP address is not a name; grant the host name"
	}
	if !ok || port == "" {
		return "the port is required (name:port)"
	}
	if len(port) > 5 || strings.TrimLeft(port, "0123456789") != "" || port[0] == '0' {
		return fmt.Sprintf("port %q is not a decimal number from 1 to 65535", port)
	}
	if n, _ := strconv.Atoi(port); n < 1 || n > 65535 {
		return fmt.Sprintf("port %q is not a decimal number from 1 to 65535", port)
	}
	if host == "" {
		return "the name is empty"
	}
	if len(host) > 253 {
		return "the name is longer than 253 bytes"
	}
	if strings.HasSuffix(host, ".") {
		return "the name ends with a dot"
	}
	if strings.ToLower(host) != host {
		return "the name must be lower case"
	}
	labels := strings.Split(host, ".")
	wild := labels[0] == "*"
	if wild {
		labels = labels[1:]
		if len(labels) < 2 {
			return "a wildcard must stand for the subdomains of a domain with at least two labels (*.example.com)"
		}
	}
	allDigits := true
	for _, l := range labels {
		if l == "" {
			return "the name has an empty label"
		}
		if strings.Contains(l, "*") {
			return "a wildcard may only be the whole first label (*.example.com)"
		}
		if len(l) > 63 {
			return "a label is longer than 63 bytes"
		}
		if strings.HasPrefix(l, "-") || strings.HasSuffix(l, "-") || strings.Trim(l, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
			return fmt.Sprintf("label %q is not a host name label (letters, digits, inner hyphens)", l)
		}
		allDigits = allDigits && strings.Trim(l, "0123456789") == ""
	}
	if allDigits {
		return "an IP address is not a name; grant the host name"
	}
	return ""
}

// checkAPIs checks the HTTP API grants: a plain host name, a header name
// the supervisor may set, a secret reference, and no host granted twice
// (nor also as name:80, which would be a second meaning of the same
// address inside the sandbox).
func checkAPIs(apis []HTTPAPI, egress []string) []error {
	var errs []error
	seen := map[string]bool{}
	for _, ep := range egress {
		seen[ep] = true
	}
	bad := func(i int, field, value, reason string) {
		errs = append(errs, &FieldError{Field: fmt.Sprintf("http_api[%d].%s", i, field), Value: shorten(value), Reason: reason})
	}
	for i, a := range apis {
		if strings.HasPrefix(a.Host, "*.") {
			bad(i, "host", a.Host, "an API is one host, not a wildcard")
		} else if reason := egressProblem(a.Host + ":443"); reason != "" {
			bad(i, "host", a.Host, reason)
		} else if seen[a.Host+":80"] {
			bad(i, "host", a.Host, "granted twice (as an API and as "+a.Host+":80, or as two APIs)")
		}
		seen[a.Host+":80"] = true
		if a.Header == "" || strings.Trim(a.Header, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") != "" {
			bad(i, "header", a.Header, "not an HTTP header name (letters, digits, hyphens)")
		} else if h := strings.ToLower(a.Header); h == "host" || h == "content-length" || h == "transfer-encoding" || h == "connection" {
			bad(i, "header", a.Header, "a header that frames the request cannot carry a secret")
		}
		if strings.ContainsAny(a.Prefix, "\r\n\x00") {
			bad(i, "prefix", a.Prefix, "contains a line break or NUL")
		}
		if a.Secret == "" {
			bad(i, "secret", a.Secret, "a secret reference is required (env:NAME, file:/path, ...)")
		} else if strings.ContainsAny(a.Secret, "\r\n\x00") {
			bad(i, "secret", a.Secret, "contains a line break or NUL")
		}
	}
	return errs
}

// checkRanges checks the address ranges egress may reach after all: CIDR
// prefixes in their canonical form, none that covers every address.
func checkRanges(rs []string) []error {
	var errs []error
	for i, r := range rs {
		reason := ""
		p, err := netip.ParsePrefix(r)
		switch {
		case err != nil:
			reason = "not a CIDR range (10.0.0.0/8, fd00::/8)"
		case p != p.Masked():
			reason = "has host bits set; the range is " + p.Masked().String()
		case p.Bits() == 0:
			reason = "allows every address; list the ranges the tool needs"
		}
		if reason != "" {
			errs = append(errs, &FieldError{Field: fmt.Sprintf("egress_allow[%d]", i), Value: shorten(r), Reason: reason})
		}
	}
	return errs
}

func checkSyscalls(kinds []string) []error {
	var errs []error
	known := map[string]bool{}
	for _, k := range AllSyscalls() {
		known[k] = true
	}
	for i, k := range kinds {
		if !known[k] {
			errs = append(errs, &FieldError{Field: fmt.Sprintf("syscalls[%d]", i), Value: shorten(k),
				Reason: "unknown syscall capability (known: " + strings.Join(AllSyscalls(), ", ") + ")"})
		}
	}
	return errs
}

func checkEnv(env map[string]string) []error {
	names := make([]string, 0, len(env))
	for k := range env {
		names = append(names, k)
	}
	sort.Strings(names)
	var errs []error
	for _, k := range names {
		switch {
		case k == "":
			errs = append(errs, &FieldError{Field: "env", Reason: "variable name is empty"})
		case !validEnvName(k):
			errs = append(errs, &FieldError{Field: "env", Value: shorten(k), Reason: "invalid variable name (want [A-Za-z_][A-Za-z0-9_]*)"})
		}
		if strings.IndexByte(env[k], 0) >= 0 {
			errs = append(errs, &FieldError{Field: "env[" + strconv.Quote(shorten(k)) + "]", Reason: "value contains a NUL byte (value not shown: it may be a secret)"})
		}
	}
	return errs
}
