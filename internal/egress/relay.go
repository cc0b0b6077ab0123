package egress

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// relay connects the tool's connection c upstream and copies both ways
// until both sides are done, a cap is reached or the proxy closes. No byte
// of the tool's goes upstream before its first bytes were checked (sniff);
// if the tool says nothing for SniffWait, the server may be the one to
// speak first (SMTP, MySQL), so the relay connects and lets the server's
// bytes through while it keeps waiting for the tool's. ev gets the outcome.
func (p *Proxy) relay(c net.Conn, ev *Event) {
	var last atomic.Int64 // unix nanoseconds of the last byte either way
	last.Store(time.Now().UnixNano())
	busy := func() bool { return time.Since(time.Unix(0, last.Load())) < p.lim.IdleTimeout }
	first := make(chan sniffed, 1)
	spoke := make(chan struct{}) // closed when the tool's first byte came
	go func() { first <- p.sniff(c, ev.Name, busy, spoke) }()
	var s sniffed
	early := false
	select {
	case s = <-first:
	case <-time.After(p.lim.SniffWait):
		select {
		case <-spoke: // the tool is talking: wait for the verdict
			s = <-first
		default:
			early = true
		}
	}
	if !early {
		ev.Protocol, ev.SNI = s.protocol, s.sni
		if s.err != nil {
			ev.Reason = s.err.Error()
			return
		}
	}
	up, err := p.dial(ev.Name, uint16(ev.Port), ev)
	if err != nil {
		ev.Reason = err.Error()
		if early {
			c.Close() // ends the sniffer
			<-first
		}
		return
	}
	defer up.Close()
	ev.Allowed = true
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
	var wg sync.WaitGroup
	var out, in int64
	wg.Add(1)
	go func() { defer wg.Done(); in = p.pipe(c, up, &last, stop) }()
	finish := func() {
		wg.Wait()
		ev.BytesOut += out
		ev.BytesIn = in
		if r, ok := reason.Load().(string); ok && ev.Reason == "" {
			ev.Reason = r
		}
	}
	if early {
		s = <-first
		ev.Protocol, ev.SNI = s.protocol, s.sni
		if s.err != nil {
			// A refusal of the tool's bytes, or the end of a connection
			// the other direction closed (its reason wins).
			if r, ok := reason.Load().(string); ok && !s.refused {
				ev.Reason = r
			} else {
				ev.Reason = s.err.Error()
			}
			ev.Allowed = !s.refused // refused: the tool's bytes never left
			stop("")
			finish()
			return
		}
	}
	if len(s.head) > 0 {
		if !p.charge(int64(len(s.head))) {
			ev.Reason = "cap reached: bytes"
			stop("")
			finish()
			return
		}
		if _, err := up.Write(s.head); err != nil {
			ev.Reason = "upstream write: " + err.Error()
			stop("")
			finish()
			return
		}
		ev.BytesOut = int64(len(s.head))
		last.Store(time.Now().UnixNano())
	}
	if s.eof {
		// The tool half-closed without a byte: pass that on.
		if cw, ok := up.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
	} else {
		wg.Add(1)
		go func() { defer wg.Done(); out = p.pipe(up, c, &last, stop) }()
	}
	finish()
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
		_ = dst.SetWriteDeadline(time.Now().Add(p.lim.IdleTimeout))
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

// sniffed is what the tool's first bytes were.
type sniffed struct {
	head          []byte // to be sent upstream first
	protocol, sni string
	eof           bool  // the tool half-closed before sending anything
	err           error // why the connection ends here
	refused       bool  // err is a refusal of what the tool sent
}

// sniff waits for the tool's first bytes (as long as the connection is
// busy: no byte either way for IdleTimeout ends it) and checks them
// against the name the tool connected to: a TLS ClientHello must carry that
// name as SNI, an HTTP/1 request as Host. Anything else (SSH, a database
// protocol) is relayed as plain TCP: the name and port were granted. A tool
// cannot skip the check by waiting: nothing it sends goes upstream before
// sniff returned.
func (p *Proxy) sniff(c net.Conn, name string, busy func() bool, spoke chan struct{}) sniffed {
	r := sniffed{protocol: "tcp"}
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
	for {
		_ = c.SetReadDeadline(time.Now().Add(p.lim.IdleTimeout))
		err := more()
		if err == nil {
			close(spoke)
			break
		}
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded) && busy():
			continue // the server is talking; the tool may answer later
		case errors.Is(err, os.ErrDeadlineExceeded):
			r.err = errors.New("idle for " + p.lim.IdleTimeout.String() + " before the tool sent anything")
		case errors.Is(err, io.EOF):
			r.eof = true
		default:
			r.err = errors.New("closed by the tool before sending anything")
		}
		return r
	}
	// The rest of a ClientHello or request head may take longer to come.
	_ = c.SetReadDeadline(time.Now().Add(p.lim.DialTimeout))
	defer c.SetReadDeadline(time.Time{})
	refuse := func(why string) sniffed {
		r.err, r.refused = errors.New(why), true
		return r
	}
	// Leading empty lines are skipped by HTTP servers: skip them too.
	for len(bytes.TrimLeft(seen.Bytes(), "\r\n")) == 0 {
		if err := more(); err != nil {
			return refuse("closed or stalled inside the first bytes")
		}
	}
	rest := func() io.Reader {
		head := append([]byte(nil), seen.Bytes()...)
		return io.MultiReader(bytes.NewReader(head), io.TeeReader(io.LimitReader(c, maxHead), &seen))
	}
	first := bytes.TrimLeft(seen.Bytes(), "\r\n")[0]
	switch {
	case first == 0x16: // TLS handshake record
		r.protocol = "tls"
		sni, err := clientHelloSNI(rest())
		if err != nil {
			return refuse("malformed TLS ClientHello")
		}
		r.sni = sni
		if sni != "" && canonicalName(sni) != name {
			return refuse("sni mismatch: " + sni)
		}
	case isTchar(first):
		// Text that starts like a request line: read the whole line. If
		// it is one ("METHOD target HTTP/x.y", any method, any case), the
		// request must name the granted host; other text protocols (SSH,
		// SMTP, Redis) go through as they are. A line that could still
		// become a request line and stalls for SniffWait is refused: no
		// HTTP client waits in the middle of one, and passing it on would
		// let the rest through unchecked.
		_ = c.SetReadDeadline(time.Now().Add(p.lim.SniffWait))
		for {
			line, complete, binary := firstLine(seen.Bytes())
			if binary || (complete && !httpRequestLine(line)) || !methodSoFar(line) {
				break
			}
			if complete {
				r.protocol = "http"
				if why := checkHTTP(rest(), seen.Bytes, name); why != "" {
					return refuse(why)
				}
				break
			}
			if seen.Len() >= maxHead {
				return refuse("first line longer than 64 KiB")
			}
			if err := more(); errors.Is(err, io.EOF) {
				r.eof = true // an unfinished line is no request: pass it on
				break
			} else if err != nil {
				return refuse("closed or stalled inside the first line")
			}
		}
	}
	r.head = seen.Bytes()
	return r
}

// isTchar reports whether b may be in an HTTP token (a method).
func isTchar(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0
}

// firstLine returns the first non-empty line of b, whether it is complete
// (a line feed was seen), and whether b holds a byte no text line has.
func firstLine(b []byte) (line []byte, complete, binary bool) {
	b = bytes.TrimLeft(b, "\r\n")
	i := bytes.IndexByte(b, '\n')
	if i >= 0 {
		b, complete = b[:i], true
	}
	for _, c := range b {
		if (c < 0x20 && c != '\r' && c != '\t') || c == 0x7f {
			return nil, false, true
		}
	}
	return bytes.TrimSuffix(b, []byte("\r")), complete, false
}

// methodSoFar reports whether line can still begin with a method: only
// token characters up to the first space (a line that breaks this is no
// request line, whatever follows).
func methodSoFar(line []byte) bool {
	for _, c := range line {
		if c == ' ' {
			return true
		}
		if !isTchar(c) {
			return false
		}
	}
	return true
}

// httpRequestLine reports whether line has the shape of an HTTP/1 request
// line: token, space, target, space, HTTP/ and a version.
func httpRequestLine(line []byte) bool {
	f := bytes.Fields(line)
	if len(f) != 3 || len(f[0]) == 0 {
		return false
	}
	for _, c := range f[0] {
		if !isTchar(c) {
			return false
		}
	}
	return len(f[2]) > 5 && strings.EqualFold(string(f[2][:5]), "HTTP/")
}

// checkHTTP parses the request head from r (head returns the bytes read
// so far) and says why it may not go to name, or "".
func checkHTTP(r io.Reader, head func() []byte, name string) string {
	req, err := http.ReadRequest(bufio.NewReader(r))
	if err != nil {
		return "malformed HTTP request head"
	}
	// net/http folds the Host header into req.Host (the target's host
	// wins for an absolute target): read the header lines again for it.
	tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(bytes.TrimLeft(head(), "\r\n"))))
	if _, err := tp.ReadLine(); err != nil {
		return "malformed HTTP request head"
	}
	hdr, err := tp.ReadMIMEHeader()
	if err != nil {
		return "malformed HTTP request head"
	}
	hosts := append([]string{req.Host}, hdr.Values("Host")...)
	switch {
	case req.Method == "PRI":
		return "HTTP/2 without TLS is not relayed (its :authority cannot be checked)"
	case req.Method == http.MethodConnect:
		return "HTTP CONNECT tunnelling is not relayed"
	}
	// The target's host (absolute form) and the Host header must both
	// name the granted host: servers route by either.
	for _, h := range hosts {
		if h == "" {
			continue
		}
		if hh, _, err := net.SplitHostPort(h); err == nil {
			h = hh
		}
		if canonicalName(h) != name {
			return "host mismatch: " + h
		}
	}
	return ""
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
