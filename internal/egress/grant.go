package egress

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Grant is one parsed "name:port" or "*.domain:port" grant. The string
// was validated by package capability; ParseGrant only splits it.
type Grant struct {
	Domain   string // the name, or the domain under a wildcard
	Wildcard bool   // subdomains of Domain, not Domain itself
	Port     uint16
}

// ParseGrant splits a validated grant.
func ParseGrant(s string) (Grant, error) {
	host, port, ok := strings.Cut(s, ":")
	n, err := strconv.ParseUint(port, 10, 16)
	if !ok || err != nil || n == 0 || host == "" {
		return Grant{}, fmt.Errorf("egress grant %q: want name:port", s)
	}
	g := Grant{Domain: host, Port: uint16(n)}
	if d, ok := strings.CutPrefix(host, "*."); ok {
		g.Domain, g.Wildcard = d, true
	}
	if strings.Contains(g.Domain, "*") {
		return Grant{}, fmt.Errorf("egress grant %q: misplaced wildcard", s)
	}
	return g, nil
}

func (g Grant) String() string {
	if g.Wildcard {
		return fmt.Sprintf("*.%s:%d", g.Domain, g.Port)
	}
	return fmt.Sprintf("%s:%d", g.Domain, g.Port)
}

// matches reports whether name (lower case, no trailing dot) falls under g.
func (g Grant) matches(name string) bool {
	if g.Wildcard {
		return strings.HasSuffix(name, "."+g.Domain) && len(name) > len(g.Domain)+1
	}
	return name == g.Domain
}

// canonicalName lower-cases the ASCII letters of a DNS, SNI or Host name
// and drops one trailing dot. Other bytes stay as they are (Unicode case
// folding would take the Kelvin sign for a "k"), so they never match a
// grant, whose names are ASCII.
func canonicalName(s string) string {
	b := []byte(strings.TrimSuffix(s, "."))
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// The synthetic addresses: DNSAddr serves DNS; names get FirstName and up,
// to LastName.
var (
	DNSAddr   = netip.AddrFrom4([4]byte{127, 77, 0, 1})
	FirstName = netip.AddrFrom4([4]byte{127, 77, 0, 2})
	LastName  = netip.AddrFrom4([4]byte{127, 77, 255, 254})
)

// Ports returns the distinct granted ports, in ascending order.
func Ports(grants []Grant) []uint16 {
	seen := map[uint16]bool{}
	var out []uint16
	for _, g := range grants {
		if !seen[g.Port] {
			seen[g.Port] = true
			out = append(out, g.Port)
		}
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}
