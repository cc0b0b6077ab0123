package egress

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
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
	go func() { first <- p.sniff(c, ev.Name, ev.Port, busy, spoke) }()
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
	var status chan string // an HTTP upstream's first line, for upgrades
	var phase *tlsPhase    // a TLS handshake's progress, seen from the server's side
	wg.Add(1)
	switch {
	case !early && s.protocol == "http":
		status = make(chan string, 1)
		go func() { defer wg.Done(); in = p.pipeStatus(c, up, status, &last, stop) }()
	case early || s.protocol == "tls":
		// Early, the tool may still turn out to speak TLS.
		phase = newTLSPhase()
		go func() { defer wg.Done(); in = p.pipeTLSServer(c, up, phase, &last, stop) }()
	default:
		go func() { defer wg.Done(); in = p.pipe(c, up, &last, stop) }()
	}
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
	if s.protocol == "http" {
		// Every request is checked, not only the first.
		var refusal string
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, ev.Requests, refusal = p.forwardHTTP(up, c, s.head, ev.Name, ev.Port, status, &last, stop)
		}()
		finish()
		if refusal != "" {
			ev.Allowed, ev.Reason = false, refusal
		}
		return
	}
	if len(s.head) > 0 {
		if !p.charge(int64(len(s.head))) {
			ev.Reason = "cap reached: bytes"
			stop("")
			finish()
			return
		}
		_ = up.SetWriteDeadline(time.Now().Add(p.lim.IdleTimeout))
		if _, err := up.Write(s.head); err != nil {
			ev.Reason = "upstream write: " + err.Error()
			stop("")
			finish()
			return
		}
		ev.BytesOut = int64(len(s.head))
		last.Store(time.Now().UnixNano())
	}
	var refusal string
	if s.eof {
		// The tool half-closed without a byte: pass that on.
		if cw, ok := up.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
	} else if s.protocol == "tls" {
		// Every ClientHello is checked, not only the first (the head
		// ends with the first).
		wg.Add(1)
		go func() { defer wg.Done(); out, refusal = p.forwardTLS(up, c, s.hello, phase, &last, stop) }()
	} else {
		wg.Add(1)
		go func() { defer wg.Done(); out = p.pipe(up, c, &last, stop) }()
	}
	finish()
	if refusal != "" {
		ev.Allowed, ev.Reason = false, refusal
	}
}

// chunk is how much one copy step may move before the byte budget and the
// idle clock are checked again. A step takes its bytes from the budget
// before it waits for them, so steps start at firstStep and double while
// data flows: a connection held open idle keeps little of the budget.
const (
	chunk     = 256 << 10
	firstStep = 16 << 10
)

// pipe copies src to dst (splice(2) when both are TCP sockets) in chunks
// charged against the run's byte budget, and returns the bytes moved.
// The connection ends when no byte moved either way for IdleTimeout.
func (p *Proxy) pipe(dst, src net.Conn, last *atomic.Int64, stop func(string)) int64 {
	var total int64
	step := int64(firstStep)
	for {
		n := p.take(step)
		if n == 0 {
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
			step = min(2*step, chunk)
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
				step = firstStep
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

// take takes up to n bytes from the run's budget and returns how many (0
// when none is left).
func (p *Proxy) take(n int64) int64 {
	for {
		left := p.bytes.Load()
		if left <= 0 {
			return 0
		}
		k := min(n, left)
		if p.bytes.CompareAndSwap(left, left-k) {
			return k
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
	hello         *helloFollower // TLS: where checking the tool's records goes on
	eof           bool           // the tool half-closed before sending anything
	err           error          // why the connection ends here
	refused       bool           // err is a refusal of what the tool sent
}

// sniff waits for the tool's first bytes (as long as the connection is
// busy: no byte either way for IdleTimeout ends it) and checks them
// against the name the tool connected to: a TLS ClientHello must carry that
// name as SNI, an HTTP/1 request as Host. Anything else (SSH, a database
// protocol) is relayed as plain TCP: the name and port were granted. A tool
// cannot skip the check by waiting: nothing it sends goes upstream before
// sniff returned.
func (p *Proxy) sniff(c net.Conn, name string, port int, busy func() bool, spoke chan struct{}) sniffed {
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
	// Skip what a lenient HTTP server skips before a request line.
	for leadingSpace(seen.Bytes()) == seen.Len() {
		if seen.Len() > maxLead {
			return refuse("more than 1 KiB of blank space before anything")
		}
		if err := more(); err != nil {
			return refuse("closed or stalled inside the first bytes")
		}
	}
	rest := func() io.Reader {
		head := append([]byte(nil), seen.Bytes()...)
		return io.MultiReader(bytes.NewReader(head), io.TeeReader(io.LimitReader(c, maxHead), &seen))
	}
	lead := leadingSpace(seen.Bytes())
	// A TLS record of another type than handshake (a server may skip a
	// warning alert before a ClientHello) is read as TLS too when its
	// version byte says TLS; other first bytes of 20-24 are left to
	// protocols that start with a length (MongoDB, ...).
	otherRecord := func(b byte) bool { return b >= recordChangeCipherSpec && b <= recordHeartbeat && b != recordHandshake }
	if lead == 0 && otherRecord(seen.Bytes()[0]) && seen.Len() < 2 {
		if err := more(); err != nil {
			return refuse("closed or stalled inside the first bytes")
		}
	}
	switch first := seen.Bytes()[lead]; {
	case lead == 0 && (first == recordHandshake || otherRecord(first) && seen.Bytes()[1] == 3):
		// Records up to the end of the first ClientHello, checked; the
		// relay goes on checking the later ones (forwardTLS).
		r.protocol = "tls"
		f := &helloFollower{seen: bytes.NewReader(append([]byte(nil), seen.Bytes()...)), name: name}
		f.r = io.MultiReader(f.seen, io.LimitReader(c, 5*maxHead))
		var head []byte
		for f.hellos == 0 || f.holding() {
			rel, why, err := f.next()
			r.sni = f.sni
			switch {
			case why != "":
				return refuse(why)
			case err != nil:
				return refuse("malformed TLS ClientHello (cut short)")
			}
			head = append(head, rel...)
		}
		r.hello, r.head = f, head
		return r
	case isTchar(first):
		// A word of token characters followed by whitespace may be a
		// request line as some server reads it (tabs, bare CR, several
		// spaces, HTTP/0.9): read the whole line. If anything in it
		// points to HTTP, the request must pass Go's strict parser and
		// name the granted host; other text (SSH, SMTP, Redis) goes
		// through as it is. A line that is still undecided after
		// SniffWait is refused: no HTTP client stops inside its request
		// line, and passing a prefix on would let the rest through
		// unchecked.
		_ = c.SetReadDeadline(time.Now().Add(p.lim.SniffWait))
	line:
		for {
			switch classifyLine(seen.Bytes()[lead:]) {
			case lineText:
				break line
			case lineHTTP:
				r.protocol = "http"
				_ = c.SetReadDeadline(time.Now().Add(p.lim.DialTimeout))
				// Empty lines before the request line are skipped as
				// for the connection's later requests (at most two).
				skip := emptyLead(seen.Bytes())
				h, why := checkHTTP(skipN(rest(), skip), seen.Bytes, name, port)
				if why == "" {
					_, _, why = bodyFraming(h)
				}
				if why != "" {
					return refuse(why)
				}
				break line
			}
			if seen.Len() >= maxHead {
				return refuse("first line longer than 64 KiB")
			}
			if err := more(); errors.Is(err, io.EOF) {
				// The tool half-closed inside its first line: read as a
				// finished line (some servers take EOF as its end), it
				// must be no request line to pass.
				if classifyLine(append(append([]byte(nil), seen.Bytes()[lead:]...), '\n')) != lineText {
					return refuse("request line ended by the tool closing its side")
				}
				r.eof = true
				break
			} else if err != nil {
				return refuse("closed or stalled inside the first line")
			}
		}
	}
	r.head = seen.Bytes()
	return r
}

// maxLead bounds the blank space accepted before the first line.
const maxLead = 1 << 10

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

const (
	lineUndecided = iota
	lineText
	lineHTTP
)

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

// knownMethods are HTTP and WebDAV methods: a first word among them makes
// the line HTTP whatever follows.
var knownMethods = map[string]bool{
	"GET": true, "HEAD": true, "POST": true, "PUT": true, "DELETE": true, "CONNECT": true, "OPTIONS": true,
	"TRACE": true, "TRACK": true, "PATCH": true, "PRI": true, "PROPFIND": true, "PROPPATCH": true, "MKCOL": true,
	"COPY": true, "MOVE": true, "LOCK": true, "UNLOCK": true, "SEARCH": true, "REPORT": true, "PURGE": true,
	"MKCALENDAR": true, "ACL": true, "BIND": true, "LINK": true, "UNLINK": true, "QUERY": true,
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

// maxHead bounds a ClientHello or request head.
const maxHead = 64 << 10

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
