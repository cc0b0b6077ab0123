package egress

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// hostLog is an upstream that answers every request with its Host and
// body, and remembers what it served.
type hostLog struct {
	mu   sync.Mutex
	seen []string // "METHOD host body"
	srv  *httptest.Server
}

func newHostLog(t *testing.T) *hostLog {
	t.Helper()
	h := &hostLog{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.seen = append(h.seen, r.Method+" "+r.Host+" "+string(body))
		h.mu.Unlock()
		fmt.Fprintf(w, "served %s %s|", r.Host, body)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hostLog) served() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.seen...)
}

// Every request of a plain HTTP connection is checked, not only the
// first: a second request naming another host, pipelined, sent after the
// first answer, or hidden in a body that some server frames differently,
// never reaches the upstream, and the record shows the refusal with the
// bytes that went before.
func TestRelayEveryRequestChecked(t *testing.T) {
	const ok = "GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n"
	const evil = "GET / HTTP/1.1\r\nHost: internal.example.net\r\n\r\n"
	for name, c := range map[string]struct{ req, why string }{
		"pipelined":              {ok + evil, "request 2 refused: host mismatch: internal.example.net"},
		"absolute target":        {ok + "GET http://internal.example.net/ HTTP/1.1\r\nHost: api.example.com\r\n\r\n", "request 2 refused: host mismatch"},
		"third":                  {ok + ok + evil, "request 3 refused: host mismatch"},
		"after a body":           {"POST / HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 2\r\n\r\nhi" + evil, "request 2 refused: host mismatch"},
		"after a chunked body":   {"POST / HTTP/1.1\r\nHost: api.example.com\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n" + evil, "request 2 refused: host mismatch"},
		"te and cl":              {"POST / HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + evil, "both Transfer-Encoding and Content-Length"},
		"te list":                {"POST / HTTP/1.1\r\nHost: api.example.com\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n" + evil, "malformed HTTP request head"},
		"two te":                 {"POST / HTTP/1.1\r\nHost: api.example.com\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + evil, "malformed HTTP request head"},
		"te in 1.0":              {"POST / HTTP/1.0\r\nHost: api.example.com\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + evil, "Transfer-Encoding in an HTTP/1.0 request"},
		"two cl":                 {"POST / HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n" + evil, "more than one Content-Length"},
		"cl list":                {"POST / HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 0, 40\r\n\r\n" + evil, "malformed HTTP request head"},
		"underscore te":          {"POST / HTTP/1.1\r\nHost: api.example.com\r\nTransfer_Encoding: chunked\r\n\r\n0\r\n\r\n" + evil, "header name Transfer_Encoding"},
		"underscore cl":          {"POST / HTTP/1.1\r\nHost: api.example.com\r\nContent_Length: 40\r\n\r\n" + evil, "header name Content_Length"},
		"chunk extension":        {"POST / HTTP/1.1\r\nHost: api.example.com\r\nTransfer-Encoding: chunked\r\n\r\n2;x=\"\r\n" + evil + "\"\r\nhi\r\n0\r\n\r\n", "malformed chunk size line"},
		"chunk bare lf":          {"POST / HTTP/1.1\r\nHost: api.example.com\r\nTransfer-Encoding: chunked\r\n\r\n2\nhi\r\n0\r\n\r\n" + evil, "malformed chunk size line"},
		"chunk data overrun":     {"POST / HTTP/1.1\r\nHost: api.example.com\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhiX\r\n0\r\n\r\n" + evil, "chunk data not ended by CRLF"},
		"chunk size too long":    {"POST / HTTP/1.1\r\nHost: api.example.com\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000002\r\nhi\r\n0\r\n\r\n" + evil, "malformed chunk size line"},
		"trailer":                {"POST / HTTP/1.1\r\nHost: api.example.com\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nHost: internal.example.net\r\n\r\n" + evil, "trailer fields"},
		"later upgrade":          {ok + "GET / HTTP/1.1\r\nHost: api.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n" + evil, "request 2 refused: protocol upgrade"},
		"upgrade with a body":    {"POST / HTTP/1.1\r\nHost: api.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: 2\r\n\r\nhi" + evil, "protocol upgrade"},
		"empty lines":            {ok + "\r\n\n\r\n" + evil, "request 2 refused: more than two empty lines"},
		"bare lf lines":          {ok + "\n\n\n\n" + evil, "request 2 refused: more than two empty lines"},
		"malformed second":       {ok + "GET / HTTP/1.1\r\nHost: api.example.com\r\nHost : internal.example.net\r\n\r\n", "request 2 refused: malformed header line"},
		"text after a request":   {ok + "SSH-2.0-x\r\n" + evil, "request 2 refused: malformed HTTP request head"},
		"lone cr before request": {ok + "\r" + evil, "request 2 refused: malformed HTTP request head"},
		"lower-case body line":   {"POST / HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 46\r\n\r\nget / HTTP/1.1\r\nHost: internal.example.net\r\n\r\n", "request 1 refused: request body begins like a request line"},
		"query after authority":  {ok + "GET http://api.example.com?@internal.example.net/ HTTP/1.1\r\nHost: api.example.com\r\n\r\n", "request 2 refused: request target is not a path or an absolute URL"},
		"port with zeros":        {ok + "GET / HTTP/1.1\r\nHost: api.example.com:0080\r\n\r\n", "request 2 refused: host mismatch"},
		"body like a request":    {"POST / HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 46\r\n\r\n" + evil, "request 1 refused: request body begins like a request line"},
		"get with such a body":   {"GET / HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 48\r\n\r\n\r\n" + evil, "request 1 refused: request body begins like a request line"},
		"body ending in a line":  {"POST / HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 31\r\n\r\nGET http://internal.example.net/\nHost: api.example.com\r\n\r\n", "request 1 refused: request body begins like a request line"},
		"later body":             {ok + "POST / HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 46\r\n\r\n" + evil, "request 2 refused: request body begins like a request line"},
		"bare upgrade":           {"GET / HTTP/1.1\r\nHost: api.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n" + evil, "request 1 refused: protocol upgrade other than WebSocket"},
		"other upgrade":          {"GET / HTTP/1.1\r\nHost: api.example.com\r\nUpgrade: foo\r\nSec-WebSocket-Key: x\r\n\r\n" + evil, "request 1 refused: protocol upgrade other than WebSocket"},
		"http/1.9":               {"GET / HTTP/1.9\r\nHost: api.example.com\r\n\r\n", "HTTP version HTTP/1.9 is not relayed"},
		"later http/0.9":         {ok + "GET / HTTP/0.9\r\nHost: api.example.com\r\n\r\n", "request 2 refused: HTTP version HTTP/0.9"},
		"no host":                {"GET / HTTP/1.0\r\n\r\n", "request without Host"},
		"later no host":          {ok + "GET / HTTP/1.0\r\nX: y\r\n\r\n", "request 2 refused: request without Host"},
		"empty host":             {ok + "GET http://api.example.com/ HTTP/1.1\r\nHost:\r\n\r\n", "request 2 refused: empty Host"},
		"backslash target":       {ok + "GET /\\internal.example.net/admin HTTP/1.1\r\nHost: api.example.com\r\n\r\n", "request 2 refused: backslash in the request target"},
		"first backslash":        {"GET /\\internal.example.net/admin HTTP/1.1\r\nHost: api.example.com\r\n\r\n", "backslash in the request target"},
		"userinfo target":        {ok + "GET http://internal.example.net:80@api.example.com/ HTTP/1.1\r\nHost: api.example.com\r\n\r\n", "request 2 refused: request target is not a path or an absolute URL"},
		"other port":             {ok + "GET / HTTP/1.1\r\nHost: api.example.com:22\r\n\r\n", "request 2 refused: host mismatch: api.example.com:22"},
		"other port in target":   {ok + "GET http://api.example.com:9999/ HTTP/1.1\r\nHost: api.example.com\r\n\r\n", "request 2 refused: host mismatch: api.example.com:9999"},
		"kelvin sign":            {ok + "GET / HTTP/1.1\r\nHost: api.example.\u212aom\r\n\r\n", "request 2 refused: host mismatch"},
		"cl leading zero":        {"POST / HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 010\r\n\r\n" + evil, "Content-Length not plain digits under 2 GiB: 010"},
		"cl 4 GiB":               {"POST / HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 4294967298\r\n\r\nhi" + evil, "Content-Length not plain digits under 2 GiB: 4294967298"},
		"chunk leading zero":     {"POST / HTTP/1.1\r\nHost: api.example.com\r\nTransfer-Encoding: chunked\r\n\r\n02\r\nhi\r\n0\r\n\r\n" + evil, "request 1 refused: malformed chunk size line"},
		"chunk over 2 GiB":       {"POST / HTTP/1.1\r\nHost: api.example.com\r\nTransfer-Encoding: chunked\r\n\r\n100000002\r\nhi\r\n0\r\n\r\n" + evil, "request 1 refused: malformed chunk size line"},
	} {
		t.Run(name, func(t *testing.T) {
			up := newHostLog(t)
			p, port, _ := newFixture(t, up.srv.Listener.Addr().String(), public, Limits{})
			got := rawRequest(t, port, c.req)
			for _, s := range up.served() {
				if strings.Contains(s, "internal") {
					t.Errorf("upstream served %q", s)
				}
			}
			if strings.Contains(got, "internal") {
				t.Errorf("answer %q", got)
			}
			// The requests before the refused one are answered (and the
			// refused one too when its head, checked, went before its
			// body was refused: the upstream sees the body cut).
			var n int
			fmt.Sscanf(c.why, "request %d refused", &n)
			answers := strings.Count(got, "served api.example.com")
			bodyRefused := strings.Contains(c.why, "body") || strings.Contains(c.why, "chunk") || strings.Contains(c.why, "trailer")
			if n > 0 && answers != n-1 && !(bodyRefused && answers == n) {
				t.Errorf("%d answers before request %d was refused: %q", answers, n, got)
			}
			e := lastEvent(t, p)
			// A later request's refusal carries the bytes before it.
			if e.Allowed || e.Protocol != "http" || !strings.Contains(e.Reason, c.why) || n > 1 && e.BytesOut == 0 {
				t.Errorf("event %+v, want reason %q", e, c.why)
			}
		})
	}
}

// The refusal of a later request is its own record entry, with the bytes
// that went before it.
func TestRelayLaterRefusalRecorded(t *testing.T) {
	up := newHostLog(t)
	p, port, _ := newFixture(t, up.srv.Listener.Addr().String(), public, Limits{})
	c, err := net.Dial("tcp4", fmt.Sprintf("127.77.0.2:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	// One request, its answer, then (on the same connection) another host.
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "served api.example.com |" {
		t.Fatalf("first answer %q", body)
	}
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: internal.example.net\r\n\r\n")
	if rest, _ := io.ReadAll(br); len(rest) != 0 {
		t.Errorf("second request answered: %q", rest)
	}
	e := lastEvent(t, p)
	if e.Allowed || e.Reason != "request 2 refused: host mismatch: internal.example.net" || e.BytesOut == 0 || e.BytesIn == 0 || e.Count != 1 || e.Requests != 1 {
		t.Errorf("event %+v", e)
	}
	if s := up.served(); len(s) != 1 {
		t.Errorf("upstream served %q", s)
	}
}

// What real clients send goes through unchanged: keep-alive requests with
// bodies of both framings, pipelined requests, an empty line between two.
func TestRelayKeepAlive(t *testing.T) {
	up := newHostLog(t)
	p, port, _ := newFixture(t, up.srv.Listener.Addr().String(), public, Limits{})
	dials := 0
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1, DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		dials++
		return (&net.Dialer{}).DialContext(ctx, "tcp", fmt.Sprintf("127.77.0.2:%d", port))
	}}}
	url := fmt.Sprintf("http://api.example.com:%d/x", port)
	for i := 0; i < 3; i++ {
		var body io.Reader = strings.NewReader(fmt.Sprint("cl", i))
		if i == 1 {
			body = io.MultiReader(strings.NewReader("chunked"), strings.NewReader(fmt.Sprint(i))) // unknown length: chunked
		}
		resp, err := client.Post(url, "text/plain", body)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := fmt.Sprintf("served api.example.com:%d cl%d|", port, i)
		if i == 1 {
			want = fmt.Sprintf("served api.example.com:%d chunked1|", port)
		}
		if string(b) != want {
			t.Fatalf("request %d: %q, want %q", i, b, want)
		}
	}
	if dials != 1 {
		t.Errorf("%d connections for three requests, want one (keep-alive)", dials)
	}
	client.CloseIdleConnections()
	e := lastEvent(t, p)
	if !e.Allowed || e.Reason != "" || e.Protocol != "http" || e.Requests != 3 {
		t.Errorf("event %+v", e)
	}

	ok := "GET /a HTTP/1.1\r\nHost: api.example.com\r\n\r\n"
	post := "POST /b HTTP/1.1\r\nHost: api.example.com\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nA\r\n0123456789\r\n0\r\n\r\n"
	up2 := newHostLog(t)
	p2, port2, _ := newFixture(t, up2.srv.Listener.Addr().String(), public, Limits{})
	got := rawRequest(t, port2, ok+post+"\r\n"+fmt.Sprintf("GET /c HTTP/1.1\r\nHost: API.example.com.:%d\r\nConnection: close\r\n\r\n", port2))
	if strings.Count(got, "served") != 3 || !strings.Contains(got, "served api.example.com abc0123456789|") {
		t.Errorf("pipelined answers %q", got)
	}
	if e := lastEvent(t, p2); !e.Allowed || e.Reason != "" || e.Requests != 3 {
		t.Errorf("event %+v", e)
	}
}

// A WebSocket upgrade goes through unparsed once the upstream completed
// the handshake; answered otherwise (also with a bare 101 that does not
// prove the server read the key), the connection's next bytes are checked
// as requests again.
func TestRelayUpgrade(t *testing.T) {
	const key = "dGhlIHNhbXBsZSBub25jZQ=="
	const accept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" // RFC 6455's example
	big := strings.Repeat("a", 30000)
	upgrade := "GET /ws HTTP/1.1\r\nHost: api.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key + "\r\nX-Big: " + big + "\r\n\r\n"
	const after = "GET / HTTP/1.1\r\nHost: internal.example.net\r\n\r\n" // frames that look like a request
	frames := after + strings.Repeat("\x82\x7e\x00\x10frame-data-xxxxx", 500)
	for _, answer := range []string{"switch", "bare 101", "200"} {
		got := make(chan string, 1)
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if answer == "200" {
				io.WriteString(w, "no upgrade here")
				return
			}
			conn, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			if answer == "bare 101" {
				io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\n\r\n")
				// and then go on reading requests, as an application
				// that only set the status would
				if req, err := http.ReadRequest(brw.Reader); err == nil {
					got <- req.Host
					io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nfronted")
				}
				return
			}
			io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "+accept+"\r\n\r\n")
			b := make([]byte, len(frames))
			if _, err := io.ReadFull(brw, b); err != nil {
				t.Error(err)
			}
			got <- string(b)
			conn.Write(b) // echo
		}))
		defer up.Close()
		p, port, _ := newFixture(t, up.Listener.Addr().String(), public, Limits{})
		c, err := net.Dial("tcp4", fmt.Sprintf("127.77.0.2:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(c)
		if answer == "switch" {
			// The frames follow the request head at once (read ahead with it).
			io.WriteString(c, upgrade+frames)
		} else {
			io.WriteString(c, upgrade)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if (answer != "200") != (resp.StatusCode == 101) {
			t.Fatalf("%s: status %d", answer, resp.StatusCode)
		}
		if answer == "200" {
			io.ReadAll(resp.Body)
		}
		if answer != "switch" {
			io.WriteString(c, after)
		}
		rest, _ := io.ReadAll(br)
		c.Close()
		e := lastEvent(t, p)
		if answer == "switch" {
			if string(rest) != frames || <-got != frames || !e.Allowed || e.Reason != "" {
				t.Errorf("upgraded: echo of %d bytes (want %d), event %+v", len(rest), len(frames), e)
			}
			continue
		}
		select {
		case h := <-got:
			t.Errorf("%s: the upstream read a request for %s", answer, h)
		default:
		}
		if len(rest) != 0 || e.Allowed || e.Reason != "request 2 refused: host mismatch: internal.example.net" {
			t.Errorf("%s: answer %q, event %+v", answer, rest, e)
		}
	}
}

// bodyFraming refuses every framing two servers could read differently,
// also those Go's parser already turns away.
func TestBodyFraming(t *testing.T) {
	h11 := &http.Request{ProtoMajor: 1, ProtoMinor: 1}
	h10 := &http.Request{ProtoMajor: 1, ProtoMinor: 0}
	for _, c := range []struct {
		h       requestHead
		size    int64
		chunked bool
		bad     bool
	}{
		{h: requestHead{req: h11}},
		{h: requestHead{req: h11, cl: []string{"12"}}, size: 12},
		{h: requestHead{req: h11, te: []string{"Chunked"}}, chunked: true},
		{h: requestHead{req: h11, te: []string{"identity"}}, bad: true},
		{h: requestHead{req: h11, te: []string{"chunked"}, cl: []string{"3"}}, bad: true},
		{h: requestHead{req: h11, te: []string{"chunked", "chunked"}}, bad: true},
		{h: requestHead{req: h10, te: []string{"chunked"}}, bad: true},
		{h: requestHead{req: h11, cl: []string{"1", "1"}}, bad: true},
		{h: requestHead{req: h11, cl: []string{"+1"}}, bad: true},
		{h: requestHead{req: h11, cl: []string{"-1"}}, bad: true},
		{h: requestHead{req: h11, cl: []string{""}}, bad: true},
		{h: requestHead{req: h11, cl: []string{"0x10"}}, bad: true},
		{h: requestHead{req: h11, cl: []string{"9999999999999999999"}}, bad: true},
		{h: requestHead{req: h11, cl: []string{"2147483647"}}, size: 1<<31 - 1},
		{h: requestHead{req: h11, cl: []string{"2147483648"}}, bad: true},
		{h: requestHead{req: h11, cl: []string{"0"}}},
		{h: requestHead{req: h11, cl: []string{"00"}}, bad: true},
	} {
		size, chunked, why := bodyFraming(c.h)
		if (why != "") != c.bad || !c.bad && (size != c.size || chunked != c.chunked) {
			t.Errorf("%+v: size %d chunked %v why %q", c.h, size, chunked, why)
		}
	}
}

// Bodies that only look a little like a request line pass: text whose
// first word is not an upper-case method, JSON, forms, git pkt-lines; and
// so do empty lines before a connection's first request.
func TestRelayBodiesPass(t *testing.T) {
	for _, body := range []string{
		"Get milk and eggs", "Report ready\n", "Visit https://example.com for details",
		"- https://example.com/a\n- b\n", `{"q": "GET / HTTP/1.1"}`, "a=1&b=GET+%2F", "0032want 7fd1a60b01f91b314f59955a4e4d4e80d8edf11d\n",
		"0014command=ls-refs\n", "get the HTTP/1.1 spec first", "\x00\x01GET",
	} {
		up := newHostLog(t)
		p, port, _ := newFixture(t, up.srv.Listener.Addr().String(), public, Limits{})
		got := rawRequest(t, port, fmt.Sprintf("POST / HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body))
		if !strings.Contains(got, "served api.example.com "+body+"|") {
			t.Errorf("%q: answer %q", body, got)
		}
		if e := lastEvent(t, p); !e.Allowed || e.Reason != "" {
			t.Errorf("%q: event %+v", body, e)
		}
	}
	up := newHostLog(t)
	p, port, _ := newFixture(t, up.srv.Listener.Addr().String(), public, Limits{})
	rawRequest(t, port, "\r\n\nGET / HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n")
	if e := lastEvent(t, p); !e.Allowed || e.Reason != "" || e.BytesOut == 0 {
		t.Errorf("empty lines first: event %+v", e)
	}
}

// Connections held open idle keep little of the run's byte budget: with
// 1 MiB, a dozen idle keep-alive connections leave room for more.
func TestRelayIdleKeepsBudget(t *testing.T) {
	up := newHostLog(t)
	p, port, _ := newFixture(t, up.srv.Listener.Addr().String(), public, Limits{MaxBytes: 1 << 20})
	for i := 0; i < 13; i++ {
		c, err := net.Dial("tcp4", fmt.Sprintf("127.77.0.2:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("connection %d: status %d", i, resp.StatusCode)
		}
	}
	p.Close()
	evs, _ := p.Events()
	for _, e := range evs {
		if strings.Contains(e.Reason, "cap") {
			t.Errorf("event %+v", e)
		}
	}
}
