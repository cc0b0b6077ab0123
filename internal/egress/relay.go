package egress

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// relay checks what the tool sends first, connects upstream and copies
// both ways until both sides are done, a cap is reached or the proxy
// closes. ev gets the outcome.
func (p *Proxy) relay(c net.Conn, ev *Event) {
	head, err := p.sniff(c, ev)
	if err != nil {
		ev.Reason = err.Error()
		return
	}
	up, err := p.dial(ev.Name, uint16(ev.Port), ev)
	if err != nil {
		ev.Reason = err.Error()
		return
	}
	defer up.Close()
	ev.Allowed = true
	var last atomic.Int64 // unix nanoseconds of the last byte either way
	last.Store(time.Now().UnixNano())
	var once sync.Once
	var reason atomic.Value
	stop := func(why string) {
		once.Do(func() {
			if why != "" {
				reason.Store(why)
			}
			c.Close()
			up.Close()
		})
	}
	if len(head) > 0 {
		if !p.charge(int64(len(head))) {
			ev.Reason = "cap reached: bytes"
			stop("")
			return
		}
		if _, err := up.Write(head); err != nil {
			ev.Reason = "upstream write: " + err.Error()
			stop("")
			return
		}
		ev.BytesOut = int64(len(head))
	}
	var wg sync.WaitGroup
	var out, in int64
	wg.Add(2)
	go func() { defer wg.Done(); out = p.pipe(up, c, &last, stop) }()
	go func() { defer wg.Done(); in = p.pipe(c, up, &last, stop) }()
	wg.Wait()
	ev.BytesOut += out
	ev.BytesIn = in
	if r, ok := reason.Load().(string); ok {
		ev.Reason = r
	}
}

// chunk is how much one copy step may move before the byte budget and the
// idle clock are checked again.
const chunk = 256 << 10

// pipe copies src to dst (splice(2) when both are TCP sockets) in chunks
// charged against the run's byte budget, and returns the bytes moved.
// The connection ends when no byte moved either way for IdleTimeout.
func (p *Proxy) pipe(dst, src net.Conn, last *atomic.Int64, stop func(string)) int64 {
	var total int64
	for {
		n := int64(chunk)
		if left := p.bytes.Load(); left < n {
			n = left
		}
		if n <= 0 || !p.charge(n) {
			stop("cap reached: bytes")
			return total
		}
		_ = src.SetReadDeadline(time.Now().Add(p.lim.IdleTimeout))
		got, err := io.Copy(dst, &io.LimitedReader{R: src, N: n})
		p.bytes.Add(n - got) // refund what was not used
		total += got
		if got > 0 {
			last.Store(time.Now().UnixNano())
		}
		switch {
		case err == nil && got == n:
			continue
		case err == nil: // EOF: half-close, the other way may go on
			if cw, ok := dst.(interface{ CloseWrite() error }); ok {
				_ = cw.CloseWrite()
			} else {
				stop("")
			}
			return total
		case errors.Is(err, os.ErrDeadlineExceeded):
			if time.Since(time.Unix(0, last.Load())) < p.lim.IdleTimeout {
				continue // the other direction is busy
			}
			stop("idle for " + p.lim.IdleTimeout.String())
			return total
		default:
			stop("")
			return total
		}
	}
}

// charge takes n bytes from the run's budget.
func (p *Proxy) charge(n int64) bool {
	for {
		left := p.bytes.Load()
		if left < n {
			return false
		}
		if p.bytes.CompareAndSwap(left, left-n) {
			return true
		}
	}
}

// sniff reads the client's first bytes, if it sends any within SniffWait,
// and checks them against the name the tool connected to: a TLS
// ClientHello must carry that name as SNI, an HTTP/1 request as Host.
// Anything else (a client that waits for the server, like SMTP, or one that
// speaks first, like SSH) is relayed as plain TCP: the name and port were
// granted. It returns the bytes read, to be sent upstream first.
func (p *Proxy) sniff(c net.Conn, ev *Event) ([]byte, error) {
	ev.Protocol = "tcp"
	var seen bytes.Buffer
	buf := make([]byte, 512)
	more := func() error {
		n, err := c.Read(buf)
		seen.Write(buf[:n])
		if n > 0 {
			return nil
		}
		if err == nil {
			err = io.ErrNoProgress
		}
		return err
	}
	_ = c.SetReadDeadline(time.Now().Add(p.lim.SniffWait))
	if err := more(); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, nil // the server speaks first
		}
		return nil, errors.New("closed by the tool before sending anything")
	}
	// The rest of a ClientHello or request head may take longer to come.
	_ = c.SetReadDeadline(time.Now().Add(p.lim.DialTimeout))
	defer c.SetReadDeadline(time.Time{})
	method := ""
	for method == "" && seen.Len() < 8 && methodPrefix(seen.Bytes()) {
		if m, ok := methodOf(seen.Bytes()); ok {
			method = m
			break
		}
		if err := more(); err != nil {
			return nil, errors.New("closed or stalled inside the first bytes")
		}
	}
	if method == "" {
		method, _ = methodOf(seen.Bytes())
	}
	rest := func() io.Reader {
		head := append([]byte(nil), seen.Bytes()...)
		return io.MultiReader(bytes.NewReader(head), io.TeeReader(io.LimitReader(c, maxHead), &seen))
	}
	switch {
	case seen.Bytes()[0] == 0x16: // TLS handshake record
		ev.Protocol = "tls"
		sni, err := clientHelloSNI(rest())
		if err != nil {
			return nil, errors.New("malformed TLS ClientHello")
		}
		ev.SNI = sni
		if sni != "" && canonicalName(sni) != ev.Name {
			return nil, errors.New("sni mismatch: " + sni)
		}
	case method == "PRI":
		ev.Protocol = "http"
		return nil, errors.New("HTTP/2 without TLS is not relayed (its :authority cannot be checked)")
	case method != "":
		ev.Protocol = "http"
		req, err := http.ReadRequest(bufio.NewReader(rest()))
		if err != nil {
			return nil, errors.New("malformed HTTP request head")
		}
		host := req.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if canonicalName(host) != ev.Name {
			return nil, errors.New("host mismatch: " + host)
		}
		if req.Method == http.MethodConnect {
			return nil, errors.New("HTTP CONNECT tunnelling is not relayed")
		}
	}
	return seen.Bytes(), nil
}

var methods = []string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "PRI"}

// methodPrefix reports whether b could still become "METHOD ".
func methodPrefix(b []byte) bool {
	for _, m := range methods {
		w := m + " "
		if len(b) <= len(w) && w[:len(b)] == string(b) {
			return true
		}
	}
	return false
}

// methodOf returns the HTTP method b starts with ("GET "), if any.
func methodOf(b []byte) (string, bool) {
	for _, m := range methods {
		if bytes.HasPrefix(b, []byte(m+" ")) {
			return m, true
		}
	}
	return "", false
}

// maxHead bounds a ClientHello or request head.
const maxHead = 64 << 10

var errHelloRead = errors.New("client hello read")

// clientHelloSNI lets crypto/tls parse a ClientHello from r and returns
// its server name; nothing is ever written back.
func clientHelloSNI(r io.Reader) (string, error) {
	var sni string
	var got bool
	cfg := &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		sni, got = h.ServerName, true
		return nil, errHelloRead
	}}
	err := tls.Server(readOnly{r}, cfg).Handshake()
	if !got {
		if err == nil {
			err = errors.New("no ClientHello")
		}
		return "", err
	}
	return strings.TrimSuffix(sni, "."), nil
}

// readOnly is a net.Conn that only reads from r.
type readOnly struct{ r io.Reader }

func (c readOnly) Read(b []byte) (int, error)       { return c.r.Read(b) }
func (c readOnly) Write(b []byte) (int, error)      { return 0, errors.New("read only") }
func (c readOnly) Close() error                     { return nil }
func (c readOnly) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c readOnly) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c readOnly) SetDeadline(time.Time) error      { return nil }
func (c readOnly) SetReadDeadline(time.Time) error  { return nil }
func (c readOnly) SetWriteDeadline(time.Time) error { return nil }
