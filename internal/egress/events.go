package egress

import (
	"sync"
	"time"
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

// Quotas of the record, each of its own so that a flood of one kind
// cannot push another out: distinct DNS answers and refusals (identical
// ones are one event with a count), distinct refused connections and API
// calls (likewise), and allowed connections and API calls, one event each.
// What no longer fits is only counted (dropped).
const (
	maxFolded   = 512
	maxItemised = 4096
)

type eventLog struct {
	mu                    sync.Mutex
	events                []Event
	index                 map[foldKey]int
	dns, refused, allowed int
	dropped               int
}

type foldKey struct {
	kind, name, typ, dst, reason string
	port                         int
	allowed                      bool
}

// add records e; folded events (DNS answers and refusals) are merged with
// an earlier identical one.
func (l *eventLog) add(e Event, fold bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e.Count == 0 {
		e.Count = 1
	}
	var k foldKey
	if fold {
		k = foldKey{e.Kind, e.Name, e.Type, e.Dst, e.Reason, e.Port, e.Allowed}
		if i, ok := l.index[k]; ok {
			l.events[i].Count += e.Count
			return
		}
	}
	n, max := &l.allowed, maxItemised
	switch {
	case fold && e.Kind == "dns":
		n, max = &l.dns, maxFolded
	case fold:
		n, max = &l.refused, maxFolded
	}
	if *n >= max {
		l.dropped += e.Count
		return
	}
	*n++
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
