// Package egress is the host side of a sandbox's network: a DNS server that
// answers only granted names and a TCP relay that connects granted names
// for the tool, recording every attempt.
//
// The sandbox has its own network namespace with nothing but loopback. Its
// pid 1 opens, inside that namespace, a UDP socket on DNSAddr:53 and one
// TCP listener per granted port (plus 53 for DNS over TCP) on 0.0.0.0, and
// hands them to the supervisor; no process of toolcell's runs inside the
// sandbox for networking. The tool's resolver asks DNSAddr (the view's
// /etc/resolv.conf points there); a granted name gets a synthetic loopback
// address of its own (127.77.0.2 and up, handed out in order); anything
// else gets NXDOMAIN and an entry in the record. Nothing is ever forwarded
// to a real DNS server, so a query cannot carry data out.
//
// When the tool connects to a synthetic address, the relay knows the name
// from the address, checks that name:port is granted, looks at the first
// bytes (a TLS ClientHello must name the same host in its SNI, and so must
// every later ClientHello until the server's real ServerHello: a second one
// after a HelloRetryRequest is what the server serves; Encrypted Client
// Hello is refused; a plain HTTP
// request must carry the same Host, and so must every later request on the
// connection, with bodies framed strictly so that none hides in another),
// resolves the name on the host, refuses
// loopback, private, link-local, CGNAT, multicast, reserved and cloud
// metadata addresses unless a range was explicitly allowed, dials the
// checked address (never resolving twice: a rebinding answer cannot slip
// in between), and copies both ways (splice(2) where both ends are TCP).
// Per-run caps bound concurrent connections, bytes and idle time.
//
// What it cannot see: inside a TLS session, the relay knows only the SNI; a
// tool may ask the granted server for anything that server serves. Data can
// leave through whatever the policy grants.
package egress
