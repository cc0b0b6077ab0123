package sandbox

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/toolcell/toolcell/audit"
	"github.com/toolcell/toolcell/internal/egress"
)

// Resolver looks granted names up on the host for the egress relay
// (LookupNetIP(ctx, network, host) ([]netip.Addr, error)); *net.Resolver
// is one. Tests inject their own to reach local servers.
type Resolver = egress.Resolver

// Dialer connects the egress relay to the upstream (DialContext(ctx,
// network, address) (net.Conn, error)); *net.Dialer is one.
type Dialer = egress.Dialer

// SecretSource resolves the secret references of HTTP API grants
// (capability.HTTPAPI.Secret) on the host. The value goes into one request
// header in the supervisor and nowhere else.
type SecretSource interface {
	Secret(ctx context.Context, ref string) ([]byte, error)
}

// HostSecrets is the default SecretSource: "env:NAME" reads the host
// process's environment, "file:/abs/path" a file (one trailing newline
// dropped).
type HostSecrets struct{}

// Secret implements SecretSource.
func (HostSecrets) Secret(_ context.Context, ref string) ([]byte, error) {
	switch {
	case strings.HasPrefix(ref, "env:"):
		v, ok := os.LookupEnv(strings.TrimPrefix(ref, "env:"))
		if !ok {
			return nil, fmt.Errorf("secret %s: not in the environment", ref)
		}
		return []byte(v), nil
	case strings.HasPrefix(ref, "file:/"):
		b, err := os.ReadFile(strings.TrimPrefix(ref, "file:"))
		if err != nil {
			return nil, fmt.Errorf("secret %s: %w", ref, err)
		}
		return []byte(strings.TrimSuffix(string(b), "\n")), nil
	}
	return nil, fmt.Errorf("secret %s: unknown kind of reference (env:NAME or file:/path)", ref)
}

// EgressLimits are the per-run caps of the egress relay. Zero fields take
// the defaults shown.
type EgressLimits struct {
	MaxConns    int           // concurrent connections (64)
	MaxTotal    int           // connections over the run (4096)
	MaxBytes    int64         // bytes both ways over the run (4 GiB); reserved per copy step, see egress.Limits
	MaxNames    int           // distinct names given an address (256)
	IdleTimeout time.Duration // a connection with no byte either way (60s)
	DialTimeout time.Duration // resolving and connecting upstream (10s)
	DNSRate     int           // DNS queries per second after a burst of 1000 (200)
}

// maxEgressPorts bounds the distinct granted ports: each takes three of
// the sockets pid 1 passes in one message.
const maxEgressPorts = (maxSockets - 3) / 3

// planSock is a socket pid 1 makes inside the sandbox for the relay.
type planSock struct {
	kind       uint32
	addr, port uint32
}

func (s planSock) String() string {
	a := netip.AddrFrom4([4]byte{byte(s.addr >> 24), byte(s.addr >> 16), byte(s.addr >> 8), byte(s.addr)})
	switch s.kind {
	case sockTCP:
		return "tcp " + netip.AddrPortFrom(a, uint16(s.port)).String()
	case sockUDP:
		return "udp " + netip.AddrPortFrom(a, uint16(s.port)).String()
	case sockTCP6:
		return fmt.Sprintf("tcp [::]:%d (IPv4 too)", s.port)
	}
	return fmt.Sprintf("udp [::]:%d", s.port)
}

func (s planSock) udp() bool { return s.kind == sockUDP || s.kind == sockUDP6 }

// hostHasIPv6 reports whether the kernel has IPv6 (the sandbox's network
// namespace then gets it too); looked up once per process.
var hostHasIPv6 = sync.OnceValue(func() bool {
	_, err := os.Stat("/proc/sys/net/ipv6")
	return err == nil
})

// planEgress sets up the relay for a set with egress grants: the proxy, the
// sockets pid 1 will make, and the record's description of both.
func (p *Process) planEgress() error {
	if len(p.set.Egress) == 0 && len(p.set.HTTPAPI) == 0 {
		if len(p.set.EgressAllow) > 0 {
			return fmt.Errorf("%w: egress_allow %v without any egress grant", ErrPolicy, p.set.EgressAllow)
		}
		return nil
	}
	var grants []egress.Grant
	for _, s := range p.set.Egress {
		g, err := egress.ParseGrant(s)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrPolicy, err)
		}
		grants = append(grants, g)
	}
	var apis []egress.API
	src := p.r.Secrets
	if src == nil {
		src = HostSecrets{}
	}
	for i, a := range p.set.HTTPAPI {
		v, err := src.Secret(p.ctx, a.Secret)
		if err != nil {
			return fmt.Errorf("%w: http_api[%d] (%s): %w", ErrSetup, i, a.Host, err)
		}
		if strings.ContainsAny(string(v), "\r\n\x00") || len(v) == 0 {
			return fmt.Errorf("%w: http_api[%d] (%s): secret %s is empty or holds a line break or NUL", ErrSetup, i, a.Host, a.Secret)
		}
		apis = append(apis, egress.API{Name: a.Host, Header: a.Header, Value: a.Prefix + string(v), Secret: a.Secret})
		grants = append(grants, egress.Grant{Domain: a.Host, Port: 80})
	}
	ports := egress.Ports(grants)
	if len(ports) > maxEgressPorts {
		return fmt.Errorf("%w: egress: %d distinct ports, at most %d", ErrPolicy, len(ports), maxEgressPorts)
	}
	var allow []netip.Prefix
	for _, r := range p.set.EgressAllow {
		pr, err := netip.ParsePrefix(r)
		if err != nil {
			return fmt.Errorf("%w: egress_allow: %w", ErrPolicy, err)
		}
		allow = append(allow, pr)
	}
	lim := p.r.Egress
	cfg := egress.Config{Grants: grants, APIs: apis, TLS: p.r.UpstreamTLS, Allow: allow, Limits: egress.Limits{MaxConns: lim.MaxConns, MaxTotal: lim.MaxTotal,
		MaxBytes: lim.MaxBytes, MaxNames: lim.MaxNames, IdleTimeout: lim.IdleTimeout,
		DialTimeout: lim.DialTimeout, DNSRate: lim.DNSRate}}
	if p.r.Resolver != nil {
		cfg.Resolver = p.r.Resolver
	}
	if p.r.Dialer != nil {
		cfg.Dialer = p.r.Dialer
	}
	p.proxy = egress.New(cfg)

	// Every address is local inside the sandbox (a local route for all of
	// IPv4 and IPv6 on loopback), so one socket per port and family sees
	// whatever address the tool tried: DNS on UDP and TCP port 53 (any
	// server the tool asks gets toolcell's answer), a TCP listener per
	// granted port (the relay tells names apart by the address connected
	// to), and a UDP socket per granted port that only records (QUIC).
	v6 := hostHasIPv6()
	p.netFlags = planRoute4
	tcp := uint32(sockTCP)
	if v6 {
		p.netFlags |= planRoute6
		tcp = sockTCP6
	}
	udp := func(port uint16) {
		p.socks = append(p.socks, planSock{kind: sockUDP, port: uint32(port)})
		if v6 {
			p.socks = append(p.socks, planSock{kind: sockUDP6, port: uint32(port)})
		}
	}
	udp(53)
	p.socks = append(p.socks, planSock{kind: tcp, port: 53})
	for _, port := range ports {
		if port != 53 {
			p.socks = append(p.socks, planSock{kind: tcp, port: uint32(port)})
			udp(port)
		}
	}

	hosts := p.proxy.Hosts()
	info := &audit.EgressInfo{Grants: append([]string{}, p.set.Egress...), DNS: egress.DNSAddr.String() + ":53",
		Hosts: map[string]string{}, Limits: egressLimits(cfg.Limits)}
	info.Allow = append(info.Allow, p.set.EgressAllow...)
	for _, a := range p.set.HTTPAPI {
		info.APIs = append(info.APIs, audit.APIInfo{Host: a.Host, Header: a.Header, Secret: a.Secret, Upstream: "https://" + a.Host + "/"})
	}
	sort.Strings(info.Grants)
	for n, a := range hosts {
		info.Hosts[n] = a.String()
	}
	for _, s := range p.socks {
		info.Listeners = append(info.Listeners, s.String())
	}
	p.rec.Enforcement.Egress = info
	return nil
}

func egressLimits(l egress.Limits) map[string]string {
	l = egress.Effective(l)
	return map[string]string{
		"max_conns": strconv.Itoa(l.MaxConns), "max_total": strconv.Itoa(l.MaxTotal),
		"max_bytes": strconv.FormatInt(l.MaxBytes, 10), "max_names": strconv.Itoa(l.MaxNames),
		"idle_timeout": l.IdleTimeout.String(), "dial_timeout": l.DialTimeout.String(),
		"dns_rate": strconv.Itoa(l.DNSRate) + "/s",
	}
}

// networkFiles are /etc/hosts and /etc/resolv.conf for a run with egress:
// the resolver is toolcell's, and exact names resolve without it too.
func (p *Process) networkFiles() map[string]string {
	var h strings.Builder
	hosts := p.proxy.Hosts()
	// A granted "localhost" (a service on the host's loopback, with an
	// allowed range) must reach the relay: the resolver reads the first
	// line naming it.
	if _, ok := hosts["localhost"]; ok {
		h.WriteString("::1\tip6-localhost ip6-loopback\n127.0.1.1\t" + sandboxHost + "\n")
	} else {
		h.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t" + sandboxHost + "\n")
	}
	names := make([]string, 0, len(hosts))
	for n := range hosts {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return hosts[names[i]].Less(hosts[names[j]]) })
	for _, n := range names {
		fmt.Fprintf(&h, "%s\t%s\n", hosts[n], n)
	}
	return map[string]string{
		"/etc/hosts":       h.String(),
		"/etc/resolv.conf": "# toolcell: names are answered by the supervisor; only granted ones resolve\nnameserver " + egress.DNSAddr.String() + "\noptions ndots:1 timeout:2 attempts:2\n",
	}
}

// serveEgress takes the sockets pid 1 made and serves them.
func (p *Process) serveEgress(fds []int) error {
	if len(fds) != len(p.socks) {
		closeFDs(fds)
		return fmt.Errorf("%w: pid 1 passed %d sockets, want %d", ErrSetup, len(fds), len(p.socks))
	}
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "toolcell-egress")
		var err error
		if p.socks[i].udp() {
			var pc net.PacketConn
			if pc, err = net.FilePacketConn(f); err == nil {
				p.netClosers = append(p.netClosers, pc)
				err = p.proxy.ServeUDP(pc, p.socks[i].port == 53)
			}
		} else {
			var l net.Listener
			if l, err = net.FileListener(f); err == nil {
				p.netClosers = append(p.netClosers, l)
				go p.proxy.Serve(l)
			}
		}
		f.Close()
		if err != nil {
			for _, g := range fds[i+1:] {
				closeFDs([]int{g})
			}
			return fmt.Errorf("%w: egress socket %s: %w", ErrSetup, p.socks[i], err)
		}
	}
	return nil
}

// endEgress stops the relay and puts what it saw in the record.
func (p *Process) endEgress() {
	if p.proxy == nil {
		return
	}
	for _, c := range p.netClosers {
		c.Close()
	}
	p.netClosers = nil
	p.proxy.Close()
	ev, dropped := p.proxy.Events()
	p.proxy = nil
	for _, e := range ev {
		c := audit.NetEvent{Kind: e.Kind, Name: e.Name, Type: e.Type, Port: e.Port, Dst: e.Dst, IP: e.Addr,
			Protocol: e.Protocol, SNI: e.SNI, Allowed: e.Allowed, Reason: e.Reason, BytesOut: e.BytesOut,
			BytesIn: e.BytesIn, Method: e.Method, Path: e.Path, Status: e.Status, Secret: e.Secret, Requests: e.Requests,
			Count: e.Count, At: e.At.UTC()}
		if e.Duration > 0 {
			c.DurationMS = ms(e.Duration)
		}
		p.rec.Network = append(p.rec.Network, c)
	}
	p.rec.NetworkDropped = dropped
}
