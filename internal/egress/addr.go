package egress

import "net/netip"

// blocked lists the ranges a granted name may not resolve into unless the
// policy allows the range: the host itself, private networks, the cloud
// metadata endpoints, and addresses that are not unicast on the internet.
var blocked = []struct {
	prefix netip.Prefix
	why    string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "this-network address"},
	{netip.MustParsePrefix("10.0.0.0/8"), "private address"},
	{netip.MustParsePrefix("100.64.0.0/10"), "carrier-grade NAT address"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback address"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local address (cloud metadata lives here)"},
	{netip.MustParsePrefix("172.16.0.0/12"), "private address"},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol address"},
	{netip.MustParsePrefix("168.63.129.16/32"), "cloud platform address (Azure WireServer)"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private address"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking address"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast address"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved address"},
	{netip.MustParsePrefix("::/128"), "unspecified address"},
	{netip.MustParsePrefix("::1/128"), "loopback address"},
	{netip.MustParsePrefix("100::/64"), "discard address"},
	{netip.MustParsePrefix("fc00::/7"), "unique local address (cloud metadata lives here)"},
	{netip.MustParsePrefix("fec0::/10"), "site-local address"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "local-use NAT64 address"},
	{netip.MustParsePrefix("2002::/16"), "6to4 address"},
	{netip.MustParsePrefix("2001::/32"), "Teredo address"},
	{netip.MustParsePrefix("fe80::/10"), "link-local address"},
	{netip.MustParsePrefix("ff00::/8"), "multicast address"},
}

// translated IPv6 ranges carry an IPv4 address in their low 32 bits: they
// are judged by that address.
var translated = []netip.Prefix{
	netip.MustParsePrefix("::ffff:0:0/96"),   // IPv4-mapped
	netip.MustParsePrefix("64:ff9b::/96"),    // NAT64
	netip.MustParsePrefix("::/96"),           // IPv4-compatible (deprecated)
	netip.MustParsePrefix("::ffff:0:0:0/96"), // IPv4-translated (SIIT)
}

// Blocked reports why a may not be dialed, or "" if it may. A range in
// allow lifts the block for the addresses in it.
func Blocked(a netip.Addr, allow []netip.Prefix) string {
	a = a.WithZone("")
	for _, p := range allow {
		if p.Contains(a) || (a.Is4In6() && p.Contains(a.Unmap())) {
			return ""
		}
	}
	if a.Is6() {
		for _, t := range translated {
			if t.Contains(a) && !a.IsUnspecified() && a != netip.IPv6Loopback() {
				b := a.As16()
				v4 := netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
				if why := Blocked(v4, allow); why != "" {
					return why + " (inside an IPv6 translation range)"
				}
				return ""
			}
		}
	}
	for _, b := range blocked {
		if b.prefix.Contains(a) {
			return b.why
		}
	}
	if a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return "broadcast address"
	}
	return ""
}
