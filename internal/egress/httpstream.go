package egress

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
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
// A protocol upgrade (WebSocket) is relayed only as the connection's first
// request, without a body, and only when the upstream speaks after the tool
// (status carries the first line of its answer): once it answered 101 the
// rest goes through unparsed; any other answer and requests go on being
// checked.
//
// It returns the bytes sent upstream and, when it refused a request, why.
func (p *Proxy) forwardHTTP(dst, src net.Conn, head []byte, name string, status <-chan string, last *atomic.Int64, stop func(string)) (int64, string) {
	tr := &idleReader{c: src, p: p, last: last}
	in := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(head), tr), 32<<10)
	out := &budgetWriter{c: dst, p: p, last: last}
	// end stops the connection after a read or write error.
	end := func() {
		switch {
		case out.over:
			stop(errBytes.Error())
		case tr.idle || out.idle:
			stop("idle for " + p.lim.IdleTimeout.String())
		default:
			stop("")
		}
	}
	// A refused request never goes upstream; answers to the requests
	// before it still come back (the upstream sees the connection end
	// after them).
	refuse := func(i int, why string) (int64, string) {
		if tc, ok := src.(interface{ CloseRead() error }); ok {
			_ = tc.CloseRead()
		}
		closeWrite(dst, stop)
		return out.n, fmt.Sprintf("request %d refused: %s", i, why)
	}
	for i := 1; ; i++ {
		// A server may skip empty lines before a request line.
		var lead []byte
		for {
			b, err := in.Peek(2)
			if len(b) == 0 && errors.Is(err, io.EOF) {
				closeWrite(dst, stop) // the tool is done: pass the half-close on
				return out.n, ""
			}
			if len(b) == 0 {
				end()
				return out.n, ""
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
			if len(lead)+k > 4 {
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
			return out.n, ""
		}
		rh, why := checkHTTP(bytes.NewReader(h), func() []byte { return h }, name)
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
		if rh.upgrade && (i != 1 || status == nil || chunked || size != 0 || rh.expect) {
			return refuse(i, "protocol upgrade is relayed only as a connection's first request, without a body, to a server that did not speak first")
		}
		if _, err := out.Write(append(lead, h...)); err != nil {
			end()
			return out.n, ""
		}
		if chunked {
			why, err = copyChunked(out, in)
		} else if size > 0 {
			_, err = io.CopyN(out, in, size)
		}
		switch {
		case why != "":
			return refuse(i, why)
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			closeWrite(dst, stop) // the tool closed inside a body: the upstream sees it cut
			return out.n, ""
		case err != nil:
			end()
			return out.n, ""
		}
		if !rh.upgrade {
			continue
		}
		if !switched(<-status) {
			continue // not upgraded: the next bytes are requests again
		}
		// Upgraded: what the tool sent after the head, then the rest as it comes.
		if k := in.Buffered(); k > 0 {
			b, _ := in.Peek(k)
			if _, err := out.Write(b); err != nil {
				end()
				return out.n, ""
			}
		}
		return out.n + p.pipe(dst, src, last, stop), ""
	}
}

// switched reports whether an HTTP status line is 101 Switching Protocols.
func switched(line string) bool {
	f := strings.Fields(line)
	return len(f) >= 2 && (f[0] == "HTTP/1.1" || f[0] == "HTTP/1.0") && f[1] == "101"
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
		v := h.cl[0]
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || v == "" || len(v) > 18 || strings.Trim(v, "0123456789") != "" {
			return 0, false, "malformed Content-Length: " + v
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
		case !bytes.HasSuffix(l, []byte("\r\n")) || len(l) == 2 || len(l) > 2+15:
			return "malformed chunk size line", nil
		}
		hex := string(l[:len(l)-2])
		if strings.Trim(hex, "0123456789abcdefABCDEF") != "" {
			return "malformed chunk size line (extensions are not relayed)", nil
		}
		size, _ := strconv.ParseInt(hex, 16, 64)
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
// passes the upstream's first line on (status gets it, "" if there was
// none), then copies the rest like pipe.
func (p *Proxy) pipeStatus(dst, src net.Conn, status chan<- string, last *atomic.Int64, stop func(string)) int64 {
	r := &idleReader{c: src, p: p, last: last}
	w := &budgetWriter{c: dst, p: p, last: last}
	var line []byte
	buf := make([]byte, 4096)
	for !bytes.Contains(line, []byte("\n")) && len(line) < 4096 {
		k, err := r.Read(buf)
		if k > 0 {
			line = append(line, buf[:k]...)
			if _, werr := w.Write(buf[:k]); werr != nil {
				err = werr
			}
		}
		if err != nil {
			status <- ""
			switch {
			case errors.Is(err, io.EOF):
				closeWrite(dst, stop)
			case w.over:
				stop(errBytes.Error())
			case r.idle || w.idle:
				stop("idle for " + p.lim.IdleTimeout.String())
			default:
				stop("")
			}
			return w.n
		}
	}
	first, _, _ := bytes.Cut(line, []byte("\n"))
	status <- string(first)
	return w.n + p.pipe(dst, src, last, stop)
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
