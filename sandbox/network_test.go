package sandbox_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/toolcell/toolcell/audit"
	"github.com/toolcell/toolcell/capability"
	"github.com/toolcell/toolcell/internal/testenv"
	"github.com/toolcell/toolcell/sandbox"
)

// upstreams stands in for the internet: names resolve to public-looking
// documentation addresses (so the relay's address checks stay on), and the
// dialer sends those addresses to local test servers.
type upstreams struct {
	mu      sync.Mutex
	names   map[string][]netip.Addr
	routes  map[string]string // "203.0.113.x:port" -> local server
	dialed  []string
	lookups []string
}

func newUpstreams() *upstreams {
	return &upstreams{names: map[string][]netip.Addr{}, routes: map[string]string{}}
}

// add makes name:port reach the local server at to, through addr.
func (u *upstreams) add(name, addr string, port int, to string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	a := netip.MustParseAddr(addr)
	u.names[name] = append(u.names[name], a)
	u.routes[netip.AddrPortFrom(a, uint16(port)).String()] = to
}

func (u *upstreams) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.lookups = append(u.lookups, host)
	if a, ok := u.names[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func (u *upstreams) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	u.mu.Lock()
	to, ok := u.routes[addr]
	u.dialed = append(u.dialed, addr)
	u.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("test upstreams: no route to %s", addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, to)
}

func (u *upstreams) runner() *sandbox.Runner {
	return &sandbox.Runner{Resolver: u, Dialer: u}
}

// testCA makes a CA and a server certificate for names, and writes the CA
// to dir/ca.pem for clients inside the sandbox.
func testCA(t *testing.T, dir string, names ...string) *tls.Config {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "toolcell test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	skey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &skey.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644); err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: skey}}}
}

func runWith(t *testing.T, r *sandbox.Runner, set *capability.Set, script string) *sandbox.Result {
	t.Helper()
	return runCmdWith(t, r, set, sandbox.Command("/bin/sh", "-c", script))
}

// conns returns the record's network entries of kind with name.
func conns(rec *audit.Record, kind, name string) []audit.NetEvent {
	var out []audit.NetEvent
	for _, c := range rec.Network {
		if c.Kind == kind && c.Name == name {
			out = append(out, c)
		}
	}
	return out
}

func TestEgressRealClients(t *testing.T) {
	wd := workdir(t)
	tlsCfg := testCA(t, wd, "api.example.com", "files.cdn.example.org")
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s %s", r.Host, r.URL.Path)
	})
	plain := httptest.NewServer(handler)
	defer plain.Close()
	secure := httptest.NewUnstartedServer(handler)
	secure.TLS = tlsCfg
	secure.StartTLS()
	defer secure.Close()

	u := newUpstreams()
	u.add("api.example.com", "203.0.113.10", 80, plain.Listener.Addr().String())
	u.add("api.example.com", "203.0.113.10", 443, secure.Listener.Addr().String())
	u.add("files.cdn.example.org", "203.0.113.11", 443, secure.Listener.Addr().String())
	set := base().WithWorkdir(wd).WithEgress("api.example.com:80", "api.example.com:443", "*.cdn.example.org:443").
		WithEnv("SSL_CERT_FILE", filepath.Join(wd, "ca.pem")).WithTimeout(60 * time.Second)

	cases := []struct{ name, script, want string }{
		{"curl_http", `curl -sS http://api.example.com/a`, "hello api.example.com /a"},
		{"curl_https", `curl -sS --cacert ca.pem https://api.example.com/b`, "hello api.example.com /b"},
		{"curl_wildcard", `curl -sS --cacert ca.pem https://files.cdn.example.org/c`, "hello files.cdn.example.org /c"},
		// One kept-alive connection for two requests (each checked), and
		// an upload of unknown length (chunked).
		{"curl_keepalive", `curl -sS http://api.example.com/g http://api.example.com/h`, "hello api.example.com /ghello api.example.com /h"},
		{"curl_chunked", `printf abc | curl -sS -T - http://api.example.com/i`, "hello api.example.com /i"},
		{"python_http", `python3 -c 'import urllib.request as u; print(u.urlopen("http://api.example.com/d").read().decode(), end="")'`, "hello api.example.com /d"},
		{"python_https", `python3 -c 'import urllib.request as u; print(u.urlopen("https://api.example.com/e").read().decode(), end="")'`, "hello api.example.com /e"},
		// No proxy variables anywhere: the program resolves and connects
		// as it would on an open network.
		{"raw_socket", `python3 -c '
import socket
s = socket.create_connection(("api.example.com", 80))
s.sendall(b"GET /f HTTP/1.0\r\nHost: api.example.com\r\n\r\n")
print(s.makefile("rb").read().split(b"\r\n\r\n", 1)[1].decode(), end="")'`, "hello api.example.com /f"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := runWith(t, u.runner(), set, c.script)
			if res.Exit.Code != 0 || string(res.Stdout) != c.want {
				t.Fatalf("exit %d stdout %q stderr %q, want %q", res.Exit.Code, res.Stdout, res.Stderr, c.want)
			}
			if len(res.Audit.Denials) != 0 {
				t.Fatalf("denials: %+v", res.Audit.Denials)
			}
			var ok bool
			for _, n := range res.Audit.Network {
				if n.Kind == "connect" && n.Allowed && n.BytesIn > 0 && n.BytesOut > 0 && n.IP != "" {
					ok = true
				}
				if n.Kind == "connect" && !n.Allowed {
					t.Errorf("refused connection: %+v", n)
				}
			}
			if !ok {
				t.Fatalf("no allowed connection with traffic in network[]: %+v", res.Audit.Network)
			}
			if cs := conns(res.Audit, "connect", "api.example.com"); c.name == "curl_keepalive" && (len(cs) != 1 || cs[0].Requests != 2) {
				t.Fatalf("want one kept-alive connection with two requests: %+v", res.Audit.Network)
			}
			if e := res.Audit.Enforcement.Egress; e == nil || e.DNS != "127.77.0.1:53" || e.Hosts["api.example.com"] == "" {
				t.Fatalf("enforcement.egress: %+v", e)
			}
		})
	}
}

// The host-side resolver's answer is checked: a granted name that
// resolves to the host's loopback, a private network or the cloud metadata
// address is not connected.
func TestEgressRebindingRefused(t *testing.T) {
	canary := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "canary reached") }))
	defer canary.Close()
	u := newUpstreams()
	u.add("api.example.com", "127.0.0.1", 80, canary.Listener.Addr().String())
	u.add("meta.example.com", "169.254.169.254", 80, canary.Listener.Addr().String())
	set := base().WithEgress("api.example.com:80", "meta.example.com:80")
	res := runWith(t, u.runner(), set, `curl -sS -m 10 http://api.example.com/; curl -sS -m 10 http://meta.example.com/; exit 0`)
	if strings.Contains(string(res.Stdout), "canary") {
		t.Fatalf("reached the canary: %q", res.Stdout)
	}
	for name, reason := range map[string]string{"api.example.com": "loopback address 127.0.0.1", "meta.example.com": "link-local address (cloud metadata lives here) 169.254.169.254"} {
		c := conns(res.Audit, "connect", name)
		if len(c) != 1 || c[0].Allowed || c[0].Reason != reason {
			t.Errorf("%s: %+v, want refused: %s", name, c, reason)
		}
	}
	if len(u.dialed) != 0 {
		t.Errorf("dialed %v", u.dialed)
	}

	// The policy may allow a range explicitly: then the same name connects.
	res = runWith(t, u.runner(), set.Clone().WithEgressAllow("169.254.169.254/32"), `curl -sS -m 10 http://meta.example.com/`)
	if string(res.Stdout) != "canary reached" {
		t.Fatalf("with the range allowed: stdout %q stderr %q", res.Stdout, res.Stderr)
	}
	if c := conns(res.Audit, "connect", "meta.example.com"); len(c) != 1 || !c[0].Allowed || c[0].IP != "169.254.169.254" {
		t.Errorf("with the range allowed: %+v", c)
	}
	if e := res.Audit.Enforcement.Egress; e == nil || len(e.Allow) != 1 {
		t.Errorf("enforcement.egress.allow: %+v", e)
	}
}

// An HTTP API grant: the tool calls http://api.example.com/ and the
// upstream (TLS, behind the relay) sees the secret header; the tool finds
// the secret nowhere it can look, and the record names it by reference.
func TestEgressHTTPAPI(t *testing.T) {
	const secret = "tc-secret-4f9b2c71e0"
	t.Setenv("TOOLCELL_TEST_API_KEY", secret)
	wd := workdir(t)
	tlsCfg := testCA(t, wd, "api.example.com")
	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(filepath.Join(wd, "ca.pem"))
	pool.AppendCertsFromPEM(caPEM)
	var mu sync.Mutex
	var seen []string
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, r.Method+" "+r.Host+r.URL.RequestURI()+" auth="+r.Header.Get("Authorization")+" body="+string(b))
		mu.Unlock()
		fmt.Fprintf(w, "ok %s %d", r.URL.Path, len(b))
	}))
	up.TLS = tlsCfg
	up.StartTLS()
	defer up.Close()
	u := newUpstreams()
	u.add("api.example.com", "203.0.113.20", 443, up.Listener.Addr().String())
	r := u.runner()
	r.UpstreamTLS = &tls.Config{RootCAs: pool}
	set := base().WithWorkdir(wd).WithHTTPAPI("api.example.com", "Authorization", "Bearer ", "env:TOOLCELL_TEST_API_KEY")
	res := runWith(t, r, set, `
curl -sS -H 'Authorization: forged' http://api.example.com/v1/models && echo &&
curl -sS -d 'hello=1' http://api.example.com/v1/post && echo &&
curl -sS -H 'Host: other.example.net' http://api.example.com/x; echo
# Dump what the sandbox can see for the test to search: the script itself
# must not hold the secret's text, or it would find itself.
env > env.dump
cat /proc/[0-9]*/environ /proc/[0-9]*/cmdline > proc.dump 2>/dev/null
tar cf view.tar /etc /tmp /dev/shm 2>/dev/null
python3 -c '
import urllib.request
urllib.request.urlopen("http://api.example.com/v1/again").read()
out = open("mem.dump", "wb")
for l in open("/proc/self/maps"):
    f = l.split()
    if "r" not in f[1] or f[-1] in ("[vvar]", "[vsyscall]"): continue
    a, b = (int(x, 16) for x in f[0].split("-"))
    try:
        with open("/proc/self/mem", "rb") as m:
            m.seek(a); out.write(m.read(b - a))
    except OSError: pass
out.close()'
echo dumped
`)
	out := string(res.Stdout)
	if !strings.Contains(out, "ok /v1/models 0") || !strings.Contains(out, "ok /v1/post 7") || !strings.Contains(out, "dumped") {
		t.Fatalf("stdout %q stderr %q", out, res.Stderr)
	}
	for _, f := range []string{"env.dump", "proc.dump", "view.tar", "mem.dump"} {
		b, err := os.ReadFile(filepath.Join(wd, f))
		if err != nil || len(b) == 0 {
			t.Fatalf("%s: %v (%d bytes)", f, err, len(b))
		}
		if strings.Contains(string(b), secret) {
			t.Errorf("the secret is in the sandbox's %s", f)
		}
		if f == "mem.dump" && !strings.Contains(string(b), "v1/again") {
			t.Errorf("mem.dump lacks the tool's own request: not a memory dump?")
		}
	}
	if !strings.Contains(out, "host mismatch: other.example.net") {
		t.Errorf("Host mismatch not refused: %q", out)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 3 { // the Host mismatch never left
		t.Fatalf("upstream saw %q", seen)
	}
	for _, s := range seen {
		if !strings.Contains(s, "api.example.com") || !strings.Contains(s, "auth=Bearer "+secret) || strings.Contains(s, "forged") {
			t.Errorf("upstream saw %q", s)
		}
	}
	b, _ := json.Marshal(res.Audit)
	if strings.Contains(string(b), secret) {
		t.Fatal("the record holds the secret")
	}
	var calls int
	for _, c := range res.Audit.Network {
		if c.Kind == "http" && c.Allowed {
			calls++
			if c.Secret != "env:TOOLCELL_TEST_API_KEY" || c.Status != 200 || c.IP != "203.0.113.20" || c.Method == "" {
				t.Errorf("http entry %+v", c)
			}
		}
	}
	if calls != 3 {
		t.Errorf("%d allowed http entries, want 3: %+v", calls, res.Audit.Network)
	}
	if e := res.Audit.Enforcement.Egress; e == nil || len(e.APIs) != 1 || e.APIs[0].Secret != "env:TOOLCELL_TEST_API_KEY" {
		t.Errorf("enforcement.egress %+v", e)
	}
}

func TestEgressHTTPAPIMissingSecret(t *testing.T) {
	testenv.RequireUserNS(t)
	set := base().WithHTTPAPI("api.example.com", "Authorization", "Bearer ", "env:TOOLCELL_TEST_NO_SUCH_KEY")
	_, err := sandbox.Run(context.Background(), set, sandbox.Command("/bin/true"))
	if !errors.Is(err, sandbox.ErrSetup) || !strings.Contains(err.Error(), "env:TOOLCELL_TEST_NO_SUCH_KEY") {
		t.Fatalf("err %v, want a setup error naming the secret reference", err)
	}
}

// git clone over HTTPS, through the relay, from a local git server
// (git http-backend behind a TLS server the test's CA signed).
func TestEgressGitClone(t *testing.T) {
	backend := "/usr/lib/git-core/git-http-backend"
	if _, err := os.Stat(backend); err != nil {
		t.Fatalf("git http-backend: %v (scripts/deps.sh installs git)", err)
	}
	repos := testenv.Tempdir(t)
	src := filepath.Join(repos, "tool.git")
	for _, args := range [][]string{
		{"init", "-q", "--bare", src},
		{"init", "-q", filepath.Join(repos, "work")},
	} {
		if out, err := exec.Command("git", args...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v %s", args, err, out)
		}
	}
	work := filepath.Join(repos, "work")
	for _, args := range [][]string{
		{"-C", work, "commit", "-q", "--allow-empty", "-m", "fetched through toolcell"},
		{"-C", work, "push", "-q", src, "HEAD:refs/heads/main"},
		{"-C", src, "symbolic-ref", "HEAD", "refs/heads/main"},
	} {
		cmd := exec.Command("git", args...)
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@e", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@e")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v %s", args, err, out)
		}
	}
	wd := workdir(t)
	srv := httptest.NewUnstartedServer(&cgi.Handler{Path: backend, Root: "/",
		Env: []string{"GIT_PROJECT_ROOT=" + repos, "GIT_HTTP_EXPORT_ALL=1"}})
	srv.TLS = testCA(t, wd, "git.example.com")
	srv.StartTLS()
	defer srv.Close()
	u := newUpstreams()
	u.add("git.example.com", "203.0.113.30", 443, srv.Listener.Addr().String())
	set := base().WithWorkdir(wd).WithEgress("git.example.com:443").WithTimeout(60 * time.Second)
	res := runWith(t, u.runner(), set, `GIT_SSL_CAINFO=$PWD/ca.pem git clone -q https://git.example.com/tool.git clone && git -C clone log --format=%s`)
	if res.Exit.Code != 0 || string(res.Stdout) != "fetched through toolcell\n" {
		t.Fatalf("exit %d stdout %q stderr %q", res.Exit.Code, res.Stdout, res.Stderr)
	}
	c := conns(res.Audit, "connect", "git.example.com")
	if len(c) == 0 || !c[0].Allowed || c[0].SNI != "git.example.com" || c[0].Protocol != "tls" || c[0].BytesIn == 0 {
		t.Fatalf("connect entries %+v", c)
	}
	if len(res.Audit.Denials) != 0 {
		t.Fatalf("denials %+v", res.Audit.Denials)
	}
}
