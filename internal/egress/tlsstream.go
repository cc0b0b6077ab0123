package egress

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
)

// A TLS connection is checked for as long as a ClientHello can still
// change what the server serves: every ClientHello the tool sends while the
// handshake is in its plaintext phase must name the granted host. The
// phase ends when the server sends a ServerHello that is not a
// HelloRetryRequest (RFC 8446 4.1.4); until then the relay follows the
// record layer both ways. A server that answers a first ClientHello with a
// HelloRetryRequest takes the second one as the real one, and servers built
// on OpenSSL select the certificate and virtual host from it: checking only
// the first hello let a tool name one host and talk to another.
//
// Encrypted Client Hello (and the older encrypted SNI draft) hides the real
// name from the relay, so a hello carrying either extension is refused.
//
// A ClientHello must fill exactly one record. TLS allows a handshake
// message to span records, and the relay and TLS servers read it that way,
// but SNI routers that parse the raw bytes (haproxy's req.ssl_sni, SNI
// passthrough proxies) skip only the first record header and take the next
// one's for hello bytes: a split hello can name one host to the relay and
// another to such a router. Go, OpenSSL, BoringSSL and NSS clients send
// their hello in one record.

const (
	recordChangeCipherSpec = 20
	recordAlert            = 21
	recordHandshake        = 22
	recordApplicationData  = 23
	recordHeartbeat        = 24

	handshakeClientHello = 1
	handshakeServerHello = 2

	// maxRecord is the largest record body TLS 1.2 allows (2^14 + 2048);
	// a larger length means the bytes are not TLS.
	maxRecord = 1<<14 + 2048

	extensionECH  = 0xfe0d // encrypted_client_hello (RFC 9849)
	extensionESNI = 0xffce // encrypted_server_name (draft-ietf-tls-esni-02 and older)

	// maxHellos: TLS 1.3 allows one HelloRetryRequest, so two ClientHellos.
	maxHellos = 2
)

// hidesName reports whether extension e is one of the encrypted client
// hello code points: RFC 9849's, its drafts' (0xfe08-0xfe0c, 0xff02) and
// encrypted SNI's.
func hidesName(e uint16) bool {
	return e >= 0xfe08 && e <= extensionECH || e == 0xff02 || e == extensionESNI
}

// helloRetryRandom is the ServerHello.random that marks a
// HelloRetryRequest (RFC 8446 4.1.3).
var helloRetryRandom = []byte{
	0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
	0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
}

// tlsPhase is what the two directions of a TLS connection share.
type tlsPhase struct {
	// plain is cleared once the server sent a ServerHello that is not a
	// HelloRetryRequest: no ClientHello is read after that. It is cleared
	// before that ServerHello is passed to the tool, so a tool that
	// answers it finds it cleared.
	plain atomic.Bool
	// retries counts the server's HelloRetryRequests.
	retries atomic.Int32
}

func newTLSPhase() *tlsPhase {
	ph := &tlsPhase{}
	ph.plain.Store(true)
	return ph
}

// helloFollower reads the tool's TLS records and checks each ClientHello
// before any byte of it is released.
type helloFollower struct {
	seen    *bytes.Reader // what the sniff read before it knew it was TLS
	r       io.Reader     // seen, then the connection
	name    string        // the granted name the tool connected to
	hs      []byte        // handshake bytes not yet parsed into a whole message
	pending []byte        // records read but held back: they carry part of hs
	hellos  int
	sni     string    // of the first ClientHello
	phase   *tlsPhase // the server's side, once the relay dialed (nil in the sniff)
}

// next reads one record. It returns the bytes that may go upstream now
// (nil while a ClientHello is incomplete), a refusal, or a read error (io.EOF
// at a record boundary when the tool half-closed; io.ErrUnexpectedEOF
// inside a record).
func (f *helloFollower) next() (release []byte, why string, err error) {
	var hdr [5]byte
	if _, err := io.ReadFull(f.r, hdr[:]); err != nil {
		return nil, "", err
	}
	typ, n := hdr[0], int(binary.BigEndian.Uint16(hdr[3:5]))
	if typ < recordChangeCipherSpec || typ > recordHeartbeat || hdr[1] != 3 || n > maxRecord {
		return nil, fmt.Sprintf("not a TLS record (% x)", hdr[:]), nil
	}
	rec := make([]byte, 5+n)
	copy(rec, hdr[:])
	if _, err := io.ReadFull(f.r, rec[5:]); err != nil {
		if typ == recordHandshake && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) {
			return nil, "TLS handshake record cut short by the tool closing its side (nothing of it went upstream)", nil
		}
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, "", err
	}
	if f.hellos == 0 && typ != recordHandshake {
		return nil, "malformed TLS ClientHello (a record before it)", nil
	}
	if typ != recordHandshake {
		// Handshake messages must not be interleaved with other records
		// (RFC 8446 5.1): one that is unfinished stays unfinished.
		if len(f.hs) > 0 {
			return nil, "TLS record inside an unfinished handshake message", nil
		}
		return rec, "", nil
	}
	f.pending = append(f.pending, rec...)
	f.hs = append(f.hs, rec[5:]...)
	for len(f.hs) >= 4 {
		size := int(f.hs[1])<<16 | int(f.hs[2])<<8 | int(f.hs[3])
		if size > maxHead {
			return nil, "TLS handshake message over 64 KiB", nil
		}
		if len(f.hs) < 4+size {
			break
		}
		msg := f.hs[:4+size]
		if f.hellos == 0 && msg[0] != handshakeClientHello {
			return nil, "malformed TLS ClientHello (another handshake message first)", nil
		}
		if msg[0] == handshakeClientHello {
			if len(f.pending) != 5+len(msg) {
				// Split over records, or sharing one with other bytes.
				return nil, "TLS ClientHello not in exactly one record", nil
			}
			if why := f.check(msg); why != "" {
				return nil, why, nil
			}
		}
		f.hs = f.hs[4+size:]
	}
	// Tiny records carry more header than message: bound what is held.
	if len(f.pending) > 4*maxHead {
		return nil, "TLS handshake message spread over too many records", nil
	}
	if len(f.hs) > 0 && f.hs[0] == handshakeClientHello {
		return nil, "", nil // hold: a ClientHello goes up only once checked
	}
	release, f.pending = f.pending, nil
	return release, "", nil
}

// holding reports whether part of a ClientHello is held back.
func (f *helloFollower) holding() bool { return len(f.pending) > 0 }

// check checks one whole ClientHello message.
func (f *helloFollower) check(msg []byte) string {
	f.hellos++
	h, err := parseClientHello(msg)
	switch {
	case err != nil:
		return "malformed TLS ClientHello"
	case h.ech:
		return "ech refused: the ClientHello hides its server name (encrypted_client_hello or encrypted_server_name)"
	case f.hellos > maxHellos:
		return "more than two TLS ClientHellos on one connection"
	case f.hellos > 1 && (f.phase == nil || int(f.phase.retries.Load()) < f.hellos-1):
		// The server counts its retry request before the tool can see it.
		return "a second TLS ClientHello without a HelloRetryRequest"
	case f.hellos == 1:
		f.sni = h.sni
		if h.sni != "" && canonicalName(h.sni) != f.name {
			return "sni mismatch: " + h.sni
		}
	case canonicalName(h.sni) != canonicalName(f.sni):
		sni := h.sni
		if sni == "" {
			sni = "(none)"
		}
		return fmt.Sprintf("sni mismatch: %s (ClientHello %d, the first named %q)", sni, f.hellos, f.sni)
	}
	return ""
}

// helloInfo is what the relay needs of a ClientHello.
type helloInfo struct {
	sni string
	ech bool // encrypted_client_hello or encrypted_server_name present
}

var errHelloRead = errors.New("client hello read")

// parseClientHello lets crypto/tls parse one ClientHello handshake message
// (header included), presented to it as the records of a new connection;
// nothing is ever written back.
func parseClientHello(msg []byte) (helloInfo, error) {
	var recs []byte
	for rest := msg; len(rest) > 0; {
		k := min(len(rest), 1<<14)
		recs = append(recs, recordHandshake, 3, 1, byte(k>>8), byte(k))
		recs = append(recs, rest[:k]...)
		rest = rest[k:]
	}
	var h helloInfo
	var got bool
	cfg := &tls.Config{
		// Called only when the hello carries encrypted_client_hello.
		GetEncryptedClientHelloKeys: func(*tls.ClientHelloInfo) ([]tls.EncryptedClientHelloKey, error) {
			h.ech, got = true, true
			return nil, errHelloRead
		},
		GetConfigForClient: func(ci *tls.ClientHelloInfo) (*tls.Config, error) {
			h.sni, got = strings.TrimSuffix(ci.ServerName, "."), true
			for _, e := range ci.Extensions {
				if hidesName(e) {
					h.ech = true
				}
			}
			return nil, errHelloRead
		},
	}
	err := tls.Server(readOnly{bytes.NewReader(recs)}, cfg).Handshake()
	if !got {
		if err == nil {
			err = errors.New("no ClientHello")
		}
		return helloInfo{}, err
	}
	return h, nil
}

// serverHellos follows the server's bytes as TLS records, without holding
// any back, until a ServerHello that is not a HelloRetryRequest. Bytes that
// are not TLS records end the following and leave the phase plaintext, so
// the tool's side goes on checking.
type serverHellos struct {
	hdr  []byte // header of the record being read
	left int    // body bytes of that record still to come
	typ  byte
	hs   []byte // handshake bytes not yet parsed into a whole message
	lost bool   // not TLS, or nothing more to follow
}

// feed looks at the next bytes from the server and clears ph.plain as soon
// as they complete the random of a ServerHello that is no retry request.
func (s *serverHellos) feed(b []byte, ph *tlsPhase) {
	for len(b) > 0 && !s.lost && ph.plain.Load() {
		if s.left == 0 {
			k := min(5-len(s.hdr), len(b))
			s.hdr, b = append(s.hdr, b[:k]...), b[k:]
			if len(s.hdr) < 5 {
				return
			}
			s.typ, s.left = s.hdr[0], int(binary.BigEndian.Uint16(s.hdr[3:5]))
			if s.typ < recordChangeCipherSpec || s.typ > recordHeartbeat || s.hdr[1] != 3 || s.left > maxRecord {
				s.lost = true
				return
			}
			s.hdr = s.hdr[:0]
			continue
		}
		k := min(s.left, len(b))
		body := b[:k]
		b, s.left = b[k:], s.left-k
		if s.typ != recordHandshake {
			continue
		}
		s.hs = append(s.hs, body...)
		s.messages(ph)
		if len(s.hs) > maxHead {
			s.lost = true
		}
	}
}

// messages consumes the whole handshake messages in s.hs; a ServerHello
// is judged as soon as its random is in.
func (s *serverHellos) messages(ph *tlsPhase) {
	for len(s.hs) >= 4 {
		size := int(s.hs[1])<<16 | int(s.hs[2])<<8 | int(s.hs[3])
		if s.hs[0] == handshakeServerHello && len(s.hs) >= 4+2+32 && size >= 2+32 {
			// legacy_version (2 bytes), then random (32).
			if !bytes.Equal(s.hs[6:38], helloRetryRandom) {
				ph.plain.Store(false)
				return
			}
			if len(s.hs) < 4+size {
				return
			}
			ph.retries.Add(1)
		} else if len(s.hs) < 4+size {
			return
		}
		s.hs = s.hs[4+size:]
	}
}

// pipeTLSServer copies the server's bytes to the tool (dst) as they come,
// following them while the handshake is in its plaintext phase, then as
// pipe does.
func (p *Proxy) pipeTLSServer(dst, src net.Conn, ph *tlsPhase, last *atomic.Int64, stop func(string)) int64 {
	r := &idleReader{c: src, p: p, last: last}
	w := &budgetWriter{c: dst, p: p, last: last}
	var s serverHellos
	buf := make([]byte, 16<<10)
	for ph.plain.Load() && !s.lost {
		k, err := r.Read(buf)
		if k > 0 {
			s.feed(buf[:k], ph) // before the tool can see (and answer) it
			if _, werr := w.Write(buf[:k]); werr != nil {
				stop(p.endReason(r, w))
				return w.n
			}
		}
		switch {
		case errors.Is(err, io.EOF):
			closeWrite(dst, stop)
			return w.n
		case err != nil:
			stop(p.endReason(r, w))
			return w.n
		}
	}
	return w.n + p.pipe(dst, src, last, stop)
}

// forwardTLS copies the tool's bytes upstream (dst), checking every
// ClientHello while the handshake is in its plaintext phase, then as pipe
// does. f goes on from where the sniff stopped. It returns the bytes sent
// and a refusal ("" if none).
func (p *Proxy) forwardTLS(dst, src net.Conn, f *helloFollower, ph *tlsPhase, last *atomic.Int64, stop func(string)) (int64, string) {
	r := &idleReader{c: src, p: p, last: last}
	w := &budgetWriter{c: dst, p: p, last: last}
	f.r = io.MultiReader(f.seen, r)
	f.phase = ph
	for ph.plain.Load() || f.holding() {
		rel, why, err := f.next()
		if why != "" {
			// Nothing of the refused record went upstream.
			if tc, ok := src.(interface{ CloseRead() error }); ok {
				_ = tc.CloseRead()
			}
			stop("")
			return w.n, why
		}
		if len(rel) > 0 {
			if _, werr := w.Write(rel); werr != nil {
				stop(p.endReason(r, w))
				return w.n, ""
			}
		}
		switch {
		case errors.Is(err, io.EOF) && f.holding():
			stop(p.endReason(r, w))
			return w.n, "TLS ClientHello cut short by the tool closing its side (nothing of it went upstream)"
		case errors.Is(err, io.EOF):
			closeWrite(dst, stop) // the tool is done: pass the half-close on
			return w.n, ""
		case err != nil:
			stop(p.endReason(r, w)) // cut inside a record: that record is dropped
			return w.n, ""
		}
	}
	// What the sniff read ahead and nobody parsed, then the rest.
	if f.seen.Len() > 0 {
		rest := make([]byte, f.seen.Len())
		_, _ = f.seen.Read(rest)
		if _, err := w.Write(rest); err != nil {
			stop(p.endReason(r, w))
			return w.n, ""
		}
	}
	return w.n + p.pipe(dst, src, last, stop), ""
}
