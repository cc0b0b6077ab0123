package egress

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// firstFlight returns the records a crypto/tls client sends first (its
// ClientHello) for cfg.
func firstFlight(t *testing.T, cfg *tls.Config) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer b.Close()
	go func() { _ = tls.Client(a, cfg).Handshake(); a.Close() }()
	_ = b.SetReadDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(b, hdr); err != nil {
		t.Fatal(err)
	}
	rec := make([]byte, 5+int(binary.BigEndian.Uint16(hdr[3:])))
	copy(rec, hdr)
	if _, err := io.ReadFull(b, rec[5:]); err != nil {
		t.Fatal(err)
	}
	return rec
}

func hello(t *testing.T, sni string) []byte {
	return firstFlight(t, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
}

// withExtension adds an extension to the ClientHello in the one record
// rec, fixing the three lengths around it.
func withExtension(rec []byte, typ uint16, data []byte) []byte {
	ext := binary.BigEndian.AppendUint16(nil, typ)
	ext = binary.BigEndian.AppendUint16(ext, uint16(len(data)))
	ext = append(ext, data...)
	out := append(append([]byte(nil), rec...), ext...)
	body := out[5+4:]
	i := 2 + 32
	i += 1 + int(body[i])                                          // session id
	i += 2 + int(binary.BigEndian.Uint16(body[i:]))                // cipher suites
	i += 1 + int(body[i])                                          // compression methods
	extLen := binary.BigEndian.Uint16(body[i:]) + uint16(len(ext)) // extensions
	binary.BigEndian.PutUint16(body[i:], extLen)
	hs := len(out) - 5 - 4
	out[6], out[7], out[8] = byte(hs>>16), byte(hs>>8), byte(hs)
	binary.BigEndian.PutUint16(out[3:5], uint16(len(out)-5))
	return out
}

// fragment re-records the handshake bytes of the records in recs with at
// most size bytes a record.
func fragment(recs []byte, size int) []byte {
	var hs, out []byte
	for len(recs) >= 5 {
		n := int(binary.BigEndian.Uint16(recs[3:5]))
		hs = append(hs, recs[5:5+n]...)
		recs = recs[5+n:]
	}
	for len(hs) > 0 {
		k := min(size, len(hs))
		out = append(out, recordHandshake, 3, 3, byte(k>>8), byte(k))
		out = append(out, hs[:k]...)
		hs = hs[k:]
	}
	return out
}

// retryRequest is a HelloRetryRequest (asking for P-256) and the
// compatibility ChangeCipherSpec after it, as a TLS 1.3 server sends them.
func retryRequest(sessionID []byte) []byte {
	var m []byte
	m = append(m, 3, 3)
	m = append(m, helloRetryRandom...)
	m = append(m, byte(len(sessionID)))
	m = append(m, sessionID...)
	m = append(m, 0x13, 0x01, 0)
	exts := []byte{0x00, 0x2b, 0x00, 0x02, 0x03, 0x04, 0x00, 0x33, 0x00, 0x02, 0x00, 0x17}
	m = binary.BigEndian.AppendUint16(m, uint16(len(exts)))
	m = append(m, exts...)
	msg := append([]byte{handshakeServerHello, 0, byte(len(m) >> 8), byte(len(m))}, m...)
	rec := append([]byte{recordHandshake, 3, 3, byte(len(msg) >> 8), byte(len(msg))}, msg...)
	return append(rec, recordChangeCipherSpec, 3, 3, 0, 1, 1)
}

func sessionID(rec []byte) []byte {
	if len(rec) < 5+4+2+32+1 || len(rec) < 5+4+2+32+1+int(rec[5+4+2+32]) {
		return nil // not one record with a whole ClientHello
	}
	body := rec[5+4:]
	return body[2+32+1 : 2+32+1+int(body[2+32])]
}

// upstream serves every connection with serve (a 10 s deadline set) and
// reports what serve returns.
func upstream(t *testing.T, serve func(net.Conn) []byte) (string, chan []byte) {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	got := make(chan []byte, 4)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				got <- serve(c)
			}()
		}
	}()
	return l.Addr().String(), got
}

// readAll reads what the tool sent until it closed its side.
func readAll(c net.Conn) []byte {
	b, _ := io.ReadAll(c)
	return b
}

// retryUpstream answers every connection's first record with a
// HelloRetryRequest and reports all it received after it.
func retryUpstream(t *testing.T) (string, chan []byte) {
	return upstream(t, func(c net.Conn) []byte {
		hdr := make([]byte, 5)
		if _, err := io.ReadFull(c, hdr); err != nil {
			return nil
		}
		rec := make([]byte, 5+int(binary.BigEndian.Uint16(hdr[3:])))
		copy(rec, hdr)
		if _, err := io.ReadFull(c, rec[5:]); err != nil {
			return nil
		}
		_, _ = c.Write(retryRequest(sessionID(rec)))
		return readAll(c)
	})
}

// A second ClientHello after a HelloRetryRequest is checked like the
// first: one that names another host (or none) never reaches the server,
// however it is cut into records and writes.
func TestRelaySecondClientHello(t *testing.T) {
	good, evil, none := hello(t, "api.example.com"), hello(t, "evil.example.net"), hello(t, "")
	ccs := []byte{recordChangeCipherSpec, 3, 3, 0, 1, 1}
	alert := []byte{recordAlert, 3, 3, 0, 2, 1, 0}
	for _, c := range []struct {
		name   string
		second []byte // what the tool sends after the retry request
		writes int    // in this many writes (0: one)
		reason string // "" if allowed
		passed []byte // what the upstream gets after the first hello
	}{
		{"same name", good, 0, "", good},
		{"same name, compatibility CCS first", append(ccs, good...), 0, "", append(ccs, good...)},
		{"other name", evil, 0, "sni mismatch: evil.example.net (ClientHello 2", nil},
		{"no name", none, 0, "sni mismatch: (none) (ClientHello 2", nil},
		{"other name after a CCS", append(ccs, evil...), 0, "sni mismatch: evil.example.net", ccs},
		// A hello split over records is refused whatever it names: SNI
		// routers that parse raw bytes read it differently.
		{"other name in 7-byte records", fragment(evil, 7), 0, "TLS ClientHello not in exactly one record", nil},
		{"other name in 1-byte records", fragment(evil, 1), 0, "TLS ClientHello not in exactly one record", nil},
		{"same name in 2 records", fragment(good, len(good)/2), 0, "TLS ClientHello not in exactly one record", nil},
		{"other name in 40 writes", evil, 40, "sni mismatch: evil.example.net", nil},
		{"fragmented, split across writes", fragment(evil, 100), 13, "TLS ClientHello not in exactly one record", nil},
		{"cut short by a half-close", good[:len(good)-3], 0, "TLS handshake record cut short", nil},
		{"cut short between records", fragment(good, 100)[:210], 0, "TLS ClientHello cut short", nil},
		{"an alert inside a fragmented hello", func() []byte {
			f := fragment(evil, 100)
			return append(append(append([]byte(nil), f[:105]...), alert...), f[105:]...)
		}(), 0, "TLS record inside an unfinished handshake message", nil},
		{"a third hello", append(append([]byte(nil), good...), good...), 0, "more than two TLS ClientHellos", good},
		{"encrypted client hello", withExtension(good, extensionECH, []byte{0, 0, 1, 0, 1, 7, 0, 0, 0, 0}), 0, "ech refused", nil},
		{"encrypted client hello, draft code point", withExtension(good, 0xfe0a, []byte{0, 0, 1, 0, 1, 7, 0, 0, 0, 0}), 0, "ech refused", nil},
		{"not TLS", []byte("GET / HTTP/1.1\r\nHost: evil.example.net\r\n\r\n"), 0, "not a TLS record", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			addr, got := retryUpstream(t)
			p, port, _ := newFixture(t, addr, public, Limits{})
			conn, err := net.Dial("tcp4", fmt.Sprintf("127.77.0.2:%d", port))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := conn.Write(good); err != nil {
				t.Fatal(err)
			}
			hrr := retryRequest(sessionID(good))
			b := make([]byte, len(hrr))
			if _, err := io.ReadFull(conn, b); err != nil || !bytes.Equal(b, hrr) {
				t.Fatalf("retry request: %x %v", b, err)
			}
			parts := max(c.writes, 1)
			for i := 0; i < parts; i++ {
				lo, hi := i*len(c.second)/parts, (i+1)*len(c.second)/parts
				if _, err := conn.Write(c.second[lo:hi]); err != nil {
					break // refused: the relay closed
				}
				if c.writes > 0 {
					time.Sleep(2 * time.Millisecond)
				}
			}
			conn.(*net.TCPConn).CloseWrite()
			var rest []byte
			select {
			case rest = <-got:
			case <-time.After(10 * time.Second):
				t.Fatal("upstream never finished")
			}
			if !bytes.Equal(rest, c.passed) {
				t.Errorf("upstream got %d bytes after the first hello, want %d: %q", len(rest), len(c.passed), rest)
			}
			e := lastEvent(t, p)
			if c.reason == "" {
				if !e.Allowed || e.Reason != "" || e.SNI != "api.example.com" {
					t.Errorf("event %+v, want allowed", e)
				}
				return
			}
			if e.Allowed || !strings.HasPrefix(e.Reason, c.reason) {
				t.Errorf("event %+v, want refused with %q", e, c.reason)
			}
		})
	}
}

// A first ClientHello that hides its name (ECH, encrypted SNI) or comes
// in tiny records is judged like any other.
func TestRelayFirstClientHello(t *testing.T) {
	good, evil := hello(t, "api.example.com"), hello(t, "evil.example.net")
	for _, c := range []struct {
		name, first, reason string
	}{
		{"ech", string(withExtension(good, extensionECH, []byte{0, 0, 1, 0, 1, 7, 0, 0, 0, 0})), "ech refused"},
		{"esni", string(withExtension(good, extensionESNI, []byte{0x13, 0x01})), "ech refused"},
		{"other name in 3-byte records", string(fragment(evil, 3)), "TLS ClientHello not in exactly one record"},
		{"same name in 3-byte records", string(fragment(good, 3)), "TLS ClientHello not in exactly one record"},
		{"hello and more in its record", string(fragment(append(append([]byte(nil), good...), 22, 3, 3, 0, 4, 20, 0, 0, 0), 1<<14)), "TLS ClientHello not in exactly one record"},
		{"ech draft esni code point", string(withExtension(good, 0xff02, []byte{1, 2})), "ech refused"},
		{"alert with a TLS version first", "\x15\x03\x01\x00\x02\x01\x00" + string(good), "malformed TLS ClientHello"},
		{"another message first", string(fragment([]byte{22, 3, 3, 0, 4, 2, 0, 0, 0}, 4)) + string(good), "malformed TLS ClientHello"},
		{"garbage record", "\x16\x03\x03\x00\x04\x01\x00\x00\x07", "malformed TLS ClientHello"},
	} {
		t.Run(c.name, func(t *testing.T) {
			addr, got := retryUpstream(t)
			p, port, d := newFixture(t, addr, public, Limits{})
			conn, err := net.Dial("tcp4", fmt.Sprintf("127.77.0.2:%d", port))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(conn, c.first)
			conn.(*net.TCPConn).CloseWrite()
			_, _ = io.ReadAll(conn)
			e := lastEvent(t, p)
			if e.Allowed || !strings.HasPrefix(e.Reason, c.reason) {
				t.Errorf("event %+v, want refused with %q", e, c.reason)
			}
			select {
			case a := <-d.dialed:
				select {
				case r := <-got:
					t.Errorf("dialed %s and the upstream got %q", a, r)
				case <-time.After(200 * time.Millisecond):
				}
			default:
			}
		})
	}
}

// A real TLS 1.3 client and server that need a HelloRetryRequest (the
// client shares an X25519 key, the server takes only P-256) still talk.
func TestRelayHelloRetryAllowed(t *testing.T) {
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "secure") }))
	up.TLS = &tls.Config{CurvePreferences: []tls.CurveID{tls.CurveP256}, MinVersion: tls.VersionTLS13}
	up.StartTLS()
	defer up.Close()
	p, port, _ := newFixture(t, up.Listener.Addr().String(), public, Limits{})
	conn, err := tls.Dial("tcp4", fmt.Sprintf("127.77.0.2:%d", port), &tls.Config{
		ServerName: "api.example.com", InsecureSkipVerify: true,
		CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !conn.ConnectionState().HelloRetryRequest {
		t.Fatal("no HelloRetryRequest: the test does not test it")
	}
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n")
	b, _ := io.ReadAll(conn)
	conn.Close()
	if !strings.Contains(string(b), "secure") {
		t.Fatalf("response %q", b)
	}
	if e := lastEvent(t, p); !e.Allowed || e.Reason != "" || e.SNI != "api.example.com" || e.Protocol != "tls" {
		t.Fatalf("event %+v", e)
	}
}

// The attack against a server built on OpenSSL (Python's ssl): the first
// ClientHello names the granted host with no key share the server takes,
// the second, after the HelloRetryRequest, names another. The server must
// never see the second name.
func TestRelayHelloRetryOpenSSL(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Fatal("python3 (the OpenSSL server) is needed:", err)
	}
	dir := t.TempDir()
	writeCert(t, dir)
	srv := exec.Command(py, "-c", `
import socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
ctx.load_cert_chain(sys.argv[1] + "/cert.pem", sys.argv[1] + "/key.pem")
ctx.set_ecdh_curve("prime256v1")   # P-256 only: an X25519 key share gets a retry request
def named(s, name, c):
    print("SNI", name, flush=True)
ctx.sni_callback = named
l = socket.create_server(("127.0.0.1", 0))
print("PORT", l.getsockname()[1], flush=True)
while True:
    c, _ = l.accept()
    c.settimeout(5)
    try:
        t = ctx.wrap_socket(c, server_side=True)
        t.recv(100)
    except Exception as e:
        print("ERR", e, flush=True)
    c.close()
`, dir)
	out, err := srv.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	srv.Stderr = os.Stderr
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	lines := make(chan string, 16)
	go func() {
		b := make([]byte, 4096)
		var acc string
		for {
			n, err := out.Read(b)
			acc += string(b[:n])
			for strings.Contains(acc, "\n") {
				i := strings.Index(acc, "\n")
				lines <- acc[:i]
				acc = acc[i+1:]
			}
			if err != nil {
				close(lines)
				return
			}
		}
	}()
	first := <-lines
	if !strings.HasPrefix(first, "PORT ") {
		t.Fatalf("server said %q", first)
	}
	p, port, _ := newFixture(t, "127.0.0.1:"+strings.TrimPrefix(first, "PORT "), public, Limits{})
	conn, err := net.Dial("tcp4", fmt.Sprintf("127.77.0.2:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	ch1 := firstFlight(t, &tls.Config{ServerName: "api.example.com", InsecureSkipVerify: true,
		CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256}})
	ch2 := firstFlight(t, &tls.Config{ServerName: "internal.example.net", InsecureSkipVerify: true,
		CurvePreferences: []tls.CurveID{tls.CurveP256}})
	conn.Write(ch1)
	hdr := make([]byte, 5+4+2+32)
	if _, err := io.ReadFull(conn, hdr); err != nil || !bytes.Equal(hdr[11:43], helloRetryRandom) {
		t.Fatalf("no HelloRetryRequest from the server: %x %v", hdr, err)
	}
	conn.Write(ch2)
	conn.(*net.TCPConn).CloseWrite()
	_, _ = io.ReadAll(conn)
	var seen []string
	timeout := time.After(5 * time.Second)
wait:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				break wait
			}
			seen = append(seen, l)
			if strings.HasPrefix(l, "ERR") {
				break wait
			}
		case <-timeout:
			break wait
		}
	}
	for _, l := range seen {
		if l == "SNI internal.example.net" {
			t.Errorf("the server served the second hello's name: %q", seen)
		}
	}
	if len(seen) == 0 || seen[0] != "SNI api.example.com" {
		t.Errorf("server log %q, want the first hello's name first", seen)
	}
	if e := lastEvent(t, p); e.Allowed || !strings.HasPrefix(e.Reason, "sni mismatch: internal.example.net") {
		t.Errorf("event %+v", e)
	}
}

// writeCert writes a self-signed cert.pem and key.pem into dir.
func writeCert(t *testing.T, dir string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "api.example.com"},
		DNSNames: []string{"api.example.com"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// A first byte of 20-24 that is not followed by a TLS version is no TLS
// record: protocols that start with a little-endian length (a 279-byte
// MongoDB message starts 17 01) go through as plain TCP. A handshake
// record type (22) is always read as TLS.
func TestRelayFirstByteNotTLS(t *testing.T) {
	addr, got := upstream(t, readAll)
	for _, c := range []struct {
		first    string
		protocol string
		allowed  bool
	}{
		{"\x17\x01\x00\x00\xdd\x07\x00\x00", "tcp", true},
		{"\x15\x01\x00\x00\xdd\x07\x00\x00", "tcp", true},
		{"\x14\x00\x00\x00\x01\x00\x00\x00", "tcp", true},
		{"\x17\x03\x03\x00\x02hi", "tls", false},
		{"\x16\x01\x00\x00\xdd\x07\x00\x00", "tls", false},
	} {
		p, port, _ := newFixture(t, addr, public, Limits{})
		conn, err := net.Dial("tcp4", fmt.Sprintf("127.77.0.2:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(conn, c.first)
		conn.(*net.TCPConn).CloseWrite()
		_, _ = io.ReadAll(conn)
		conn.Close()
		e := lastEvent(t, p)
		if e.Protocol != c.protocol || e.Allowed != c.allowed {
			t.Errorf("first bytes %x: event %+v, want %s allowed=%v", c.first, e, c.protocol, c.allowed)
		}
		if c.allowed {
			if b := <-got; string(b) != c.first {
				t.Errorf("first bytes %x: upstream got %x", c.first, b)
			}
		}
	}
}

// A second ClientHello the server did not ask for (no HelloRetryRequest
// came back before it) is refused: the first one stands.
func TestRelaySecondHelloUnasked(t *testing.T) {
	addr, got := upstream(t, readAll) // never answers
	good := hello(t, "api.example.com")
	p, port, _ := newFixture(t, addr, public, Limits{})
	conn, err := net.Dial("tcp4", fmt.Sprintf("127.77.0.2:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	conn.Write(append(append([]byte(nil), good...), good...))
	conn.(*net.TCPConn).CloseWrite()
	_, _ = io.ReadAll(conn)
	if b := <-got; !bytes.Equal(b, good) {
		t.Errorf("upstream got %d bytes, want the first hello (%d)", len(b), len(good))
	}
	if e := lastEvent(t, p); e.Allowed || e.Reason != "a second TLS ClientHello without a HelloRetryRequest" {
		t.Errorf("event %+v", e)
	}
}
