package egress

import (
	"errors"
	"net"
	"net/netip"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// dgramConn reads datagrams with the address they were sent to, and
// answers from that address: a tool that asks 8.8.8.8 for a name gets its
// answer from 8.8.8.8 (every address is local inside the sandbox).
type dgramConn interface {
	read(b []byte) (n int, dst netip.Addr, from net.Addr, err error)
	write(b []byte, src netip.Addr, to net.Addr) error
}

type dgram4 struct{ c *ipv4.PacketConn }

func (d dgram4) read(b []byte) (int, netip.Addr, net.Addr, error) {
	n, cm, from, err := d.c.ReadFrom(b)
	var dst netip.Addr
	if cm != nil {
		dst, _ = netip.AddrFromSlice(cm.Dst)
	}
	return n, dst.Unmap(), from, err
}

func (d dgram4) write(b []byte, src netip.Addr, to net.Addr) error {
	var cm *ipv4.ControlMessage
	if src.IsValid() {
		cm = &ipv4.ControlMessage{Src: src.AsSlice()}
	}
	_, err := d.c.WriteTo(b, cm, to)
	return err
}

type dgram6 struct{ c *ipv6.PacketConn }

func (d dgram6) read(b []byte) (int, netip.Addr, net.Addr, error) {
	n, cm, from, err := d.c.ReadFrom(b)
	var dst netip.Addr
	if cm != nil {
		dst, _ = netip.AddrFromSlice(cm.Dst)
	}
	return n, dst, from, err
}

func (d dgram6) write(b []byte, src netip.Addr, to net.Addr) error {
	var cm *ipv6.ControlMessage
	if src.IsValid() {
		cm = &ipv6.ControlMessage{Src: src.AsSlice()}
	}
	_, err := d.c.WriteTo(b, cm, to)
	return err
}

func newDgram(pc net.PacketConn) (dgramConn, error) {
	la, err := netip.ParseAddrPort(pc.LocalAddr().String())
	if err != nil {
		return nil, err
	}
	if la.Addr().Is4() {
		c := ipv4.NewPacketConn(pc)
		return dgram4{c}, c.SetControlMessage(ipv4.FlagDst, true)
	}
	c := ipv6.NewPacketConn(pc)
	return dgram6{c}, c.SetControlMessage(ipv6.FlagDst, true)
}

// ServeUDP serves a UDP socket of the sandbox until it is closed: DNS when
// dns is set, otherwise a sink that records each datagram as refused (the
// relay carries TCP only; QUIC clients fall back to TCP).
func (p *Proxy) ServeUDP(pc net.PacketConn, dns bool) error {
	d, err := newDgram(pc)
	if err != nil {
		return err
	}
	if !p.track(pc) {
		return net.ErrClosed
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer p.untrack(pc)
		p.serveUDP(pc, d, dns)
	}()
	return nil
}

func (p *Proxy) serveUDP(pc net.PacketConn, d dgramConn, dns bool) {
	port := 0
	if la, err := netip.ParseAddrPort(pc.LocalAddr().String()); err == nil {
		port = int(la.Port())
	}
	buf := make([]byte, 4096)
	for {
		n, dst, from, err := d.read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || p.ctx.Err() != nil {
				return
			}
			continue
		}
		at := ""
		if dst.IsValid() {
			at = netip.AddrPortFrom(dst, uint16(port)).String()
		}
		if !dns {
			p.log.add(Event{Kind: "connect", Protocol: "udp", Port: port, Dst: at, At: time.Now(),
				Reason: "UDP is not relayed (only TCP to granted names)"}, true)
			continue
		}
		if !p.dnsToken() {
			continue
		}
		// Answers hold one question and at most one short record: they
		// always fit the 512 bytes of plain UDP DNS.
		if out := p.answer(buf[:n], at); out != nil {
			_ = d.write(out, dst, from)
		}
	}
}
