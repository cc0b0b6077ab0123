package sandbox

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/toolcell/toolcell/audit"
)

// PoolOptions configures a Pool.
type PoolOptions struct {
	// Size is how many ready sandboxes the pool keeps; at least 1.
	Size int
	// MaxIdle, when non-zero, is how long a ready sandbox may wait for a
	// run: an older one is ended and replaced rather than used.
	MaxIdle time.Duration
}

// Pool keeps sandboxes of one Plan built ahead, so that a run only sends
// its command: the namespaces, the view, the cgroup (joined, so the cost of
// moving a process into it is off the run), the egress listeners, the
// temporary workdir and the privilege drop are done before the run asks,
// and its pid 1 waits for the command. Each sandbox serves exactly one run
// and is replaced in the background. A sandbox whose stage-2 died, that
// reported an error while it waited, or that was built under host
// credentials other than the current ones (see hostCreds) is ended, never
// handed out; when none is ready, the run builds its own (cold). The
// record's pool field says which, and how long a warm sandbox had waited.
//
// A ready sandbox holds what a running one does (a process tree, a cgroup,
// a host uid as root, a temporary workdir) but no Runner.MaxConcurrent
// slot: a run takes its slot when it starts, warm or cold. Building ahead
// costs what a run's setup costs, in the background. A sandbox that failed
// to build is logged (Runner.Logger) and produces no record: nothing ran.
// The next Start builds cold, reporting the error with its record, and
// asks for a replacement again.
//
// A warm run gets what was true when its sandbox was built: the grants as
// they were resolved and opened then (and checked for set-ID files), the
// HTTP API secrets as SecretSource answered then (with the pool's
// context, not the run's), the Runner's fields as they were then.
// PoolOptions.MaxIdle bounds how old that may be; rotate a secret or
// change a Runner field, and Close the pool and make a new one.
type Pool struct {
	pl   *Plan
	opts PoolOptions

	ctx    context.Context // ends the builds when the pool closes
	cancel context.CancelFunc

	mu       sync.Mutex
	ready    []*Process // built, oldest first
	building int        // builds in progress
	closed   bool
	lastErr  error          // the last build's error, until a build succeeds
	changed  chan struct{}  // closed and replaced when ready or lastErr changes
	builds   sync.WaitGroup // builds, and discards of unusable sandboxes
}

// NewPool starts building opts.Size sandboxes of pl and returns at once.
func NewPool(pl *Plan, opts PoolOptions) (*Pool, error) {
	if pl == nil {
		return nil, fmt.Errorf("%w: nil plan", ErrPolicy)
	}
	if opts.Size < 1 {
		return nil, fmt.Errorf("%w: pool size %d, want at least 1", ErrPolicy, opts.Size)
	}
	if opts.MaxIdle < 0 {
		return nil, fmt.Errorf("%w: pool max idle %v is negative", ErrPolicy, opts.MaxIdle)
	}
	ctx, cancel := context.WithCancel(context.Background())
	po := &Pool{pl: pl, opts: opts, ctx: ctx, cancel: cancel, changed: make(chan struct{})}
	po.mu.Lock()
	po.fill()
	po.mu.Unlock()
	return po, nil
}

// ErrPoolClosed is returned by Start on a closed Pool.
var ErrPoolClosed = errors.New("sandbox: pool closed")

// Run runs cmd in a sandbox of the pool and waits for it; see Runner.Run.
func (po *Pool) Run(ctx context.Context, cmd *Cmd) (*Result, error) {
	p, err := po.Start(ctx, cmd)
	if err != nil {
		return nil, err
	}
	return p.Wait()
}

// Start starts cmd in a ready sandbox of the pool, or in a new one when
// none is ready, and returns at once; see Runner.Start.
func (po *Pool) Start(ctx context.Context, cmd *Cmd) (*Process, error) {
	r := po.pl.r
	po.mu.Lock()
	closed := po.closed
	po.mu.Unlock()
	if closed {
		return nil, ErrPoolClosed
	}
	release, err := r.acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("sandbox: waiting for a run slot (Runner.MaxConcurrent %d): %w", r.MaxConcurrent, err)
	}
	p, waited := po.take()
	if p == nil {
		p = newProcess(ctx, r, po.pl, cmd)
		p.release = release
		p.rec.Pool = &audit.PoolInfo{State: audit.PoolCold}
		if err := p.setup(); err != nil {
			return nil, p.failed(err)
		}
		return p, nil
	}
	// The run starts now: its record, timer and context are the caller's.
	p.ctx, p.release, p.start = ctx, release, time.Now()
	p.rec.StartedAt = p.start.UTC()
	p.rec.Pool = &audit.PoolInfo{State: audit.PoolWarm, WaitedMS: ms(waited)}
	p.setCommand(cmd)
	if err := p.checkCommand(); err != nil {
		return nil, p.failed(err)
	}
	if err := p.launch(); err != nil {
		return nil, p.failed(err)
	}
	return p, nil
}

// WaitReady waits until the pool holds Size ready sandboxes, as after
// NewPool, so that the next runs are warm. It returns the error of a build
// that failed meanwhile, ErrPoolClosed, or ctx's error.
func (po *Pool) WaitReady(ctx context.Context) error {
	for {
		po.mu.Lock()
		n, err, ch, closed := len(po.ready), po.lastErr, po.changed, po.closed
		po.mu.Unlock()
		switch {
		case closed:
			return ErrPoolClosed
		case n >= po.opts.Size:
			return nil
		case err != nil:
			return err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// take hands out the oldest usable ready sandbox, ending the unusable
// ones, and asks for replacements.
func (po *Pool) take() (*Process, time.Duration) {
	po.mu.Lock()
	defer po.mu.Unlock()
	defer po.fill()
	creds := hostCreds()
	for len(po.ready) > 0 {
		p := po.ready[0]
		po.ready = po.ready[1:]
		waited := time.Since(p.readyAt)
		if why := p.stale(creds); why == "" && (po.opts.MaxIdle == 0 || waited <= po.opts.MaxIdle) {
			return p, waited
		} else if why != "" {
			p.log("pool: ready sandbox not used", "why", why)
		}
		// Ended in the background; Close waits for it.
		po.builds.Add(1)
		go func() {
			defer po.builds.Done()
			p.discard()
		}()
	}
	return nil, 0
}

// fill starts builds until Size sandboxes are ready or being built; po.mu
// is held.
func (po *Pool) fill() {
	for !po.closed && len(po.ready)+po.building < po.opts.Size {
		po.building++
		po.builds.Add(1)
		go po.build()
	}
}

// build makes one ready sandbox.
func (po *Pool) build() {
	defer po.builds.Done()
	p := newProcess(po.ctx, po.pl.r, po.pl, nil)
	p.creds, p.pooled = hostCreds(), true
	err := p.prepare()
	if err == nil {
		err = p.awaitSockets()
	}
	if err == nil {
		err = p.awaitReady()
	}
	// Everything the build did depends on the host process's credentials
	// (leased ids or not, the grants opened, the stage-2 taken): a change
	// and change back while it ran is caught here, not only a change
	// before the run.
	if err == nil && hostCreds() != p.creds {
		err = fmt.Errorf("%w: the host process's credentials changed while a pooled sandbox was built", ErrSetup)
	}
	po.mu.Lock()
	po.building--
	po.lastErr = err
	close(po.changed)
	po.changed = make(chan struct{})
	if err == nil && !po.closed {
		p.readyAt = time.Now()
		po.ready = append(po.ready, p)
		po.mu.Unlock()
		return
	}
	po.mu.Unlock()
	if err != nil && po.pl.r.Logger != nil {
		po.pl.r.Logger.Warn("toolcell pool: building a sandbox failed", "err", err)
	}
	p.discard()
}

// stale says why a ready sandbox must not be used, or "".
func (p *Process) stale(creds string) string {
	if p.stage2 == nil || p.stage2.gone() {
		return "its stage-2 is gone"
	}
	if p.creds != creds {
		return "the host process's credentials changed"
	}
	// Nothing comes from a waiting sandbox but an error or its end.
	select {
	case m, ok := <-p.msgs:
		closeFDs(m.fds)
		if !ok {
			return "its control socket closed"
		}
		if m.err != nil {
			return m.err.Error()
		}
		return fmt.Sprintf("it sent message %d while it waited", m.typ)
	default:
	}
	return ""
}

// discard ends a sandbox that never ran a command: nothing of it is left,
// and no record goes out.
func (p *Process) discard() {
	p.discarding = true // off no run's path: Pool.Close waits for all of it
	p.teardown()
	p.endTempWorkdir(false)
}

// Close ends the pool's ready sandboxes and the builds in progress, and
// waits until nothing of them is left. Runs already started go on. Start
// after Close returns ErrPoolClosed.
func (po *Pool) Close() error {
	po.mu.Lock()
	if po.closed {
		po.mu.Unlock()
		return nil
	}
	po.closed = true
	ready := po.ready
	po.ready = nil
	po.mu.Unlock()
	po.cancel()
	po.builds.Wait()
	for _, p := range ready {
		p.discard()
	}
	return nil
}
