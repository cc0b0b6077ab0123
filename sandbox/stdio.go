// The tool's standard streams: what is passed in, and the capped copiers
// of what comes out.

package sandbox

import (
	"bytes"
	"fmt"
	"io"
	"os"

	"github.com/toolcell/toolcell/audit"
	"github.com/toolcell/toolcell/capability"
	"golang.org/x/sys/unix"
)

// stdio returns the three descriptors handed to the tool.
func (p *Process) stdio() ([3]*os.File, error) {
	var out [3]*os.File
	fail := func(err error) ([3]*os.File, error) {
		for _, f := range out {
			if f != nil {
				f.Close()
			}
		}
		return [3]*os.File{}, fmt.Errorf("%w: stdio: %w", ErrSetup, err)
	}
	in := p.cmd.Stdin
	if f, ok := in.(*os.File); ok {
		// A regular file is reopened read-only and a pipe passed as is;
		// anything else (a terminal, a socket) is copied through a pipe,
		// so the tool never holds the caller's terminal.
		pass, ok, err := passThroughStdin(f)
		if err != nil {
			return fail(err)
		}
		if ok {
			out[0] = pass
			in = nil
		}
	}
	switch {
	case out[0] != nil:
	case in == nil:
		f, err := os.Open(os.DevNull)
		if err != nil {
			return fail(err)
		}
		out[0] = f
	default:
		pr, pw, err := os.Pipe()
		if err != nil {
			return fail(err)
		}
		out[0] = pr
		p.closers = append(p.closers, pw)
		go func() {
			io.Copy(pw, in)
			pw.Close()
		}()
	}
	limit := int64(p.set.MaxOutputOrDefault())
	for i, dst := range []io.Writer{p.cmd.Stdout, p.cmd.Stderr} {
		pr, pw, err := os.Pipe()
		if err != nil {
			return fail(err)
		}
		out[i+1] = pw
		w := &capWriter{dst: dst, limit: limit, onLimit: func() { p.kill(audit.ReasonOutputLimit) }}
		if p.set.OutputOverflow == capability.OverflowTruncate {
			w.onLimit = func() {} // the rest is counted, not kept
		}
		if dst == nil {
			w.dst = &w.buf
		}
		if i == 0 {
			p.stdout = w
		} else {
			p.stderr = w
		}
		p.outWG.Add(1)
		go func() {
			defer p.outWG.Done()
			io.Copy(w, pr)
			pr.Close()
		}()
	}
	return out, nil
}

func passThroughStdin(in *os.File) (*os.File, bool, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(in.Fd()), &st); err != nil {
		return nil, false, err
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		f, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", in.Fd()), os.O_RDONLY, 0)
		return f, err == nil, err
	case unix.S_IFIFO:
		fd, err := unix.FcntlInt(in.Fd(), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return nil, false, err
		}
		return os.NewFile(uintptr(fd), "stdin"), true, nil
	}
	return nil, false, nil
}

// capWriter passes through at most limit bytes and counts the rest.
type capWriter struct {
	dst       io.Writer
	buf       bytes.Buffer
	limit     int64
	n         int64
	truncated bool
	onLimit   func()
}

func (w *capWriter) Write(b []byte) (int, error) {
	w.n += int64(len(b))
	room := w.limit - (w.n - int64(len(b)))
	if room < 0 {
		room = 0
	}
	if int64(len(b)) > room {
		if !w.truncated {
			w.truncated = true
			w.onLimit()
		}
		if room > 0 {
			w.dst.Write(b[:room])
		}
		return len(b), nil
	}
	if _, err := w.dst.Write(b); err != nil {
		return len(b), nil // a failing caller writer must not stall the tool
	}
	return len(b), nil
}
