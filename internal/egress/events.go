package egress

import (
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Event is one network attempt, as the audit record shows it.
type Event struct {
	Kind     string // "dns" or "connect"
	Name     string // the name asked for or connected to ("" if unknown)
	Type     string // DNS query type (A, AAAA, TXT, ...)
	Port     int    // the port the tool connected to
	Dst      string // the address the tool connected to, inside the sandbox
	Addr     string // the upstream address dialed
	Protocol string // what the first bytes were: "tls", "http" or "tcp"
	SNI      string // server name of a TLS ClientHello
	Allowed  bool   // whether the attempt went through
	Reason   string // why it was refused or ended early
	BytesOut int64  // tool -> upstream
	BytesIn  int64  // upstream -> tool
	Duration time.Duration
	Method   string // HTTP API calls: the request's method and path,
	Path     string // the response status, and the secret's reference
	Status   int
	Secret   string
	Requests int // plain HTTP connections: request heads relayed (each checked)
	Count    int // identical refusals and DNS answers are counted, not repeated
	At       time.Time
}

// Quotas of the record. Every class of attempt (see classify) has its own,
// so that a flood of one class cannot push another out, however the tool
// varies what it controls (address, port, name, query type, the text a
// reason quotes). Identical refusals and DNS answers are one event with a
// count and take no more room. Past its quota a class's attempts are counted in
// one overflow event per class and kind, and in dropped. So the record
// holds at most maxAllowed + maxAnswers + maxNames +
// (refusalClasses-1)*maxRefused itemised events plus one overflow event
// per class and kind, and each string the tool controls is cut to maxText
// bytes.
const (
	maxAllowed = 4096 // allowed connections and API calls, one event each
	maxAnswers = 512  // distinct DNS answers
	maxNames   = 512  // distinct names not granted: where DNS exfiltration shows
	maxRefused = 128  // distinct refusals, per other class
	maxText    = 256  // bytes of a name, reason, SNI, method or path
)

// class is what an attempt is, for the quotas.
type class uint8

const (
	classAllowed  class = iota // a connection or API call that went through
	classAnswer                // a DNS answer for a granted name
	classSNI                   // a TLS ClientHello naming another host
	classHost                  // an HTTP request naming another host
	classECH                   // an encrypted ClientHello, refused
	classBlocked               // a granted name resolved into a blocked range
	classDirect                // a connection to an address not handed out
	classPort                  // a granted name on a port not granted
	className                  // DNS for a name not granted
	classAPI                   // an API call refused
	classProtocol              // other bytes of the tool the relay refused
	classUDP                   // a UDP datagram (never relayed)
	classQuery                 // a DNS query not served (malformed, opcode, type)
	classCap                   // a cap reached
	classEnded                 // ended by the tool, the upstream or idleness
	numClasses
)

// refusalClasses counts the classes with a maxRefused quota.
const refusalClasses = int(numClasses - classSNI)

// overflowReason is the reason of a class's overflow event.
var overflowReason = [numClasses]string{
	classAllowed:  "further allowed connections and API calls",
	classAnswer:   "further DNS answers",
	classSNI:      "further sni mismatches",
	classHost:     "further host mismatches",
	classECH:      "further encrypted ClientHellos refused",
	classBlocked:  "further connections to blocked addresses",
	classDirect:   "further direct IP connects",
	classPort:     "further ports not granted",
	className:     "further names not granted",
	classAPI:      "further API calls refused",
	classProtocol: "further requests refused by the relay's checks",
	classUDP:      "further UDP datagrams",
	classQuery:    "further DNS queries not served",
	classCap:      "further attempts past a cap",
	classEnded:    "further attempts ended early",
}

const overflowPrefix = "not itemised (quota full): "

// classify says which quota e counts against. Refusals are told apart by
// their reason's fixed start; a reason nothing here knows counts as a
// refusal by the relay's checks.
func classify(e Event) class {
	if e.Allowed {
		if e.Kind == "dns" {
			return classAnswer
		}
		return classAllowed
	}
	r := refusalOf(e.Reason)
	switch {
	case strings.HasPrefix(r, "sni mismatch"):
		return classSNI
	case strings.HasPrefix(r, "host mismatch"):
		return classHost
	case strings.HasPrefix(r, "ech refused"):
		return classECH
	case blockedReason(r):
		return classBlocked
	case strings.HasPrefix(r, "cap reached"):
		return classCap
	}
	switch {
	case e.Kind == "dns" && (r == "not granted" || r == "not a host name"):
		return className
	case e.Kind == "dns":
		return classQuery
	case endedReason(r):
		return classEnded
	case e.Kind == "http":
		return classAPI
	case e.Protocol == "udp":
		return classUDP
	case strings.HasPrefix(r, "address not handed out"):
		return classDirect
	case strings.HasPrefix(r, "port not granted"):
		return classPort
	}
	return classProtocol
}

// refusalOf strips "request <n> refused: " (a later request on a plain
// HTTP connection) from a reason.
func refusalOf(r string) string {
	rest, ok := strings.CutPrefix(r, "request ")
	if !ok {
		return r
	}
	n, why, ok := strings.Cut(rest, " refused: ")
	if !ok || n == "" || strings.Trim(n, "0123456789") != "" {
		return r
	}
	return why
}

// blockedReason reports whether r is dial's refusal of a resolved address.
func blockedReason(r string) bool {
	if strings.HasPrefix(r, "an address of this host ") || strings.HasPrefix(r, "broadcast address ") {
		return true
	}
	for _, b := range blocked {
		if strings.HasPrefix(r, b.why+" ") {
			return true
		}
	}
	return false
}

// endedReason reports whether r says the tool, the upstream or idleness
// ended the attempt rather than a check.
func endedReason(r string) bool {
	for _, p := range []string{"idle for ", "closed by the tool before sending anything", "resolve: ",
		"upstream", "dial "} {
		if strings.HasPrefix(r, p) {
			return true
		}
	}
	return false
}

// clip cuts s to maxText bytes (on a character boundary), marked "...".
func clip(s string) string {
	if len(s) <= maxText {
		return s
	}
	i := maxText
	for i > maxText-utf8.UTFMax && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "..."
}

type eventLog struct {
	mu       sync.Mutex
	events   []Event
	index    map[foldKey]int
	overflow map[overflowKey]int
	n        [numClasses]int // itemised events per class
	dropped  int
}

type foldKey struct {
	kind, name, typ, dst, reason string
	port                         int
	allowed                      bool
}

type overflowKey struct {
	class class
	kind  string
}

func quota(c class) int {
	switch c {
	case classAllowed:
		return maxAllowed
	case classAnswer:
		return maxAnswers
	case className:
		return maxNames
	}
	return maxRefused
}

// add records e; folded events (DNS answers and refusals) are merged with
// an earlier identical one. Past its class's quota, e is counted in the
// class's overflow event.
func (l *eventLog) add(e Event, fold bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e.Count == 0 {
		e.Count = 1
	}
	e.Name, e.Reason, e.SNI, e.Method, e.Path = clip(e.Name), clip(e.Reason), clip(e.SNI), clip(e.Method), clip(e.Path)
	k := foldKey{e.Kind, e.Name, e.Type, e.Dst, e.Reason, e.Port, e.Allowed}
	if i, ok := l.index[k]; ok && fold {
		l.events[i].Count += e.Count
		return
	}
	c := classify(e)
	if l.n[c] >= quota(c) {
		l.dropped += e.Count
		ok := overflowKey{c, e.Kind}
		i, seen := l.overflow[ok]
		if !seen {
			if l.overflow == nil {
				l.overflow = map[overflowKey]int{}
			}
			i = len(l.events)
			l.overflow[ok] = i
			l.events = append(l.events, Event{Kind: e.Kind, Allowed: e.Allowed, At: e.At,
				Reason: overflowPrefix + overflowReason[c]})
		}
		o := &l.events[i]
		o.Count += e.Count
		o.BytesOut += e.BytesOut
		o.BytesIn += e.BytesIn
		o.Requests += e.Requests
		return
	}
	l.n[c]++
	if fold {
		if l.index == nil {
			l.index = map[foldKey]int{}
		}
		l.index[k] = len(l.events)
	}
	l.events = append(l.events, e)
}

func (l *eventLog) result() ([]Event, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Event(nil), l.events...), l.dropped
}
