package egress

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
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

const (
	lineUndecided = iota
	lineText
	lineHTTP
)

// knownMethods are HTTP and WebDAV methods: a first word among them makes
// the line HTTP whatever follows.
var knownMethods = map[string]bool{
	"GET": true, "HEAD": true, "POST": true, "PUT": true, "DELETE": true, "CONNECT": true, "OPTIONS": true,
	"TRACE": true, "TRACK": true, "PATCH": true, "PRI": true, "PROPFIND": true, "PROPPATCH": true, "MKCOL": true,
	"COPY": true, "MOVE": true, "LOCK": true, "UNLOCK": true, "SEARCH": true, "REPORT": true, "PURGE": true,
	"MKCALENDAR": true, "ACL": true, "BIND": true, "LINK": true, "UNLINK": true, "QUERY": true,
}

// maxHead bounds a ClientHello or request head.
const maxHead = 64 << 10
