package egress

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Resolver looks names up on the host (net.Resolver has this method).
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Dialer connects to the upstream (net.Dialer has this method).
type Dialer interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

// Limits are the per-run caps. Zero fields take the defaults. MaxBytes
// is charged before bytes move: a spliced direction waiting for data
// holds up to 256 KiB of it (16 KiB on a fresh or idle connection) and
// gives back what did not come, so a budget of a few hundred KiB can be
// reached before that many bytes moved.
type Limits struct {
	MaxConns    int           // concurrent connections (default 64)
	MaxTotal    int           // connections over the run (default 4096)
	MaxBytes    int64         // bytes both ways over the run (default 4 GiB)
	MaxNames    int           // distinct names given an address (default 256)
	IdleTimeout time.Duration // a connection with no byte either way (default 60s)
	DialTimeout time.Duration // resolving and connecting upstream (default 10s)
	SniffWait   time.Duration // silence after which the relay connects anyway, for servers that speak first (default 1s)
	DNSTimeout  time.Duration // a DNS-over-TCP connection's idle time (default 10s)
	DNSRate     int           // DNS queries per second after a burst of 1000 (default 200)
}

// Effective returns l with the defaults filled in.
func Effective(l Limits) Limits { return l.withDefaults() }

func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defD := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.MaxConns, 64)
	def(&l.MaxTotal, 4096)
	def(&l.MaxNames, 256)
	def(&l.DNSRate, 200)
	if l.MaxBytes <= 0 {
		l.MaxBytes = 4 << 30
	}
	defD(&l.IdleTimeout, 60*time.Second)
	defD(&l.DialTimeout, 10*time.Second)
	defD(&l.SniffWait, time.Second)
	defD(&l.DNSTimeout, 10*time.Second)
	return l
}

// Config configures a Proxy.
type Config struct {
	Grants   []Grant
	Allow    []netip.Prefix // ranges a granted name may resolve into after all
	APIs     []API          // names whose port 80 is an API call-through
	TLS      *tls.Config    // base for the APIs' upstream TLS (RootCAs); nil: system roots
	Resolver Resolver       // default net.DefaultResolver
	Dialer   Dialer         // default a net.Dialer
	Limits   Limits
}

// Proxy serves one sandbox's DNS and connections.
type Proxy struct {
	cfg Config
	lim Limits
	log eventLog

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	byName   map[string]netip.Addr
	byAddr   map[netip.Addr]string
	next     netip.Addr
	conns    map[io.Closer]struct{}
	closed   bool
	active   int
	total    int
	dnsConns int

	bytes     atomic.Int64 // budget left
	hostAddrs map[netip.Addr]bool

	dnsMu     sync.Mutex
	dnsTokens float64
	dnsLast   time.Time
	dnsLimit  int // queries dropped by the rate limit
}

// New returns a proxy for cfg. Exact grants get their addresses at once
// (Hosts), in grant order.
func New(cfg Config) *Proxy {
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	if cfg.Dialer == nil {
		cfg.Dialer = &net.Dialer{}
	}
	p := &Proxy{cfg: cfg, lim: cfg.Limits.withDefaults(), byName: map[string]netip.Addr{},
		byAddr: map[netip.Addr]string{}, next: FirstName, conns: map[io.Closer]struct{}{}}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	// Services listening on all of the host's addresses are the host's:
	// its interface addresses are refused like loopback.
	p.hostAddrs = map[netip.Addr]bool{}
	if as, err := net.InterfaceAddrs(); err == nil {
		for _, a := range as {
			if pfx, err := netip.ParsePrefix(a.String()); err == nil {
				p.hostAddrs[pfx.Addr().Unmap().WithZone("")] = true
			}
		}
	}
	p.bytes.Store(p.lim.MaxBytes)
	p.dnsTokens = 1000
	for _, g := range cfg.Grants {
		if !g.Wildcard {
			p.addrFor(g.Domain)
		}
	}
	return p
}

// Hosts returns the exact granted names and their addresses, for the
// view's /etc/hosts.
func (p *Proxy) Hosts() map[string]netip.Addr {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]netip.Addr{}
	for _, g := range p.cfg.Grants {
		if a, ok := p.byName[g.Domain]; ok && !g.Wildcard {
			out[g.Domain] = a
		}
	}
	return out
}

// granted reports whether name is granted on any port.
func (p *Proxy) granted(name string) bool {
	for _, g := range p.cfg.Grants {
		if g.matches(name) {
			return true
		}
	}
	return false
}

func (p *Proxy) grantedPort(name string, port uint16) bool {
	for _, g := range p.cfg.Grants {
		if g.Port == port && g.matches(name) {
			return true
		}
	}
	return false
}

// addrFor returns name's synthetic address, handing out the next one on
// first use, or why the name gets none.
func (p *Proxy) addrFor(name string) (netip.Addr, string) {
	if !p.granted(name) {
		return netip.Addr{}, "not granted"
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if a, ok := p.byName[name]; ok {
		return a, ""
	}
	if len(p.byName) >= p.lim.MaxNames || p.next.Compare(LastName) > 0 {
		return netip.Addr{}, fmt.Sprintf("cap reached: %d names", p.lim.MaxNames)
	}
	a := p.next
	p.next = p.next.Next()
	p.byName[name], p.byAddr[a] = a, name
	return a, ""
}

func (p *Proxy) nameOf(a netip.Addr) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n, ok := p.byAddr[a]
	return n, ok
}

// dnsToken takes one query from the rate limit: 1000 at once, then
// Limits.DNSRate per second. A flood is counted, not answered.
func (p *Proxy) dnsToken() bool {
	p.dnsMu.Lock()
	defer p.dnsMu.Unlock()
	now := time.Now()
	if !p.dnsLast.IsZero() {
		p.dnsTokens += now.Sub(p.dnsLast).Seconds() * float64(p.lim.DNSRate)
		if p.dnsTokens > 1000 {
			p.dnsTokens = 1000
		}
	}
	p.dnsLast = now
	if p.dnsTokens < 1 {
		p.dnsLimit++
		return false
	}
	p.dnsTokens--
	return true
}

// Serve accepts connections on l (a TCP listener inside the sandbox) until
// l is closed or the proxy is.
func (p *Proxy) Serve(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if errors.Is(err, net.ErrClosed) || p.ctx.Err() != nil {
				return
			}
			// EMFILE and the like: back off instead of spinning.
			select {
			case <-p.ctx.Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		if !p.track(c) {
			c.Close()
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer p.untrack(c)
			p.handle(c)
		}()
	}
}

// track registers what Close must close; false once the proxy is closed.
func (p *Proxy) track(c io.Closer) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c io.Closer) {
	c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// handle serves one connection the tool made.
func (p *Proxy) handle(c net.Conn) {
	la, _ := netip.ParseAddrPort(c.LocalAddr().String())
	dst, port := la.Addr().Unmap(), la.Port()
	at := netip.AddrPortFrom(dst, port).String()
	name, ok := p.nameOf(dst)
	if port == 53 && !(ok && p.grantedPort(name, 53)) {
		// DNS over TCP, to toolcell's address or any other: every
		// address is local inside the sandbox.
		if !p.admitDNS() {
			p.log.add(Event{Kind: "dns", Dst: at, Reason: fmt.Sprintf("cap reached: %d DNS connections", maxDNSConns), At: time.Now()}, true)
			return
		}
		defer p.releaseDNS()
		p.serveDNSConn(c, at)
		return
	}
	ev := Event{Kind: "connect", Port: int(port), Dst: at, At: time.Now()}
	if !ok {
		ev.Reason = "address not handed out by toolcell's DNS (direct IP connect)"
		p.log.add(ev, true)
		return
	}
	ev.Name = name
	if !p.grantedPort(name, port) {
		ev.Reason = "port not granted for this name"
		p.log.add(ev, true)
		return
	}
	if reason := p.admit(); reason != "" {
		ev.Reason = reason
		p.log.add(ev, true)
		return
	}
	defer p.release()
	if api := p.api(name); api != nil && port == api.servedOn() {
		p.serveAPI(c, api, at)
		return
	}
	p.relay(c, &ev)
	ev.Duration = time.Since(ev.At)
	// Refusals are folded, unless bytes moved first (a later request
	// refused): those keep their own entry with the counts.
	p.log.add(ev, !ev.Allowed && ev.BytesOut == 0 && ev.BytesIn == 0)
}

// maxDNSConns bounds concurrent DNS-over-TCP connections.
const maxDNSConns = 16

func (p *Proxy) admitDNS() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dnsConns >= maxDNSConns {
		return false
	}
	p.dnsConns++
	return true
}

func (p *Proxy) releaseDNS() {
	p.mu.Lock()
	p.dnsConns--
	p.mu.Unlock()
}

// admit takes a connection slot, or says which cap is reached.
func (p *Proxy) admit() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.active >= p.lim.MaxConns:
		return fmt.Sprintf("cap reached: %d concurrent connections", p.lim.MaxConns)
	case p.total >= p.lim.MaxTotal:
		return fmt.Sprintf("cap reached: %d connections", p.lim.MaxTotal)
	case p.bytes.Load() <= 0:
		return fmt.Sprintf("cap reached: %d bytes", p.lim.MaxBytes)
	}
	p.active++
	p.total++
	return ""
}

func (p *Proxy) release() {
	p.mu.Lock()
	p.active--
	p.mu.Unlock()
}

// dial resolves name on the host, refuses blocked addresses, and connects
// to the first address that is not blocked.
func (p *Proxy) dial(name string, port uint16, ev *Event) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(p.ctx, p.lim.DialTimeout)
	defer cancel()
	addrs, err := p.cfg.Resolver.LookupNetIP(ctx, "ip", name)
	if err != nil {
		return nil, fmt.Errorf("resolve: %w", err)
	}
	var why string
	for _, a := range addrs {
		reason := Blocked(a, p.cfg.Allow)
		if reason == "" && p.isHostAddr(a) && !allowed(a, p.cfg.Allow) {
			reason = "an address of this host"
		}
		if reason != "" {
			if why == "" {
				why, ev.Addr = reason+" "+a.String(), a.String()
			}
			continue
		}
		ev.Addr = a.Unmap().String()
		return p.cfg.Dialer.DialContext(ctx, "tcp", netip.AddrPortFrom(a.Unmap(), port).String())
	}
	if why == "" {
		return nil, errors.New("resolve: no address")
	}
	return nil, errors.New(why)
}

// Events returns the record so far and how many events did not fit.
func (p *Proxy) Events() ([]Event, int) {
	ev, dropped := p.log.result()
	p.dnsMu.Lock()
	n := p.dnsLimit
	p.dnsMu.Unlock()
	if n > 0 {
		ev = append(ev, Event{Kind: "dns", Reason: "rate limit: queries dropped unanswered", Count: n})
	}
	return ev, dropped
}

// Close stops serving and ends every open connection; it returns once
// they are all accounted for.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	conns := make([]io.Closer, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	p.cancel()
	for _, c := range conns {
		c.Close()
	}
	p.wg.Wait()
}

func itoa(n int) string { return strconv.Itoa(n) }

// isHostAddr reports whether a is one of the host's interface addresses
// (as read when the proxy was made), also inside an IPv6 translation range.
func (p *Proxy) isHostAddr(a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	if p.hostAddrs[a] {
		return true
	}
	if a.Is6() {
		for _, t := range translated {
			if t.Contains(a) {
				b := a.As16()
				return p.hostAddrs[netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})]
			}
		}
	}
	return false
}

func allowed(a netip.Addr, allow []netip.Prefix) bool {
	for _, p := range allow {
		if p.Contains(a.Unmap()) || p.Contains(a) {
			return true
		}
	}
	return false
}
