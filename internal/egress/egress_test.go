package egress

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestBlocked(t *testing.T) {
	for _, c := range []struct {
		addr    string
		blocked bool
	}{
		{"93.184.215.14", false}, {"2606:2800:21f:cb07:6820:80da:af6b:8b2c", false},
		{"127.0.0.1", true}, {"127.77.0.2", true}, {"10.1.2.3", true}, {"172.20.0.1", true},
		{"192.168.1.1", true}, {"169.254.169.254", true}, {"100.100.100.200", true},
		{"100.64.0.1", true}, {"0.0.0.0", true}, {"224.0.0.1", true}, {"255.255.255.255", true},
		{"240.0.0.1", true}, {"::1", true}, {"::", true}, {"fe80::1", true}, {"fd00:ec2::254", true},
		{"ff02::1", true}, {"::ffff:127.0.0.1", true}, {"::ffff:169.254.169.254", true},
		{"64:ff9b::a9fe:a9fe", true}, {"::ffff:93.184.215.14", false}, {"64:ff9b::5db8:d70e", false},
		{"198.18.0.1", true}, {"192.0.0.8", true}, {"168.63.129.16", true}, {"fec0::1", true},
		{"64:ff9b:1::1", true}, {"2002:7f00:1::1", true}, {"2001:0:4136:e378::1", true},
		{"::ffff:0:7f00:1", true}, {"2001:db8::1", false}, {"2a00:1450:4001::1", false},
	} {
		got := Blocked(netip.MustParseAddr(c.addr), nil)
		if (got != "") != c.blocked {
			t.Errorf("Blocked(%s) = %q, want blocked=%v", c.addr, got, c.blocked)
		}
	}
	allow := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	if why := Blocked(netip.MustParseAddr("10.9.9.9"), allow); why != "" {
		t.Errorf("10.9.9.9 with 10.0.0.0/8 allowed: %q", why)
	}
	if why := Blocked(netip.MustParseAddr("::ffff:10.9.9.9"), allow); why != "" {
		t.Errorf("::ffff:10.9.9.9 with 10.0.0.0/8 allowed: %q", why)
	}
	if why := Blocked(netip.MustParseAddr("192.168.0.1"), allow); why == "" {
		t.Error("192.168.0.1 allowed by 10.0.0.0/8")
	}
}

func grants(t *testing.T, s ...string) []Grant {
	t.Helper()
	var gs []Grant
	for _, g := range s {
		x, err := ParseGrant(g)
		if err != nil {
			t.Fatal(err)
		}
		gs = append(gs, x)
	}
	return gs
}

func TestParseGrant(t *testing.T) {
	g, err := ParseGrant("*.example.com:443")
	if err != nil || !g.Wildcard || g.Domain != "example.com" || g.Port != 443 || g.String() != "*.example.com:443" {
		t.Fatalf("got %+v, %v", g, err)
	}
	for _, bad := range []string{"example.com", "example.com:0", "example.com:70000", ":80", "a.*.com:1"} {
		if _, err := ParseGrant(bad); err == nil {
			t.Errorf("ParseGrant(%q) accepted", bad)
		}
	}
	if !g.matches("a.example.com") || !g.matches("b.a.example.com") || g.matches("example.com") || g.matches("aexample.com") {
		t.Error("wildcard matching")
	}
}

// serveDNS runs p's DNS on a local UDP socket and returns its address.
func serveDNS(t *testing.T, p *Proxy) string {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	if err := p.ServeUDP(pc, true); err != nil {
		t.Fatal(err)
	}
	return pc.LocalAddr().String()
}

func query(t *testing.T, server, name string, typ uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), typ)
	c := &dns.Client{Timeout: 2 * time.Second}
	r, _, err := c.Exchange(m, server)
	if err != nil {
		t.Fatalf("query %s: %v", name, err)
	}
	return r
}

func TestDNS(t *testing.T) {
	p := New(Config{Grants: grants(t, "api.example.com:443", "*.cdn.example.org:443", "api.example.com:80"), Limits: Limits{MaxNames: 3}})
	defer p.Close()
	if h := p.Hosts(); len(h) != 1 || h["api.example.com"] != FirstName {
		t.Fatalf("Hosts = %v", h)
	}
	srv := serveDNS(t, p)

	r := query(t, srv, "API.Example.com", dns.TypeA)
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "127.77.0.2" {
		t.Fatalf("A api.example.com: %v", r)
	}
	if r := query(t, srv, "api.example.com", dns.TypeAAAA); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 {
		t.Fatalf("AAAA api.example.com: %v", r)
	}
	r = query(t, srv, "img.cdn.example.org", dns.TypeA)
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "127.77.0.3" {
		t.Fatalf("A img.cdn.example.org: %v", r)
	}
	if r := query(t, srv, "3.0.77.127.in-addr.arpa", dns.TypePTR); len(r.Answer) != 1 || r.Answer[0].(*dns.PTR).Ptr != "img.cdn.example.org." {
		t.Fatalf("PTR: %v", r)
	}
	for _, n := range []string{"cdn.example.org", "c2VjcmV0.attacker.test", "example.com"} {
		if r := query(t, srv, n, dns.TypeA); r.Rcode != dns.RcodeNameError || len(r.Answer) != 0 {
			t.Errorf("A %s: %v", n, r)
		}
	}
	if r := query(t, srv, "c2VjcmV0.attacker.test", dns.TypeTXT); r.Rcode != dns.RcodeNameError {
		t.Errorf("TXT: %v", r)
	}
	if r := query(t, srv, "api.example.com", dns.TypeANY); r.Rcode != dns.RcodeRefused {
		t.Errorf("ANY: %v", r)
	}
	// A label with an escaped dot is not a host name.
	m := new(dns.Msg)
	m.SetQuestion("evil\\.api.cdn.example.org.", dns.TypeA)
	if r, _, err := (&dns.Client{Timeout: 2 * time.Second}).Exchange(m, srv); err != nil || r.Rcode != dns.RcodeNameError {
		t.Errorf("escaped label: %v %v", r, err)
	}
	// The third name is the cap.
	query(t, srv, "a.cdn.example.org", dns.TypeA)
	if r := query(t, srv, "b.cdn.example.org", dns.TypeA); r.Rcode != dns.RcodeNameError {
		t.Errorf("past the name cap: %v", r)
	}

	ev, dropped := p.Events()
	if dropped != 0 {
		t.Errorf("dropped %d", dropped)
	}
	want := map[string]string{
		"A api.example.com":          "",
		"AAAA api.example.com":       "",
		"A c2vjcmv0.attacker.test":   "not granted",
		"TXT c2vjcmv0.attacker.test": "not granted",
		"A cdn.example.org":          "not granted",
		"ANY api.example.com":        "query type not served",
		"A b.cdn.example.org":        "cap reached: 3 names",
	}
	got := map[string]Event{}
	for _, e := range ev {
		got[e.Type+" "+e.Name] = e
	}
	for k, reason := range want {
		e, ok := got[k]
		if !ok {
			t.Errorf("no event for %s in %+v", k, ev)
			continue
		}
		if e.Kind != "dns" || e.Reason != reason || e.Allowed != (reason == "") {
			t.Errorf("%s: %+v, want reason %q", k, e, reason)
		}
	}
}

func TestDNSFold(t *testing.T) {
	p := New(Config{Grants: grants(t, "api.example.com:443")})
	defer p.Close()
	srv := serveDNS(t, p)
	for i := 0; i < 5; i++ {
		query(t, srv, "x.attacker.test", dns.TypeA)
	}
	ev, _ := p.Events()
	if len(ev) != 1 || ev[0].Count != 5 || ev[0].Name != "x.attacker.test" {
		t.Fatalf("events %+v", ev)
	}
}

func TestDNSRateLimit(t *testing.T) {
	p := New(Config{Grants: grants(t, "api.example.com:443"), Limits: Limits{DNSRate: 1}})
	defer p.Close()
	n := 0
	for i := 0; i < 1100; i++ {
		if p.dnsToken() {
			n++
		}
	}
	if n < 1000 || n > 1001 {
		t.Fatalf("%d of 1100 queries answered, want the burst of 1000", n)
	}
	ev, _ := p.Events()
	if len(ev) != 1 || ev[0].Count < 99 || !strings.Contains(ev[0].Reason, "rate limit") {
		t.Fatalf("events %+v", ev)
	}
}

// The fixtures: a resolver that maps names to public-looking addresses and
// a dialer that sends those to local upstream servers.
type fakeResolver map[string][]netip.Addr

func (r fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := r[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

type fakeDialer struct {
	routes map[string]string // address dialed -> local upstream
	dialed chan string
}

func (d fakeDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	d.dialed <- addr
	to, ok := d.routes[addr]
	if !ok {
		return nil, fmt.Errorf("test dialer: no route to %s", addr)
	}
	var nd net.Dialer
	return nd.DialContext(ctx, network, to)
}

// listen binds a listener on 127.77.0.2 (the first exact grant's address),
// so that tests reach the proxy the way a sandboxed tool would.
func listenFirst(t *testing.T) (net.Listener, int) {
	t.Helper()
	l, err := net.Listen("tcp4", "127.77.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	return l, l.Addr().(*net.TCPAddr).Port
}

func newFixture(t *testing.T, upstream string, resolve []netip.Addr, lim Limits, extra ...string) (*Proxy, int, fakeDialer) {
	t.Helper()
	l, port := listenFirst(t)
	d := fakeDialer{routes: map[string]string{}, dialed: make(chan string, 16)}
	for _, a := range resolve {
		d.routes[netip.AddrPortFrom(a, uint16(port)).String()] = upstream
	}
	gs := grants(t, append([]string{fmt.Sprintf("api.example.com:%d", port)}, extra...)...)
	p := New(Config{Grants: gs, Resolver: fakeResolver{"api.example.com": resolve}, Dialer: d, Limits: lim})
	go p.Serve(l)
	t.Cleanup(func() { l.Close(); p.Close() })
	return p, port, d
}

var public = []netip.Addr{netip.MustParseAddr("203.0.113.7")}

func lastEvent(t *testing.T, p *Proxy) Event {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		p.Close()
		if ev, _ := p.Events(); len(ev) > 0 {
			return ev[len(ev)-1]
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no event")
	return Event{}
}

func TestRelayHTTP(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s", r.Host)
	}))
	defer up.Close()
	p, port, _ := newFixture(t, up.Listener.Addr().String(), public, Limits{})
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "tcp", fmt.Sprintf("127.77.0.2:%d", port))
	}}}
	resp, err := c.Get(fmt.Sprintf("http://api.example.com:%d/x", port))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.HasPrefix(string(body), "hello api.example.com") {
		t.Fatalf("body %q", body)
	}
	e := lastEvent(t, p)
	if !e.Allowed || e.Kind != "connect" || e.Name != "api.example.com" || e.Protocol != "http" ||
		e.Addr != "203.0.113.7" || e.BytesIn < int64(len(body)) || e.BytesOut == 0 || e.Reason != "" {
		t.Fatalf("event %+v", e)
	}
}

func rawRequest(t *testing.T, port int, req string) string {
	t.Helper()
	c, err := net.Dial("tcp4", fmt.Sprintf("127.77.0.2:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, req)
	b, _ := io.ReadAll(c)
	return string(b)
}

func TestRelayHostMismatch(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "reached") }))
	defer up.Close()
	for _, req := range []string{
		"GET / HTTP/1.1\r\nHost: internal.example.net\r\n\r\n",
		"get / HTTP/1.1\r\nHost: internal.example.net\r\n\r\n",
		"PROPFIND / HTTP/1.1\r\nHost: internal.example.net\r\n\r\n",
		"\r\nGET / HTTP/1.1\r\nHost: internal.example.net\r\n\r\n",
		"GET http://api.example.com/ HTTP/1.1\r\nHost: internal.example.net\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: api.example.com\r\nHost: internal.example.net\r\n\r\n",
		"GET http://internal.example.net/ HTTP/1.1\r\nHost: api.example.com\r\n\r\n",
		"CONNECT internal.example.net:443 HTTP/1.1\r\nHost: internal.example.net\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"GET\t/\tHTTP/1.1\r\nHost: internal.example.net\r\n\r\n",
		" GET / HTTP/1.1\r\nHost: internal.example.net\r\n\r\n",
		"GET /a b HTTP/1.1\r\nHost: internal.example.net\r\n\r\n",
		"GET / HTTP/1.1 x\r\nHost: internal.example.net\r\n\r\n",
		"GET /\r\nHost: internal.example.net\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: api.example.com:80@internal.example.net\r\n\r\n",
		"GET / HTTP/1.1\r\nHost : internal.example.net\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: api.example.com\r\nX: a\r\n Host: internal.example.net\r\n\r\n",
		"GET http:///internal.example.net/ HTTP/1.1\r\nHost: api.example.com\r\n\r\n",
		"GET //internal.example.net/x HTTP/1.1\r\nHost: api.example.com\r\n\r\n",
		"GET http:/internal.example.net/ HTTP/1.1\r\nHost: api.example.com\r\n\r\n",
		"GET x:@internal.example.net/ HTTP/1.1\r\nHost: api.example.com\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: api.example.com\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n",
	} {
		p, port, _ := newFixture(t, up.Listener.Addr().String(), public, Limits{})
		if got := rawRequest(t, port, req); strings.Contains(got, "reached") {
			t.Errorf("%q reached the upstream", req)
		}
		e := lastEvent(t, p)
		if e.Allowed || e.Protocol != "http" || e.Reason == "" {
			t.Errorf("%q: event %+v", req, e)
		}
	}
}

func TestRelayTLS(t *testing.T) {
	up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "secure") }))
	defer up.Close()
	for _, c := range []struct {
		sni     string
		allowed bool
	}{{"api.example.com", true}, {"evil.example.net", false}, {"", true}} {
		p, port, _ := newFixture(t, up.Listener.Addr().String(), public, Limits{})
		conn, err := tls.Dial("tcp4", fmt.Sprintf("127.77.0.2:%d", port), &tls.Config{ServerName: c.sni, InsecureSkipVerify: true})
		if err == nil {
			fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n")
			b, _ := io.ReadAll(conn)
			conn.Close()
			if !strings.Contains(string(b), "secure") {
				err = fmt.Errorf("response %q", b)
			}
		}
		if (err == nil) != c.allowed {
			t.Errorf("sni %q: err %v, want allowed=%v", c.sni, err, c.allowed)
		}
		e := lastEvent(t, p)
		if e.Allowed != c.allowed || e.Protocol != "tls" || e.SNI != c.sni {
			t.Errorf("sni %q: event %+v", c.sni, e)
		}
		if !c.allowed && !strings.HasPrefix(e.Reason, "sni mismatch") {
			t.Errorf("sni %q: reason %q", c.sni, e.Reason)
		}
	}
}

func TestRelayRebinding(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "reached") }))
	defer up.Close()
	for _, addrs := range [][]netip.Addr{
		{netip.MustParseAddr("127.0.0.1")},
		{netip.MustParseAddr("169.254.169.254")},
		{netip.MustParseAddr("::ffff:10.0.0.1")},
		{netip.MustParseAddr("fd00:ec2::254")},
	} {
		p, port, d := newFixture(t, up.Listener.Addr().String(), addrs, Limits{})
		if got := rawRequest(t, port, "GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n"); strings.Contains(got, "reached") {
			t.Errorf("%v reached the upstream", addrs)
		}
		e := lastEvent(t, p)
		if e.Allowed || !strings.Contains(e.Reason, "address") || e.Addr != addrs[0].String() {
			t.Errorf("%v: event %+v", addrs, e)
		}
		select {
		case a := <-d.dialed:
			t.Errorf("%v: dialed %s", addrs, a)
		default:
		}
	}
}

// The host's own interface addresses are refused like loopback.
func TestRelayHostAddress(t *testing.T) {
	p, port, d := newFixture(t, "127.0.0.1:1", public, Limits{})
	p.hostAddrs[public[0]] = true
	rawRequest(t, port, "GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
	if e := lastEvent(t, p); e.Allowed || e.Reason != "an address of this host 203.0.113.7" {
		t.Fatalf("event %+v", e)
	}
	select {
	case a := <-d.dialed:
		t.Fatalf("dialed %s", a)
	default:
	}
}

// A request line ended by a half-close instead of a line feed is read as
// ended (Python's http.server serves it).
func TestRelayRequestLineAtEOF(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "reached") }))
	defer up.Close()
	for _, line := range []string{"GET http://internal.example.net/ HTTP/1.0", "GET http://internal.example.net/"} {
		p, port, d := newFixture(t, up.Listener.Addr().String(), public, Limits{})
		c, err := net.Dial("tcp4", fmt.Sprintf("127.77.0.2:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, line)
		c.(*net.TCPConn).CloseWrite()
		io.ReadAll(c)
		c.Close()
		if e := lastEvent(t, p); e.Allowed || !strings.Contains(e.Reason, "closing its side") {
			t.Errorf("%q: event %+v", line, e)
		}
		select {
		case a := <-d.dialed:
			t.Errorf("%q: dialed %s", line, a)
		default:
		}
	}
	// A text line cut by EOF still passes.
	if classifyLine([]byte("x\n")) != lineText || classifyLine([]byte(" \n")) != lineText {
		t.Error("text lines at EOF")
	}
}

func TestRelayDirectAndPort(t *testing.T) {
	// A listener on an address the DNS never handed out (what a tool
	// reaches connecting to an IP of its choosing), and a name granted on
	// another port than the one connected to.
	l, err := net.Listen("tcp4", "127.77.0.9:0")
	if err != nil {
		t.Fatal(err)
	}
	l2, port2 := listenFirst(t)
	p := New(Config{Grants: grants(t, "api.example.com:1"), Resolver: fakeResolver{}, Dialer: fakeDialer{dialed: make(chan string, 4)}})
	go p.Serve(l)
	go p.Serve(l2)
	defer func() { l.Close(); l2.Close(); p.Close() }()
	for _, a := range []string{l.Addr().String(), fmt.Sprintf("127.77.0.2:%d", port2)} {
		c, err := net.Dial("tcp4", a)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if n, _ := c.Read(make([]byte, 1)); n != 0 {
			t.Errorf("%s: read data", a)
		}
		c.Close()
	}
	p.Close()
	ev, _ := p.Events()
	if len(ev) != 2 || !strings.Contains(ev[0].Reason, "direct IP") || ev[0].Name != "" ||
		ev[1].Reason != "port not granted for this name" || ev[1].Name != "api.example.com" {
		t.Fatalf("events %+v", ev)
	}
}

func TestRelayCaps(t *testing.T) {
	// An upstream that echoes.
	el, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer el.Close()
	go func() {
		for {
			c, err := el.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()

	t.Run("bytes", func(t *testing.T) {
		p, port, _ := newFixture(t, el.Addr().String(), public, Limits{MaxBytes: 100 << 10})
		c, err := net.Dial("tcp4", fmt.Sprintf("127.77.0.2:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		go func() { c.Write(make([]byte, 1<<20)); c.(*net.TCPConn).CloseWrite() }()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		n, _ := io.Copy(io.Discard, c)
		c.Close()
		e := lastEvent(t, p)
		if n > 100<<10 || e.BytesIn+e.BytesOut > 100<<10 || e.Reason != "cap reached: bytes" {
			t.Fatalf("echoed %d, event %+v", n, e)
		}
	})
	t.Run("idle", func(t *testing.T) {
		p, port, _ := newFixture(t, el.Addr().String(), public, Limits{IdleTimeout: 200 * time.Millisecond, SniffWait: 50 * time.Millisecond})
		c, err := net.Dial("tcp4", fmt.Sprintf("127.77.0.2:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		_, err = c.Read(make([]byte, 1)) // ends when the relay gives up
		c.Close()
		e := lastEvent(t, p)
		if err == nil || !e.Allowed || !strings.HasPrefix(e.Reason, "idle") || e.Protocol != "tcp" {
			t.Fatalf("read err %v, event %+v", err, e)
		}
	})
	t.Run("concurrent", func(t *testing.T) {
		p, port, _ := newFixture(t, el.Addr().String(), public, Limits{MaxConns: 1})
		first, err := net.Dial("tcp4", fmt.Sprintf("127.77.0.2:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		defer first.Close()
		io.WriteString(first, "ping\n")
		if l, err := bufio.NewReader(first).ReadString('\n'); err != nil || l != "ping\n" {
			t.Fatalf("first connection: %q %v", l, err)
		}
		second, err := net.Dial("tcp4", fmt.Sprintf("127.77.0.2:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		second.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(second, "ping\n")
		if n, _ := second.Read(make([]byte, 8)); n != 0 {
			t.Error("second connection echoed past the cap")
		}
		second.Close()
		first.Close()
		p.Close()
		ev, _ := p.Events()
		var refused bool
		for _, e := range ev {
			refused = refused || e.Reason == "cap reached: 1 concurrent connections"
		}
		if !refused {
			t.Fatalf("events %+v", ev)
		}
	})
}

// A tool that waits before its ClientHello gets the server's bytes (the
// relay connects after SniffWait, for protocols where the server speaks
// first) but its own first bytes are still checked before any goes up.
func TestRelayLateClientChecked(t *testing.T) {
	banner, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer banner.Close()
	got := make(chan string, 4)
	go func() {
		for {
			c, err := banner.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.WriteString(c, "220 hello\n")
				b, _ := io.ReadAll(c)
				got <- string(b)
			}()
		}
	}()
	lim := Limits{SniffWait: 50 * time.Millisecond}

	// Server first: the banner arrives before the tool said anything.
	p, port, _ := newFixture(t, banner.Addr().String(), public, lim)
	c, err := net.Dial("tcp4", fmt.Sprintf("127.77.0.2:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if l, err := bufio.NewReader(c).ReadString('\n'); err != nil || l != "220 hello\n" {
		t.Fatalf("banner %q %v", l, err)
	}
	io.WriteString(c, "EHLO tool\r\n")
	c.(*net.TCPConn).CloseWrite()
	if s := <-got; s != "EHLO tool\r\n" {
		t.Fatalf("upstream got %q", s)
	}
	c.Close()
	if e := lastEvent(t, p); !e.Allowed || e.Protocol != "tcp" || e.BytesIn != 10 {
		t.Fatalf("event %+v", e)
	}

	// A late ClientHello naming another host: refused, nothing sent up.
	p, port, _ = newFixture(t, banner.Addr().String(), public, lim)
	raw, err := net.Dial("tcp4", fmt.Sprintf("127.77.0.2:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	tc := tls.Client(raw, &tls.Config{ServerName: "evil.example.net", InsecureSkipVerify: true})
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err == nil {
		t.Fatal("late ClientHello with another SNI got through")
	}
	raw.Close()
	if s := <-got; s != "" {
		t.Fatalf("upstream got %q", s)
	}
	if e := lastEvent(t, p); e.Allowed || e.Reason != "sni mismatch: evil.example.net" {
		t.Fatalf("event %+v", e)
	}
}

// apiFixture serves an API grant for api.example.com on 127.77.0.2:port
// (the tool's side) in front of a TLS upstream that records what it got.
func apiFixture(t *testing.T, h http.HandlerFunc) (*Proxy, int, chan string) {
	t.Helper()
	seen := make(chan string, 16)
	up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Method + " " + r.Host + " " + r.RequestURI + " key=" + r.Header.Get("X-Key")
		h(w, r)
	}))
	t.Cleanup(up.Close)
	pool := x509.NewCertPool()
	pool.AddCert(up.Certificate())
	l, port := listenFirst(t)
	d := fakeDialer{routes: map[string]string{"203.0.113.7:443": up.Listener.Addr().String()}, dialed: make(chan string, 16)}
	p := New(Config{Grants: grants(t, fmt.Sprintf("api.example.com:%d", port)), Resolver: fakeResolver{"api.example.com": public},
		Dialer: d, TLS: &tls.Config{RootCAs: pool},
		APIs: []API{{Name: "api.example.com", Header: "X-Key", Value: "k-secret", Secret: "env:K"}}})
	// The API is served on the name's port 80 inside a sandbox; here the
	// listener's port stands in for it.
	p.cfg.APIs[0].port = uint16(port)
	go p.Serve(l)
	t.Cleanup(func() { l.Close(); p.Close() })
	return p, port, seen
}

func apiCall(t *testing.T, port int, req string) string {
	t.Helper()
	c, err := net.Dial("tcp4", fmt.Sprintf("127.77.0.2:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, req)
	b, _ := io.ReadAll(c)
	return string(b)
}

func TestAPI(t *testing.T) {
	t.Run("forwarded", func(t *testing.T) {
		p, port, seen := apiFixture(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
		out := apiCall(t, port, "GET /v1/x?q=1 HTTP/1.1\r\nHost: api.example.com\r\nX-Key: forged\r\nConnection: close\r\n\r\n")
		if !strings.HasSuffix(out, "ok") {
			t.Fatalf("response %q", out)
		}
		if s := <-seen; s != "GET api.example.com /v1/x?q=1 key=k-secret" {
			t.Fatalf("upstream saw %q", s)
		}
		if e := lastEvent(t, p); !e.Allowed || e.Kind != "http" || e.Status != 200 || e.Path != "/v1/x" || e.Secret != "env:K" {
			t.Fatalf("event %+v", e)
		}
	})
	for name, req := range map[string]string{
		"userinfo target":  "GET x:@evil.example/steal HTTP/1.1\r\nHost: api.example.com\r\n\r\n",
		"absolute target":  "GET https://evil.example/steal HTTP/1.1\r\nHost: api.example.com\r\n\r\n",
		"asterisk target":  "OPTIONS * HTTP/1.1\r\nHost: api.example.com\r\n\r\n",
		"other host":       "GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n",
		"trace":            "TRACE / HTTP/1.1\r\nHost: api.example.com\r\n\r\n",
		"lowercase trace":  "trace / HTTP/1.1\r\nHost: api.example.com\r\n\r\n",
		"host with port":   "GET / HTTP/1.1\r\nHost: api.example.com:80@evil.example\r\n\r\n",
		"upgrade":          "GET / HTTP/1.1\r\nHost: api.example.com\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
		"header too large": "GET / HTTP/1.1\r\nHost: api.example.com\r\nX-Big: " + strings.Repeat("a", 80<<10) + "\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			p, port, seen := apiFixture(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
			if out := apiCall(t, port, req); strings.HasSuffix(out, "ok") {
				t.Fatalf("forwarded: %q", out)
			}
			select {
			case s := <-seen:
				t.Fatalf("upstream saw %q", s)
			default:
			}
			p.Close()
			ev, _ := p.Events()
			if len(ev) == 0 || ev[len(ev)-1].Allowed || ev[len(ev)-1].Reason == "" {
				t.Fatalf("events %+v", ev)
			}
		})
	}
	t.Run("early answer", func(t *testing.T) {
		// The upstream answers before reading the body: the connection
		// ends instead of reading the next request from under the
		// transport.
		p, port, seen := apiFixture(t, func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusRequestEntityTooLarge)
		})
		c, err := net.Dial("tcp4", fmt.Sprintf("127.77.0.2:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "POST /up HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 1000000\r\n\r\n")
		go func() {
			c.Write(make([]byte, 100000))
		}()
		b, _ := bufio.NewReader(c).ReadString('\n')
		if !strings.Contains(b, "413") {
			t.Fatalf("status line %q", b)
		}
		<-seen
		p.Close()
	})
}

// A tool that stops reading while the upstream still sends is cut after
// the idle time, half-closed or not.
func TestRelayStalledReader(t *testing.T) {
	src, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	go func() {
		for {
			c, err := src.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.Read(make([]byte, 1))
				c.Write(make([]byte, 64<<20))
			}()
		}
	}()
	p, port, _ := newFixture(t, src.Addr().String(), public, Limits{IdleTimeout: 300 * time.Millisecond})
	c, err := net.Dial("tcp4", fmt.Sprintf("127.77.0.2:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte{'x'})
	c.(*net.TCPConn).CloseWrite()
	start := time.Now()
	var e Event
	for time.Since(start) < 10*time.Second {
		if ev, _ := p.Events(); len(ev) > 0 {
			e = ev[0]
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.HasPrefix(e.Reason, "idle for") {
		t.Fatalf("after %v: event %+v", time.Since(start), e)
	}
}

func TestRequestLineShape(t *testing.T) {
	for line, want := range map[string]int{
		"GET / HTTP/1.1\r\n": lineHTTP, "get /x HTTP/1.0\n": lineHTTP, "PROPFIND /d http/1.1\n": lineHTTP,
		"GET\t/\tHTTP/1.1\n": lineHTTP, "GET /a b HTTP/1.1\n": lineHTTP, "GET / HTTP/1.1 x\n": lineHTTP,
		"GET /\n": lineHTTP, "FOO /x\n": lineHTTP, "FOO http://evil/\n": lineHTTP, "GET\x0b/\x0bHTTP/1.1\n": lineHTTP,
		"GET\xa0/\xa0HTTP/1.1\n": lineHTTP, "OPTIONS * HTTP/1.1\n": lineHTTP, "GET x\n": lineHTTP,
		"SSH-2.0-OpenSSH_9.2 Debian\r\n": lineText, "EHLO tool\r\n": lineText, "SET k v\r\n": lineText,
		"*3\r\n": lineText, "\x00\x01": lineText, "ab/cd": lineText, "3\x01\x00\x00": lineText,
		"GET": lineUndecided, "GET / HTTP/1.1": lineUndecided, "EHLO": lineUndecided,
	} {
		if got := classifyLine([]byte(line)); got != want {
			t.Errorf("classifyLine(%q) = %d, want %d", line, got, want)
		}
	}
	for h, want := range map[string]bool{
		"api.example.com": true, "API.example.com.": true, "api.example.com:80": true,
		"api.example.com:80@evil.example": false, "api.example.com:evil.example": false,
		"api.example.com:80/evil": false, "api.example.com:": false, "evil.example": false,
		"api.example.com:22": false, "api.example.com:080": false, "api.example.\u212aom": false,
		"api.example.com:99999999999999999999": false,
	} {
		if got := hostIs(h, "api.example.com", 80); got != want {
			t.Errorf("hostIs(%q) = %v", h, got)
		}
	}
}

// A request line held back unfinished is refused, not passed on: the rest
// (a Host naming another server) would follow unchecked.
func TestRelayStalledRequestLine(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "reached") }))
	defer up.Close()
	p, port, d := newFixture(t, up.Listener.Addr().String(), public, Limits{SniffWait: 100 * time.Millisecond})
	c, err := net.Dial("tcp4", fmt.Sprintf("127.77.0.2:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET / HTTP/1.1")
	time.Sleep(time.Second) // ten sniff windows: the rest cannot arrive with the prefix
	io.WriteString(c, "\r\nHost: internal.example.net\r\n\r\n")
	if b, _ := io.ReadAll(c); strings.Contains(string(b), "reached") {
		t.Fatal("reached the upstream")
	}
	if e := lastEvent(t, p); e.Allowed || !strings.Contains(e.Reason, "stalled") {
		t.Fatalf("event %+v", e)
	}
	select {
	case a := <-d.dialed:
		t.Fatalf("dialed %s", a)
	default:
	}
}
