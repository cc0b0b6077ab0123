package egress

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// Made-up names fill their class's quota; the names past it are counted
// in one overflow event, and an allowed connection after them is still
// itemised.
func TestEventQuotas(t *testing.T) {
	var l eventLog
	for i := 0; i < maxNames+100; i++ {
		l.add(Event{Kind: "dns", Name: fmt.Sprintf("n%d.attacker.test", i), Reason: "not granted"}, true)
	}
	l.add(Event{Kind: "connect", Name: "api.example.com", Allowed: true}, false)
	ev, dropped := l.result()
	if dropped != 100 || len(ev) != maxNames+2 {
		t.Fatalf("%d events, %d dropped; want %d and 100", len(ev), dropped, maxNames+2)
	}
	if o := ev[maxNames]; o.Kind != "dns" || o.Count != 100 || o.Allowed || o.Reason != overflowPrefix+"further names not granted" {
		t.Fatalf("overflow event %+v", o)
	}
	if e := ev[len(ev)-1]; !e.Allowed || e.Name != "api.example.com" {
		t.Fatalf("last %+v", e)
	}
}

// flood fills every low-value quota and the allowed one, varying the
// fields a tool controls, and returns how many attempts it made.
func flood(l *eventLog) int {
	n := 0
	for i := 0; i < 700; i++ {
		dst := fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
		for _, e := range []Event{
			{Kind: "connect", Protocol: "udp", Port: 443 + i%3, Dst: dst + ":443", Reason: "UDP is not relayed (only TCP to granted names)"},
			{Kind: "dns", Name: fmt.Sprintf("x%d.attacker.test", i), Type: "TXT", Dst: dst + ":53", Reason: "not granted"},
			{Kind: "dns", Name: fmt.Sprintf("y%d.attacker.test", i), Type: "TYPE" + fmt.Sprint(i), Dst: dst + ":53", Reason: "not a host name"},
			{Kind: "dns", Dst: dst + ":53", Reason: "malformed query"},
			{Kind: "dns", Name: "api.example.com", Type: fmt.Sprintf("TYPE%d", 1000+i), Dst: dst + ":53", Allowed: true},
			{Kind: "connect", Port: 443, Dst: dst + ":443", Reason: "address not handed out by toolcell's DNS (direct IP connect)"},
			{Kind: "connect", Name: "api.example.com", Port: 443, Dst: "127.77.0.2:443", Reason: fmt.Sprintf("cap reached: %d connections", i)},
			{Kind: "connect", Name: "api.example.com", Port: 80, Dst: "127.77.0.2:80", Protocol: "http",
				Reason: fmt.Sprintf("request target is not a path or an absolute URL with a host: x%d", i)},
			{Kind: "connect", Name: "api.example.com", Port: 443, Dst: "127.77.0.2:443", Reason: fmt.Sprintf("dial tcp 203.0.113.%d:443: connect: connection refused", i)},
		} {
			l.add(e, true)
			n++
		}
	}
	for i := 0; i < maxAllowed+100; i++ {
		l.add(Event{Kind: "http", Name: "api.example.com", Port: 80, Method: "GET", Path: fmt.Sprintf("/%d", i), Allowed: true, Status: 200}, false)
		n++
	}
	return n
}

// Policy refusals after a flood of everything else, each varying what
// the tool controls: every one still has its own event.
func TestEventPolicyRefusalsAfterFlood(t *testing.T) {
	var l eventLog
	n := flood(&l)
	after := []Event{
		{Kind: "connect", Name: "api.example.com", Port: 443, Dst: "127.77.0.2:443", Protocol: "tls", SNI: "internal.example.net", Reason: "sni mismatch: internal.example.net"},
		{Kind: "connect", Name: "api.example.com", Port: 443, Dst: "127.77.0.2:443", Protocol: "tls", Reason: "ech refused: encrypted ClientHello"},
		{Kind: "connect", Name: "api.example.com", Port: 80, Dst: "127.77.0.2:80", Protocol: "http", Reason: "host mismatch: internal.example.net"},
		{Kind: "connect", Name: "rebind.example.com", Port: 80, Dst: "127.77.0.3:80", Addr: "127.0.0.1", Reason: "loopback address 127.0.0.1"},
		{Kind: "connect", Name: "meta.example.com", Port: 80, Dst: "127.77.0.4:80", Addr: "169.254.169.254", Reason: "link-local address (cloud metadata lives here) 169.254.169.254"},
		{Kind: "connect", Name: "api.example.com", Port: 22, Dst: "127.77.0.2:22", Reason: "port not granted for this name"},
		{Kind: "http", Name: "key.example.com", Port: 80, Dst: "127.77.0.5:80", Protocol: "http", Method: "TRACE", Path: "/", Reason: "TRACE would echo the secret back"},
		{Kind: "http", Name: "key.example.com", Port: 80, Dst: "127.77.0.5:80", Protocol: "http", Method: "GET", Path: "/", Reason: "host mismatch: internal.example.net"},
		{Kind: "http", Name: "key.example.com", Port: 80, Dst: "127.77.0.5:80", Protocol: "http", Method: "GET", Path: "/", Reason: "private address 10.0.0.1"},
	}
	for _, e := range after {
		l.add(e, true)
	}
	// A later request refused after bytes moved: its own event with the
	// counts.
	late := Event{Kind: "connect", Name: "api.example.com", Port: 80, Dst: "127.77.0.2:80", Protocol: "http", BytesOut: 40, BytesIn: 100,
		Requests: 1, Reason: "request 2 refused: host mismatch: internal.example.net"}
	l.add(late, false)
	after = append(after, late)

	ev, dropped := l.result()
	for _, want := range after {
		found := false
		for _, e := range ev {
			found = found || e == want || (e.Reason == want.Reason && e.Kind == want.Kind && e.Name == want.Name && e.Count == 1 && e.BytesOut == want.BytesOut)
		}
		if !found {
			t.Errorf("not itemised after the flood: %+v", want)
		}
	}
	// Every attempt is in an event's count, and what is not itemised is
	// in an overflow event of its class.
	total, over := 0, 0
	for _, e := range ev {
		total += e.Count
		if strings.HasPrefix(e.Reason, overflowPrefix) {
			over += e.Count
		}
	}
	if total != n+len(after) || over != dropped || dropped == 0 {
		t.Fatalf("counts: %d attempts in events (want %d), %d in overflow events, %d dropped", total, n+len(after), over, dropped)
	}
	for _, r := range []string{"further UDP datagrams", "further names not granted", "further DNS queries not served", "further DNS answers",
		"further direct IP connects", "further attempts past a cap", "further requests refused by the relay's checks",
		"further attempts ended early", "further allowed connections and API calls"} {
		found := false
		for _, e := range ev {
			found = found || e.Reason == overflowPrefix+r
		}
		if !found {
			t.Errorf("no overflow event %q", r)
		}
	}
}

// Within one class, the first maxRefused distinct refusals are itemised,
// the rest counted (with their bytes) in the class's overflow event.
func TestEventClassQuota(t *testing.T) {
	var l eventLog
	for i := 0; i < maxRefused+50; i++ {
		l.add(Event{Kind: "connect", Name: "api.example.com", Port: 443, Reason: fmt.Sprintf("sni mismatch: n%d.evil.test", i)}, true)
		l.add(Event{Kind: "connect", Name: "api.example.com", Port: 80, BytesOut: 10, Reason: fmt.Sprintf("request %d refused: host mismatch: evil.test", i+2)}, false)
	}
	// An identical refusal folds into its itemised event.
	l.add(Event{Kind: "connect", Name: "api.example.com", Port: 443, Reason: "sni mismatch: n0.evil.test"}, true)
	ev, dropped := l.result()
	if len(ev) != 2*maxRefused+2 || dropped != 100 {
		t.Fatalf("%d events, %d dropped", len(ev), dropped)
	}
	if ev[0].Count != 2 {
		t.Fatalf("first sni mismatch %+v, want count 2", ev[0])
	}
	for _, e := range ev {
		switch e.Reason {
		case overflowPrefix + "further sni mismatches":
			if e.Count != 50 {
				t.Errorf("sni overflow %+v", e)
			}
		case overflowPrefix + "further host mismatches":
			if e.Count != 50 || e.BytesOut != 500 {
				t.Errorf("host overflow %+v", e)
			}
		}
	}
}

// Reasons are classified by their fixed start; text the tool chose in a
// reason cannot move it to another class.
func TestEventClassify(t *testing.T) {
	for _, c := range []struct {
		e    Event
		want class
	}{
		{Event{Kind: "connect", Reason: "sni mismatch: a"}, classSNI},
		{Event{Kind: "connect", Reason: "sni mismatch"}, classSNI},
		{Event{Kind: "connect", Reason: "ech refused"}, classECH},
		{Event{Kind: "connect", Reason: "request 12 refused: host mismatch: a"}, classHost},
		{Event{Kind: "connect", Reason: "request 1 refused: request body begins like a request line"}, classProtocol},
		{Event{Kind: "connect", Reason: "request target is not a path or an absolute URL with a host: x refused: sni mismatch: a"}, classProtocol},
		{Event{Kind: "connect", Reason: "request x refused: sni mismatch: a"}, classProtocol},
		{Event{Kind: "connect", Reason: "backslash in the request target: /sni mismatch"}, classProtocol},
		{Event{Kind: "connect", Reason: "private address 10.1.2.3"}, classBlocked},
		{Event{Kind: "connect", Reason: "loopback address (inside an IPv6 translation range) ::ffff:127.0.0.1"}, classBlocked},
		{Event{Kind: "connect", Reason: "an address of this host 192.0.2.7"}, classBlocked},
		{Event{Kind: "http", Reason: "link-local address (cloud metadata lives here) 169.254.169.254"}, classBlocked},
		{Event{Kind: "connect", Reason: "address not handed out by toolcell's DNS (direct IP connect)"}, classDirect},
		{Event{Kind: "connect", Protocol: "udp", Reason: "UDP is not relayed (only TCP to granted names)"}, classUDP},
		{Event{Kind: "connect", Reason: "port not granted for this name"}, classPort},
		{Event{Kind: "dns", Reason: "not granted"}, className},
		{Event{Kind: "dns", Reason: "not a host name"}, className},
		{Event{Kind: "dns", Reason: "query type not served"}, classQuery},
		{Event{Kind: "dns", Reason: "cap reached: 16 DNS connections"}, classCap},
		{Event{Kind: "dns", Allowed: true}, classAnswer},
		{Event{Kind: "http", Reason: "only origin-form requests (GET /path) are forwarded"}, classAPI},
		{Event{Kind: "http", Reason: "upstream: EOF"}, classEnded},
		{Event{Kind: "http", Allowed: true, Reason: "cap reached: bytes"}, classAllowed},
		{Event{Kind: "connect", Reason: "closed by the tool before sending anything"}, classEnded},
		{Event{Kind: "connect", Reason: "malformed TLS ClientHello"}, classProtocol},
		{Event{Kind: "connect", Reason: "something new"}, classProtocol},
	} {
		if got := classify(c.e); got != c.want {
			t.Errorf("%q (%s): class %d, want %d", c.e.Reason, c.e.Kind, got, c.want)
		}
	}
}

// The record's size is bounded whatever the tool does: every class and
// kind filled with distinct events whose strings are as long as the tool
// can make them.
func TestEventWorstCase(t *testing.T) {
	var l eventLog
	long := strings.Repeat("\x01", 70000) // JSON escapes each byte as \u0001
	// Reasons that quote the tool's data, and fixed ones.
	reasons := map[class]string{
		classSNI: "sni mismatch: " + long, classHost: "host mismatch: " + long, classECH: "ech refused: " + long,
		classBlocked: "private address " + long, classProtocol: "malformed: " + long, classCap: "cap reached: " + long,
		classEnded: "idle for " + long, classAPI: "TRACE would echo the secret back",
		classDirect: "address not handed out by toolcell's DNS (direct IP connect)", classPort: "port not granted for this name",
		className: "not granted", classQuery: "query type not served", classUDP: "UDP is not relayed",
	}
	attempts := 0
	for i := 0; i < maxAllowed+10; i++ {
		for _, kind := range []string{"dns", "connect", "http"} {
			for c := classAllowed; c < numClasses; c++ {
				e := Event{Kind: kind, Name: long, SNI: long, Method: long, Path: long, Type: "TYPE65535",
					Dst: "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535", Addr: "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
					Protocol: "http", Port: i, Reason: reasons[c], Secret: "env:API_KEY", BytesOut: 1, BytesIn: 1}
				switch c {
				case classAllowed, classAnswer:
					e.Allowed = true
				case classUDP:
					e.Protocol = "udp"
				}
				l.add(e, c != classAllowed)
				attempts++
			}
		}
	}
	ev, dropped := l.result()
	n := [numClasses]int{}
	for _, e := range ev {
		n[classify(e)]++
	}
	t.Logf("events per class: %v", n)
	if max := maxAllowed + maxAnswers + maxNames + (refusalClasses-1)*maxRefused + 3*int(numClasses); len(ev) > max {
		t.Fatalf("%d events, more than %d", len(ev), max)
	}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d attempts: %d events, %d dropped, %d bytes of JSON (%d per event)", attempts, len(ev), dropped, len(b), len(b)/len(ev))
	if len(b) > 48<<20 { // README: under 48 MB
		t.Fatalf("%d bytes of JSON", len(b))
	}
}
