package egress

import (
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// answer builds the reply to one DNS query sent to the server address dst
// (nil: drop it) and records it. It never forwards anything: granted
// names get their synthetic address, everything else NXDOMAIN or REFUSED.
func (p *Proxy) answer(q []byte, dst string) []byte {
	var m dns.Msg
	if err := m.Unpack(q); err != nil {
		p.log.add(Event{Kind: "dns", Dst: dst, Reason: "malformed query", At: time.Now()}, true)
		return nil
	}
	if m.Response {
		return nil
	}
	r := new(dns.Msg)
	r.SetReply(&m)
	r.RecursionAvailable = true
	if o := m.IsEdns0(); o != nil {
		r.SetEdns0(1232, false)
	}
	ev := Event{Kind: "dns", Dst: dst, At: time.Now()}
	switch {
	case m.Opcode != dns.OpcodeQuery:
		r.Rcode = dns.RcodeNotImplemented
		ev.Reason = "opcode " + dns.OpcodeToString[m.Opcode] + " not served"
	case len(m.Question) != 1:
		r.Rcode = dns.RcodeFormatError
		ev.Reason = "not exactly one question"
	default:
		qq := m.Question[0]
		ev.Name, ev.Type = canonicalName(qq.Name), typeName(qq.Qtype)
		p.resolveQuestion(r, qq, &ev)
	}
	p.log.add(ev, true)
	out, err := r.Pack()
	if err != nil {
		return nil
	}
	return out
}

func typeName(t uint16) string {
	if s, ok := dns.TypeToString[t]; ok {
		return s
	}
	return "TYPE" + itoa(int(t))
}

func (p *Proxy) resolveQuestion(r *dns.Msg, q dns.Question, ev *Event) {
	if q.Qclass != dns.ClassINET {
		r.Rcode = dns.RcodeRefused
		ev.Reason = "not class IN"
		return
	}
	switch q.Qtype {
	case dns.TypeAXFR, dns.TypeIXFR, dns.TypeANY:
		r.Rcode = dns.RcodeRefused
		ev.Reason = "query type not served"
		return
	case dns.TypePTR:
		if a, ok := ptrAddr(ev.Name); ok {
			if name, ok := p.nameOf(a); ok {
				r.Answer = append(r.Answer, &dns.PTR{Hdr: rrHeader(q, dns.TypePTR), Ptr: dns.Fqdn(name)})
				ev.Allowed = true
				return
			}
		}
		r.Rcode = dns.RcodeNameError
		ev.Reason = "not granted"
		return
	}
	if !hostName(ev.Name) {
		r.Rcode = dns.RcodeNameError
		ev.Reason = "not a host name"
		return
	}
	addr, reason := p.addrFor(ev.Name)
	if reason != "" {
		r.Rcode = dns.RcodeNameError
		ev.Reason = reason
		return
	}
	ev.Allowed = true
	if q.Qtype == dns.TypeA {
		r.Answer = append(r.Answer, &dns.A{Hdr: rrHeader(q, dns.TypeA), A: net.IP(addr.AsSlice())})
	}
	// Any other type of a granted name: no data (NOERROR, empty answer),
	// so clients fall back to the A record.
}

// hostName reports whether name is made of letter-digit-hyphen labels: a
// name with escaped bytes (miekg/dns shows a dot inside a label as "\.")
// could mean something else to the host's resolver than to the grant.
func hostName(name string) bool {
	if name == "" || len(name) > 253 {
		return false
	}
	for _, l := range strings.Split(name, ".") {
		if l == "" || len(l) > 63 || strings.Trim(l, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
			return false
		}
	}
	return true
}

func rrHeader(q dns.Question, t uint16) dns.RR_Header {
	return dns.RR_Header{Name: q.Name, Rrtype: t, Class: dns.ClassINET, Ttl: 300}
}

// ptrAddr parses d.c.b.a.in-addr.arpa.
func ptrAddr(name string) (netip.Addr, bool) {
	rest, ok := strings.CutSuffix(name, ".in-addr.arpa")
	if !ok {
		return netip.Addr{}, false
	}
	l := strings.Split(rest, ".")
	if len(l) != 4 {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(l[3] + "." + l[2] + "." + l[1] + "." + l[0])
	return a, err == nil
}

// serveDNSConn answers length-prefixed queries on a TCP connection.
func (p *Proxy) serveDNSConn(c net.Conn, dst string) {
	defer c.Close()
	var hdr [2]byte
	for {
		_ = c.SetDeadline(time.Now().Add(p.lim.DNSTimeout))
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		// Allocated as the bytes come, not from the length alone.
		n := int64(binary.BigEndian.Uint16(hdr[:]))
		q, err := io.ReadAll(io.LimitReader(c, n))
		if err != nil || int64(len(q)) != n {
			return
		}
		if !p.dnsToken() {
			return
		}
		out := p.answer(q, dst)
		if out == nil {
			return
		}
		if _, err := c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(out))), out...)); err != nil {
			return
		}
	}
}
