// The run's cgroup, made concurrently with the rest of the setup.

package sandbox

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/toolcell/toolcell/audit"
	"github.com/toolcell/toolcell/cgroup"
)

// joinCgroupSetup waits for the cgroup made concurrently with the setup.
func (p *Process) joinCgroupSetup() error {
	if p.cgDone == nil {
		return nil
	}
	r := <-p.cgDone
	p.cgDone = nil
	if r.cg != nil {
		p.cg = r.cg
		p.rec.Enforcement.Cgroup = r.info
	}
	if r.degraded != "" {
		p.rec.Enforcement.Degraded = append(p.rec.Enforcement.Degraded, r.degraded)
	}
	return r.err
}

// cgResult is a cgroup made concurrently with the rest of the setup; it
// reaches the record in joinCgroupSetup.
type cgResult struct {
	cg       *cgroup.Cgroup
	info     audit.CgroupInfo
	degraded string
	err      error
}

func (p *Process) makeCgroup() cgResult {
	lim := cgroup.Limits{MemoryBytes: int64(p.set.MemoryOrDefault()), Pids: p.set.PidsOrDefault(), CPU: p.set.CPUOrDefault()}
	cg, err := cgroup.New(p.r.Cgroup, "toolcell-"+p.rec.ID, lim)
	if err != nil {
		if p.r.AllowNoCgroup {
			return cgResult{degraded: "cgroup: no limits on memory, pids, cpu (" + strings.TrimPrefix(err.Error(), "cgroup: ") + ")"}
		}
		return cgResult{err: fmt.Errorf("%w: %w", ErrUnsupported, err)} // err says "cgroup: ..."
	}
	return cgResult{cg: cg, info: audit.CgroupInfo{Version: cg.Version().String(), Path: cg.Path(), Limits: map[string]string{
		"memory_bytes": strconv.FormatInt(lim.MemoryBytes, 10),
		"swap_bytes":   "0",
		"pids":         strconv.FormatInt(lim.Pids, 10),
		"cpu":          strconv.FormatFloat(lim.CPU, 'f', -1, 64),
	}}}
}
