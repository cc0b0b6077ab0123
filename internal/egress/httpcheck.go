// The check of a plain HTTP request head on a granted connection: the
// Host header and the request target must name the granted host.

package egress

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// isTchar reports whether b may be in an HTTP token (a method).
func isTchar(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0
}

// isLenientSpace reports whether some HTTP server may take b for the
// space between the words of a request line (RFC 9112 lets servers accept
// HTAB, VT, FF and bare CR; Python splits Latin-1 text on 0x1c-0x1f, 0x85
// and 0xa0 as well).
func isLenientSpace(b byte) bool {
	switch {
	case b == ' ', b == '\t', b == '\v', b == '\f', b == '\r', b >= 0x1c && b <= 0x1f, b == 0x85, b == 0xa0:
		return true
	}
	return false
}

// leadingSpace counts the bytes before the first word (line breaks and
// lenient spaces).
func leadingSpace(b []byte) int {
	i := 0
	for i < len(b) && (b[i] == '\n' || isLenientSpace(b[i])) {
		i++
	}
	return i
}

// classifyLine decides from the start of a connection (blank space
// skipped) whether it could be an HTTP request: a first word of token
// characters followed by a space, on a line that has "HTTP/" in it, a
// target that looks like one, or a known method as its first word.
func classifyLine(b []byte) int {
	i := 0
	for i < len(b) && isTchar(b[i]) {
		i++
	}
	switch {
	case i == len(b):
		return lineUndecided
	case !isLenientSpace(b[i]):
		return lineText // "SSH-2.0-...", "*3", binary: no method then space
	}
	end := bytes.IndexByte(b, '\n')
	if end < 0 {
		return lineUndecided
	}
	line := b[:end]
	var words [][]byte
	for w := 0; w < len(line); {
		for w < len(line) && isLenientSpace(line[w]) {
			w++
		}
		e := w
		for e < len(line) && !isLenientSpace(line[e]) {
			e++
		}
		if e > w {
			words = append(words, line[w:e])
		}
		w = e
	}
	if len(words) == 0 {
		return lineText
	}
	if bytes.Contains(bytes.ToLower(line), []byte("http/")) || knownMethods[strings.ToUpper(string(words[0]))] {
		return lineHTTP
	}
	if len(words) > 1 && (bytes.HasPrefix(words[1], []byte("/")) || bytes.Contains(words[1], []byte("://")) || string(words[1]) == "*") {
		return lineHTTP
	}
	return lineText
}

// requestHead is what checkHTTP read from a request head: the header
// lines that frame its body or change the protocol, verbatim (Go's parser
// folds Content-Length and Transfer-Encoding away).
type requestHead struct {
	req      *http.Request
	te, cl   []string // Transfer-Encoding and Content-Length values
	upgrade  []string // Upgrade values
	wsKey    []string // Sec-WebSocket-Key values
	expect   bool     // an Expect header
	consumed int      // bytes of the head Go's parser read
}

// checkHTTP parses the request head from r (head returns the bytes read
// so far) and says why it may not go to name, or "". Go's parser is
// strict about the request line; the header lines are checked here for
// what lenient servers would read differently: folded lines and names
// that are not tokens.
func checkHTTP(r io.Reader, head func() []byte, name string, port int) (requestHead, string) {
	var h requestHead
	cr := &readCount{r: r}
	br := bufio.NewReader(cr)
	req, err := http.ReadRequest(br)
	if err != nil {
		return h, "malformed HTTP request head"
	}
	h.req, h.consumed = req, cr.n-br.Buffered()
	switch {
	case req.ProtoMajor != 1 || req.ProtoMinor > 1:
		return h, "HTTP version " + req.Proto + " is not relayed (1.0 and 1.1 are)"
	case req.Method == "PRI":
		return h, "HTTP/2 without TLS is not relayed (its :authority cannot be checked)"
	case strings.EqualFold(req.Method, http.MethodConnect):
		return h, "HTTP CONNECT tunnelling is not relayed"
	case strings.EqualFold(req.Header.Get("Upgrade"), "h2c") || strings.Contains(strings.ToLower(req.Header.Get("Upgrade")), "h2c"):
		return h, "HTTP/2 upgrade without TLS is not relayed (its :authority cannot be checked)"
	}
	// Targets: "*", a path (one leading slash), or an absolute URL with a
	// host and no user part; anything else ("//evil/", "http:///evil/",
	// "x:@evil", "http://evil:80@host/") some application would resolve
	// against another host, and so would a backslash before the query
	// ("/\\evil/": URL parsers that follow WHATWG read it as a slash).
	t := req.RequestURI
	if path, _, _ := strings.Cut(t, "?"); strings.ContainsRune(path, '\\') {
		return h, "backslash in the request target: " + t
	}
	switch {
	case t == "*":
	case strings.HasPrefix(t, "/") && !strings.HasPrefix(t, "//"):
	case req.URL.Scheme != "" && req.URL.Host != "" && req.URL.Opaque == "" && req.URL.User == nil && pathAfterAuthority(t):
	default:
		return h, "request target is not a path or an absolute URL with a host: " + t
	}
	lines := strings.Split(strings.TrimLeft(string(head()), "\r\n"), "\n")
	hosts := []string{req.Host}
	for _, l := range lines[1:] {
		l = strings.TrimSuffix(l, "\r")
		if l == "" {
			break
		}
		if l[0] == ' ' || l[0] == '\t' {
			return h, "folded header line"
		}
		k, v, ok := strings.Cut(l, ":")
		if !ok || k == "" || strings.IndexFunc(k, func(r rune) bool { return r > 0x7f || !isTchar(byte(r)) }) >= 0 {
			return h, "malformed header line"
		}
		v = strings.Trim(v, " \t")
		switch lk := strings.ToLower(k); lk {
		case "host":
			hosts = append(hosts, v)
		case "transfer-encoding":
			h.te = append(h.te, v)
		case "content-length":
			h.cl = append(h.cl, v)
		case "upgrade":
			h.upgrade = append(h.upgrade, v)
		case "sec-websocket-key":
			h.wsKey = append(h.wsKey, v)
		case "expect":
			h.expect = true
		default:
			// CGI and some frameworks read "_" as "-": no second
			// spelling of a header that routes or frames a request.
			switch strings.ReplaceAll(lk, "_", "-") {
			case "host", "transfer-encoding", "content-length", "upgrade":
				return h, "header name " + k + " reads as another on some servers"
			}
		}
	}
	// The target's host (absolute form) and every Host header must name
	// the granted host: servers route by either. Without one of them a
	// server picks its default host, which may be anyone's.
	if len(hosts) == 1 && req.Host == "" {
		return h, "request without Host"
	}
	for _, hv := range hosts {
		if !hostIs(hv, name, port) {
			if hv == "" {
				return h, "empty Host"
			}
			return h, "host mismatch: " + hv
		}
	}
	return h, ""
}

// readCount counts the bytes read through it.
type readCount struct {
	r io.Reader
	n int
}

func (c *readCount) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += n
	return n, err
}

// pathAfterAuthority reports whether an absolute target's authority ends
// with a "/" or the target's end (not "?" or "#": a naive parser reading
// up to the first "/" would take "host?@evil/" for evil).
func pathAfterAuthority(t string) bool {
	_, rest, ok := strings.Cut(t, "://")
	if !ok {
		return false
	}
	i := strings.IndexAny(rest, "/?#")
	return i < 0 || rest[i] == '/'
}

// hostIs reports whether a Host value names name: the name (ASCII case
// ignored, one trailing dot) and no port or port (any numeric port when
// port is 0). A forward proxy would connect to a port named there.
func hostIs(h, name string, port int) bool {
	if i := strings.LastIndexByte(h, ':'); i >= 0 {
		ps := h[i+1:]
		n, err := strconv.Atoi(ps)
		if ps == "" || strings.Trim(ps, "0123456789") != "" || err != nil || len(ps) > 1 && ps[0] == '0' || port != 0 && n != port {
			return false
		}
		h = h[:i]
	}
	return canonicalName(h) == name
}

// emptyLead counts the bytes of at most two empty lines (CRLF or LF) at
// the start of b.
func emptyLead(b []byte) int {
	n := 0
	for lines := 0; lines < 2; lines++ {
		switch {
		case bytes.HasPrefix(b[n:], []byte("\n")):
			n++
		case bytes.HasPrefix(b[n:], []byte("\r\n")):
			n += 2
		default:
			return n
		}
	}
	return n
}

// skipN drops the first n bytes of r.
func skipN(r io.Reader, n int) io.Reader {
	_, _ = io.CopyN(io.Discard, r, int64(n))
	return r
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
