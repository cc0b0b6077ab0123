package egress

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// API is an HTTP API the supervisor calls for the tool: the tool speaks
// plain HTTP to Name on port 80 inside the sandbox; each request goes to
// https://Name/ with Header set to Value. Value holds the secret: it stays
// in the supervisor, is never logged and never sent to the sandbox.
type API struct {
	Name   string
	Header string
	Value  string
	Secret string // the reference, for the record

	port uint16 // the port inside the sandbox: 80 (tests use others)
}

func (a *API) servedOn() uint16 {
	if a.port != 0 {
		return a.port
	}
	return 80
}

func (p *Proxy) api(name string) *API {
	for i := range p.cfg.APIs {
		if p.cfg.APIs[i].Name == name {
			return &p.cfg.APIs[i]
		}
	}
	return nil
}

// hopHeaders are the hop-by-hop headers a proxy does not forward.
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func dropHop(h http.Header) {
	for _, f := range h.Values("Connection") {
		for _, k := range strings.Split(f, ",") {
			h.Del(strings.TrimSpace(k))
		}
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
}

// countingReader counts and charges what passes through it against the
// run's byte budget.
type countingReader struct {
	r    io.Reader
	n    atomic.Int64 // the transport may still read after forward returned
	p    *Proxy
	over atomic.Bool
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	if n > 0 {
		if !c.p.charge(int64(n)) {
			c.over.Store(true)
			return 0, errBytes
		}
		c.n.Add(int64(n))
	}
	return n, err
}

var errBytes = fmt.Errorf("cap reached: bytes")

// idleConn refreshes the idle deadline before every read and write, so a
// tool that stops reading or writing halfway is cut after IdleTimeout.
type idleConn struct {
	net.Conn
	idle time.Duration
}

func (c idleConn) Read(b []byte) (int, error) {
	_ = c.Conn.SetReadDeadline(time.Now().Add(c.idle))
	return c.Conn.Read(b)
}

func (c idleConn) Write(b []byte) (int, error) {
	_ = c.Conn.SetWriteDeadline(time.Now().Add(c.idle))
	return c.Conn.Write(b)
}

// trackedBody is a request body handed to the transport: it says whether
// the transport read it to the end and when it let go of it (the
// transport may read and close it after RoundTrip returned).
type trackedBody struct {
	countingReader
	eof    atomic.Bool
	once   sync.Once
	closed chan struct{}
}

func (b *trackedBody) Read(p []byte) (int, error) {
	n, err := b.countingReader.Read(p)
	if err == io.EOF {
		b.eof.Store(true)
	}
	return n, err
}

func (b *trackedBody) Close() error {
	b.once.Do(func() { close(b.closed) })
	return nil
}

// serveAPI serves the tool's HTTP/1 requests on c, one at a time, each
// forwarded over TLS to the API with its header, and records each as an
// "http" event. Only origin-form requests (GET /path) for the API's own
// Host are forwarded, to a URL built from the API's name and the path.
func (p *Proxy) serveAPI(c net.Conn, api *API, dst string) {
	tlsCfg := &tls.Config{}
	if p.cfg.TLS != nil {
		tlsCfg = p.cfg.TLS.Clone()
	}
	tlsCfg.ServerName = api.Name
	var dialed atomic.Value
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			ev := Event{}
			conn, err := p.dial(api.Name, 443, &ev)
			dialed.Store(ev.Addr)
			if err != nil {
				return nil, &refusal{ev.Addr, err}
			}
			// An upstream that stalls mid-response or stops reading the
			// body is cut after the idle time, like the tool.
			return idleConn{conn, p.lim.IdleTimeout}, nil
		},
		TLSClientConfig:       tlsCfg,
		ForceAttemptHTTP2:     false,
		DisableCompression:    true,
		MaxIdleConnsPerHost:   1,
		ResponseHeaderTimeout: p.lim.IdleTimeout,
		TLSHandshakeTimeout:   p.lim.DialTimeout,
	}
	defer tr.CloseIdleConnections()
	ic := idleConn{c, p.lim.IdleTimeout}
	lr := &io.LimitedReader{R: ic}
	br := bufio.NewReader(lr)
	for {
		// The request head is bounded; its body is charged as it goes.
		lr.N = maxHead
		buffered := br.Buffered()
		req, err := http.ReadRequest(br)
		pulled := maxHead - lr.N
		head := pulled + int64(buffered-br.Buffered()) // the head's bytes, not the body read ahead
		lr.N = math.MaxInt64
		if err != nil {
			if pulled >= maxHead {
				p.log.add(Event{Kind: "http", Name: api.Name, Port: 80, Dst: dst, Protocol: "http", Secret: api.Secret,
					At: time.Now(), Reason: "request head larger than 64 KiB"}, true)
				writeStatus(ic, http.StatusRequestHeaderFieldsTooLarge, "toolcell: request head larger than 64 KiB")
			}
			return
		}
		ev := Event{Kind: "http", Name: api.Name, Port: 80, Dst: dst, Protocol: "http", Method: req.Method,
			Path: req.URL.Path, Secret: api.Secret, At: time.Now(), BytesOut: head}
		if !p.charge(head) {
			ev.Reason = errBytes.Error()
		}
		if ev.Reason == "" {
			ev.Reason = apiRequestProblem(req, api.Name)
		}
		if ev.Reason != "" {
			p.log.add(ev, true)
			writeStatus(ic, http.StatusForbidden, "toolcell: "+ev.Reason)
			return
		}
		keep := p.forward(ic, req, api, tr, &ev)
		if a, ok := dialed.Load().(string); ok {
			ev.Addr = a
		}
		ev.Duration = time.Since(ev.At)
		p.log.add(ev, false)
		if !keep {
			return
		}
	}
}

// apiRequestProblem says why a request to an API is not forwarded, or "".
func apiRequestProblem(req *http.Request, name string) string {
	switch {
	case req.URL.Opaque != "" || req.URL.Scheme != "" || req.URL.Host != "" || req.URL.User != nil ||
		!strings.HasPrefix(req.RequestURI, "/"):
		return "only origin-form requests (GET /path) are forwarded"
	case !hostIs(req.Host, name, 0): // the API's Host is replaced
		return "host mismatch: " + req.Host
	case strings.EqualFold(req.Method, http.MethodConnect) || req.Header.Get("Upgrade") != "":
		return "tunnels and protocol upgrades are not relayed"
	case strings.EqualFold(req.Method, http.MethodTrace) || strings.EqualFold(req.Method, "TRACK"):
		return "TRACE would echo the secret back"
	}
	return ""
}

// forward sends one request upstream and its response back; it reports
// whether the connection can take another request.
func (p *Proxy) forward(c net.Conn, req *http.Request, api *API, tr *http.Transport, ev *Event) bool {
	body := &trackedBody{countingReader: countingReader{r: req.Body, p: p}, closed: make(chan struct{})}
	var respBody *countingReader
	defer func() {
		ev.BytesOut += body.n.Load()
		if respBody != nil {
			ev.BytesIn = respBody.n.Load()
		}
	}()
	u := &url.URL{Scheme: "https", Host: api.Name, Path: req.URL.Path, RawPath: req.URL.RawPath, RawQuery: req.URL.RawQuery}
	out, err := http.NewRequestWithContext(p.ctx, req.Method, u.String(), body)
	if err != nil {
		ev.Reason = "bad request: " + err.Error()
		writeStatus(c, http.StatusBadRequest, "toolcell: bad request")
		return false
	}
	out.Host = api.Name
	out.Header = req.Header.Clone()
	dropHop(out.Header)
	out.Header.Del("Host")
	out.Header.Set(api.Header, api.Value)
	out.ContentLength = req.ContentLength
	if req.ContentLength == 0 {
		out.Body = http.NoBody
		body.eof.Store(true)
		body.Close()
	}
	resp, err := tr.RoundTrip(out)
	if err != nil {
		var r *refusal
		switch {
		case body.over.Load():
			ev.Reason = errBytes.Error()
		case asRefusal(err, &r):
			ev.Reason = r.err.Error()
		default:
			ev.Reason = "upstream: " + err.Error()
		}
		writeStatus(c, http.StatusBadGateway, "toolcell: "+ev.Reason)
		return false
	}
	defer resp.Body.Close()
	ev.Allowed = true
	ev.Status = resp.StatusCode
	dropHop(resp.Header)
	respBody = &countingReader{r: resp.Body, p: p}
	resp.Body = io.NopCloser(respBody)
	if resp.ContentLength < 0 {
		resp.TransferEncoding = []string{"chunked"}
	}
	upstreamClose := resp.Close
	resp.Close = resp.Close || req.Close
	if err := resp.Write(c); err != nil {
		if respBody.over.Load() {
			ev.Reason = errBytes.Error()
		}
		return false
	}
	// The next request is read from the same buffer the transport may
	// still be reading this body from: go on only once the transport let
	// go of a body it read to the end.
	select {
	case <-body.closed:
	case <-time.After(p.lim.IdleTimeout):
		return false
	}
	return body.eof.Load() && !req.Close && !upstreamClose
}

func writeStatus(c net.Conn, code int, msg string) {
	fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s\n",
		code, http.StatusText(code), len(msg)+1, msg)
}

// refusal is a dial the address checks refused.
type refusal struct {
	addr string
	err  error
}

func (r *refusal) Error() string { return r.err.Error() }

func asRefusal(err error, r **refusal) bool {
	for err != nil {
		if x, ok := err.(*refusal); ok {
			*r = x
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}
