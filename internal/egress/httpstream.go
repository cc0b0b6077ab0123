package egress

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// forwardHTTP is the tool-to-upstream direction of a connection whose
// first bytes were an HTTP/1 request (head: what sniff read). Every request
// on the connection is checked as the first one was (checkHTTP) before its
// head goes upstream, and its body is framed strictly: one Content-Length,
// or Transfer-Encoding: chunked alone in canonical chunks without
// extensions or trailers. A later request, pipelined or hidden in a body
// that a lenient server would frame differently, so never reaches the
// upstream unchecked: a Host-routing server (a CDN, a virtual host) cannot
// be asked for another name on a granted connection. The bytes go upstream
// as the tool sent them.
//
// A protocol upgrade is relayed only for WebSocket, as the connection's
// first request, without a body, and only when the upstream speaks after
// the tool (status carries the head of its first answer): once that
// answer completed the handshake (switched) the rest goes through
// unparsed; after any other answer requests go on being checked.
//
// It returns the bytes sent upstream, how many request heads went, and,
// when it refused a request, why.
func (p *Proxy) forwardHTTP(dst, src net.Conn, head []byte, name string, port int, status <-chan string, last *atomic.Int64, stop func(string)) (int64, int, string) {
	tr := &idleReader{c: src, p: p, last: last}
	hr := bytes.NewReader(head)
	in := bufio.NewReaderSize(io.MultiReader(hr, tr), max(maxHead+4096, len(head)))
	out := &budgetWriter{c: dst, p: p, last: last}
	sent := 0 // request heads that went upstream
	// end stops the connection after a read or write error.
	end := func() { stop(p.endReason(tr, out)) }
	// A refused request never goes upstream; answers to the requests
	// before it still come back (the upstream sees the connection end
	// after them).
	refuse := func(i int, why string) (int64, int, string) {
		if tc, ok := src.(interface{ CloseRead() error }); ok {
			_ = tc.CloseRead()
		}
		closeWrite(dst, stop)
		return out.n, sent, fmt.Sprintf("request %d refused: %s", i, why)
	}
	for i := 1; ; i++ {
		// A server may skip empty lines before a request line.
		var lead []byte
		for empty := 0; ; empty++ {
			b, err := in.Peek(2)
			if len(b) == 0 && errors.Is(err, io.EOF) {
				closeWrite(dst, stop) // the tool is done: pass the half-close on
				return out.n, sent, ""
			}
			if len(b) == 0 {
				end()
				return out.n, sent, ""
			}
			var k int
			switch {
			case b[0] == '\n':
				k = 1
			case len(b) == 2 && b[0] == '\r' && b[1] == '\n':
				k = 2
			}
			if k == 0 {
				break
			}
			if empty == 2 {
				return refuse(i, "more than two empty lines before a request line")
			}
			lead = append(lead, b[:k]...)
			_, _ = in.Discard(k)
		}
		h, err := readHead(in)
		switch {
		case errors.Is(err, errHeadSize):
			return refuse(i, "request head over 64 KiB")
		case errors.Is(err, io.EOF):
			return refuse(i, "request head ended by the tool closing its side")
		case err != nil:
			end()
			return out.n, sent, ""
		}
		rh, why := checkHTTP(bytes.NewReader(h), func() []byte { return h }, name, port)
		if why != "" {
			return refuse(i, why)
		}
		if rh.consumed != len(h) {
			return refuse(i, "request head ends elsewhere for Go's parser")
		}
		size, chunked, why := bodyFraming(rh)
		if why != "" {
			return refuse(i, why)
		}
		upgrade := len(rh.upgrade) > 0
		if upgrade && (len(rh.upgrade) != 1 || !strings.EqualFold(rh.upgrade[0], "websocket") || len(rh.wsKey) != 1) {
			return refuse(i, "protocol upgrade other than WebSocket (one Upgrade: websocket, one Sec-WebSocket-Key)")
		}
		if upgrade && (i != 1 || status == nil || chunked || size != 0 || rh.expect) {
			return refuse(i, "protocol upgrade is relayed only as a connection's first request, without a body, to a server that did not speak first")
		}
		if _, err := out.Write(append(lead, h...)); err != nil {
			end()
			return out.n, sent, ""
		}
		sent++
		if chunked {
			why, err = copyChunked(out, in)
		} else if size > 0 {
			if why, err = bodyStart(in, size); why == "" && err == nil {
				_, err = io.CopyN(out, in, size)
			}
		}
		switch {
		case why != "":
			return refuse(i, why)
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			closeWrite(dst, stop) // the tool closed inside a body: the upstream sees it cut
			return out.n, sent, ""
		case err != nil:
			end()
			return out.n, sent, ""
		}
		if !upgrade {
			continue
		}
		if !switched(<-status, rh.wsKey[0]) {
			continue // not upgraded: the next bytes are requests again
		}
		// Upgraded: what the tool sent after the head (read ahead, then
		// still in the sniffed bytes), then the rest as it comes.
		b, _ := in.Peek(in.Buffered())
		if _, err := out.Write(append(append([]byte(nil), b...), head[len(head)-hr.Len():]...)); err != nil {
			end()
			return out.n, sent, ""
		}
		return out.n + p.pipe(dst, src, last, stop), sent, ""
	}
}

// firstWord is b up to the first lenient space or line end.
func firstWord(b []byte) []byte {
	for i, c := range b {
		if c == '\n' || isLenientSpace(c) {
			return b[:i]
		}
	}
	return b
}

// endsInVersion reports whether the first line of b ends in an HTTP
// version ("HTTP/1.1", any case).
func endsInVersion(b []byte) bool {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	end := len(line)
	for end > 0 && isLenientSpace(line[end-1]) {
		end--
	}
	start := end
	for start > 0 && !isLenientSpace(line[start-1]) {
		start--
	}
	return bytes.HasPrefix(bytes.ToLower(line[start:end]), []byte("http/"))
}

// upperWord reports whether b has an upper-case letter and no lower-case
// one, as every method has.
func upperWord(b []byte) bool {
	upper := false
	for _, c := range b {
		switch {
		case 'a' <= c && c <= 'z':
			return false
		case 'A' <= c && c <= 'Z':
			upper = true
		}
	}
	return upper
}

// switched reports whether the upstream's first response head completes
// the WebSocket handshake the tool started with key: 101, Upgrade:
// websocket and the Sec-WebSocket-Accept only a server that read the key
// computes (RFC 6455). A bare 101, which an application can be made to
// send without switching, is not enough.
func switched(head, key string) bool {
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(head)), nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols || !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") {
		return false
	}
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return resp.Header.Get("Sec-WebSocket-Accept") == base64.StdEncoding.EncodeToString(sum[:])
}

// bodyStart refuses a Content-Length body that begins like a request line:
// a server that answers without reading a body reads the next request
// from it, which the relay would never have checked. The first line is
// judged as sniff judges a connection's (after blank space; a body that
// ends inside it is judged as if the line ended there).
func bodyStart(in *bufio.Reader, size int64) (string, error) {
	n := int64(maxHead)
	if size < n {
		n = size
	}
	for {
		b, _ := in.Peek(in.Buffered())
		if int64(len(b)) > n {
			b = b[:n]
		}
		rest := b[leadingSpace(b):]
		verdict := classifyLine(rest)
		if verdict == lineUndecided && int64(len(b)) == size {
			verdict = classifyLine(append(append([]byte(nil), rest...), '\n'))
		}
		switch {
		case verdict == lineHTTP && (upperWord(firstWord(rest)) || endsInVersion(rest)):
			// Servers that skip reading a body take methods in upper
			// case or upper-case them (Werkzeug, Django) only on a line
			// with a version: "Get milk" or "- item" is text to them.
			return "request body begins like a request line", nil
		case verdict == lineHTTP:
			return "", nil
		case verdict == lineText || int64(len(b)) == n:
			return "", nil
		}
		if _, err := in.Peek(len(b) + 1); err != nil && in.Buffered() <= len(b) {
			return "", err
		}
	}
}

var errHeadSize = errors.New("request head too large")

// readHead reads a request head through its empty line (a line that is
// empty once its LF and one CR before it are taken off, as Go's parser
// reads it).
func readHead(in *bufio.Reader) ([]byte, error) {
	var h []byte
	start := 0 // where the line being read starts in h
	for {
		b, err := in.ReadSlice('\n')
		h = append(h, b...)
		switch {
		case len(h) > maxHead:
			return nil, errHeadSize
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err != nil:
			return nil, err
		}
		if start > 0 && isEmptyLine(h[start:]) {
			return h, nil
		}
		start = len(h)
	}
}

func isEmptyLine(b []byte) bool { return string(b) == "\n" || string(b) == "\r\n" }

// bodyFraming says how long the body of a checked request is, refusing
// what servers frame differently: Transfer-Encoding other than a single
// "chunked" (or next to a Content-Length, or in HTTP/1.0), several
// Content-Length headers, or one that is not plain digits.
func bodyFraming(h requestHead) (size int64, chunked bool, why string) {
	switch {
	case len(h.te) > 0:
		switch {
		case len(h.te) != 1 || !strings.EqualFold(h.te[0], "chunked"):
			return 0, false, "Transfer-Encoding other than chunked: " + strings.Join(h.te, ", ")
		case len(h.cl) > 0:
			return 0, false, "both Transfer-Encoding and Content-Length"
		case !h.req.ProtoAtLeast(1, 1):
			return 0, false, "Transfer-Encoding in an HTTP/1.0 request"
		}
		return 0, true, ""
	case len(h.cl) > 1:
		return 0, false, "more than one Content-Length"
	case len(h.cl) == 1:
		// Plain digits, no leading zero (strtol would read octal), under
		// 2 GiB (a 32-bit parser would wrap).
		v := h.cl[0]
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || v == "" || len(v) > 10 || strings.Trim(v, "0123456789") != "" || len(v) > 1 && v[0] == '0' || n >= 1<<31 {
			return 0, false, "Content-Length not plain digits under 2 GiB: " + v
		}
		return n, false, ""
	}
	return 0, false, ""
}

// copyChunked copies a chunked body from in to out, refusing anything
// but canonical chunks: hex sizes without extensions, CRLF line ends, no
// trailer fields. why is a refusal, err a read or write error.
func copyChunked(out io.Writer, in *bufio.Reader) (why string, err error) {
	line := func() ([]byte, error) {
		var l []byte
		for {
			b, err := in.ReadSlice('\n')
			l = append(l, b...)
			if len(l) > 64 {
				return nil, errHeadSize
			}
			if !errors.Is(err, bufio.ErrBufferFull) {
				return l, err
			}
		}
	}
	for {
		l, err := line()
		switch {
		case errors.Is(err, errHeadSize):
			return "chunk size line over 64 bytes", nil
		case err != nil:
			return "", err
		case !bytes.HasSuffix(l, []byte("\r\n")) || len(l) == 2 || len(l) > 2+8:
			return "malformed chunk size line", nil
		}
		// Hex digits only (no extensions), no leading zero, under 2 GiB.
		hex := string(l[:len(l)-2])
		size, perr := strconv.ParseInt(hex, 16, 64)
		if strings.Trim(hex, "0123456789abcdefABCDEF") != "" || perr != nil || len(hex) > 1 && hex[0] == '0' || size >= 1<<31 {
			return "malformed chunk size line (hex digits only, no extensions, under 2 GiB)", nil
		}
		if _, err := out.Write(l); err != nil {
			return "", err
		}
		if size == 0 {
			l, err := line()
			switch {
			case errors.Is(err, errHeadSize) || err == nil && string(l) != "\r\n":
				return "trailer fields after a chunked body are not relayed", nil
			case err != nil:
				return "", err
			}
			_, err = out.Write(l)
			return "", err
		}
		if _, err := io.CopyN(out, in, size); err != nil {
			return "", err
		}
		var crlf [2]byte
		if _, err := io.ReadFull(in, crlf[:]); err != nil {
			return "", err
		}
		if string(crlf[:]) != "\r\n" {
			return "chunk data not ended by CRLF", nil
		}
		if _, err := out.Write(crlf[:]); err != nil {
			return "", err
		}
	}
}

// pipeStatus is the upstream-to-tool direction of an HTTP connection: it
// passes the upstream's first response head on (status gets it, as far as
// it came within 64 KiB; "" if nothing came), then copies the rest like
// pipe.
func (p *Proxy) pipeStatus(dst, src net.Conn, status chan<- string, last *atomic.Int64, stop func(string)) int64 {
	r := &idleReader{c: src, p: p, last: last}
	w := &budgetWriter{c: dst, p: p, last: last}
	var line []byte
	buf := make([]byte, 4096)
	for headEnd(line) < 0 && len(line) < maxHead {
		k, err := r.Read(buf)
		if k > 0 {
			line = append(line, buf[:k]...)
			if _, werr := w.Write(buf[:k]); werr != nil {
				err = werr
			}
		}
		if err != nil {
			status <- ""
			if errors.Is(err, io.EOF) {
				closeWrite(dst, stop)
			} else {
				stop(p.endReason(r, w))
			}
			return w.n
		}
	}
	if e := headEnd(line); e >= 0 {
		line = line[:e]
	}
	status <- string(line)
	return w.n + p.pipe(dst, src, last, stop)
}

// headEnd returns where a message head ending in an empty line (CRLF or
// LF) ends in b, or -1.
func headEnd(b []byte) int {
	for i := 0; i < len(b); i++ {
		if b[i] != '\n' {
			continue
		}
		switch {
		case i+1 < len(b) && b[i+1] == '\n':
			return i + 2
		case i+2 < len(b) && b[i+1] == '\r' && b[i+2] == '\n':
			return i + 3
		}
	}
	return -1
}

// endReason says why a connection ends after a read from r or a write to
// w failed: the byte cap, idleness, or "" (closed, reset).
func (p *Proxy) endReason(r *idleReader, w *budgetWriter) string {
	switch {
	case w.over:
		return errBytes.Error()
	case r.idle || w.idle:
		return "idle for " + p.lim.IdleTimeout.String()
	}
	return ""
}

// closeWrite passes a half-close on (or ends the connection when dst
// cannot half-close).
func closeWrite(dst net.Conn, stop func(string)) {
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		return
	}
	stop("")
}

// idleReader reads from c; a read waits as long as bytes move either way
// (last), and fails with idle set after IdleTimeout without any.
type idleReader struct {
	c    net.Conn
	p    *Proxy
	last *atomic.Int64
	idle bool
}

func (r *idleReader) Read(b []byte) (int, error) {
	for {
		_ = r.c.SetReadDeadline(time.Now().Add(r.p.lim.IdleTimeout))
		n, err := r.c.Read(b)
		if n > 0 {
			r.last.Store(time.Now().UnixNano())
			return n, nil
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			if time.Since(time.Unix(0, r.last.Load())) < r.p.lim.IdleTimeout {
				continue
			}
			r.idle = true
		}
		return n, err
	}
}

// budgetWriter writes to c what the run's byte budget allows (over is set
// when it ran out), counting it in n.
type budgetWriter struct {
	c          net.Conn
	p          *Proxy
	last       *atomic.Int64
	n          int64
	over, idle bool
}

func (w *budgetWriter) Write(b []byte) (int, error) {
	if !w.p.charge(int64(len(b))) {
		w.over = true
		return 0, errBytes
	}
	done := 0
	for done < len(b) {
		_ = w.c.SetWriteDeadline(time.Now().Add(w.p.lim.IdleTimeout))
		n, err := w.c.Write(b[done:])
		done += n
		if n > 0 {
			w.last.Store(time.Now().UnixNano())
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && time.Since(time.Unix(0, w.last.Load())) < w.p.lim.IdleTimeout {
				continue
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				w.idle = true
			}
			w.p.bytes.Add(int64(len(b) - done))
			w.n += int64(done)
			return done, err
		}
	}
	w.n += int64(done)
	return done, nil
}
