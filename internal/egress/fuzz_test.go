package egress

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// FuzzForwardHTTP feeds arbitrary bytes as a tool's side of a plain HTTP
// connection and reads what the relay sends upstream as Go's server would:
// every request in it must name the granted host. (go test runs the
// seeds; go test -fuzz FuzzForwardHTTP ./internal/egress searches.)
func FuzzForwardHTTP(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\nGET / HTTP/1.1\r\nHost: internal.example.net\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 46\r\n\r\nGET / HTTP/1.1\r\nHost: internal.example.net\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: api.example.com\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n",
		"\r\nGET http://api.example.com/ HTTP/1.1\r\nHost: api.example.com:80\r\n\r\n",
		"GET / HTTP/1.0\r\nHost: api.example.com\r\nContent-Length: 3\r\n\r\nabc\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		p := New(Config{Limits: Limits{IdleTimeout: time.Second}})
		defer p.Close()
		toolSide, relaySrc := net.Pipe()
		relayDst, upSide := net.Pipe()
		go func() {
			toolSide.Write(in)
			toolSide.Close()
		}()
		var last atomic.Int64
		last.Store(time.Now().UnixNano())
		stop := func(string) { relaySrc.Close(); relayDst.Close() }
		done := make(chan struct{})
		go func() {
			p.forwardHTTP(relayDst, relaySrc, nil, "api.example.com", 80, nil, &last, stop)
			relayDst.Close()
			close(done)
		}()
		out, _ := io.ReadAll(upSide)
		<-done
		br := bufio.NewReader(bytes.NewReader(out))
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return // the end, or a request the relay cut
			}
			if !hostIs(req.Host, "api.example.com", 80) {
				t.Fatalf("a request for %q went upstream from %q (upstream got %q)", req.Host, in, out)
			}
			if _, err := io.Copy(io.Discard, req.Body); err != nil {
				return
			}
		}
	})
}
