package egress

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
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
	n    *int64
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
		*c.n += int64(n)
	}
	return n, err
}

var errBytes = fmt.Errorf("cap reached: bytes")

// serveAPI serves the tool's HTTP/1 requests on c, one at a time, each
// forwarded over TLS with the API's header, and records each as an "http"
// event.
func (p *Proxy) serveAPI(c net.Conn, api *API, dst string) {
	tlsCfg := &tls.Config{}
	if p.cfg.TLS != nil {
		tlsCfg = p.cfg.TLS.Clone()
	}
	tlsCfg.ServerName = api.Name
	var dialed string
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			ev := Event{}
			conn, err := p.dial(api.Name, 443, &ev)
			dialed = ev.Addr
			if err != nil {
				return nil, &refusal{ev.Addr, err}
			}
			return conn, nil
		},
		TLSClientConfig:       tlsCfg,
		ForceAttemptHTTP2:     false,
		DisableCompression:    true,
		MaxIdleConnsPerHost:   1,
		ResponseHeaderTimeout: p.lim.IdleTimeout,
		TLSHandshakeTimeout:   p.lim.DialTimeout,
	}
	defer tr.CloseIdleConnections()
	br := bufio.NewReader(c)
	for {
		_ = c.SetReadDeadline(time.Now().Add(p.lim.IdleTimeout))
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		_ = c.SetReadDeadline(time.Time{})
		ev := Event{Kind: "http", Name: api.Name, Port: 80, Dst: dst, Protocol: "http", Method: req.Method,
			Path: req.URL.Path, Secret: api.Secret, At: time.Now()}
		host := req.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		switch {
		case canonicalName(host) != api.Name:
			ev.Reason = "host mismatch: " + host
		case req.Method == http.MethodConnect || req.Header.Get("Upgrade") != "":
			ev.Reason = "tunnels and protocol upgrades are not relayed"
		}
		if ev.Reason != "" {
			p.log.add(ev, true)
			writeStatus(c, http.StatusForbidden, "toolcell: "+ev.Reason)
			return
		}
		keep := p.forward(c, req, api, tr, &ev)
		ev.Addr = dialed
		ev.Duration = time.Since(ev.At)
		p.log.add(ev, false)
		if !keep {
			return
		}
	}
}

// forward sends one request upstream and its response back; it reports
// whether the connection can take another request.
func (p *Proxy) forward(c net.Conn, req *http.Request, api *API, tr *http.Transport, ev *Event) bool {
	body := &countingReader{r: req.Body, n: &ev.BytesOut, p: p}
	out, err := http.NewRequestWithContext(p.ctx, req.Method, "https://"+api.Name+req.URL.RequestURI(), body)
	if err != nil {
		ev.Reason = "bad request: " + err.Error()
		writeStatus(c, http.StatusBadRequest, "toolcell: bad request")
		return false
	}
	out.Header = req.Header.Clone()
	dropHop(out.Header)
	out.Header.Set(api.Header, api.Value)
	out.ContentLength = req.ContentLength
	if req.ContentLength == 0 {
		out.Body = http.NoBody
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
	respBody := &countingReader{r: resp.Body, n: &ev.BytesIn, p: p}
	resp.Body = io.NopCloser(respBody)
	if resp.ContentLength < 0 {
		resp.TransferEncoding = []string{"chunked"}
	}
	resp.Close = req.Close
	if err := resp.Write(c); err != nil {
		if respBody.over.Load() {
			ev.Reason = errBytes.Error()
		}
		return false
	}
	return !req.Close && !resp.Close
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
