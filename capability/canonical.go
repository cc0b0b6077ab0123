package capability

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sort"
)

// Schema names the layout of the canonical document. It is part of the
// document, so a change of schema changes every hash.
const Schema = "toolcell.policy/v1"

// canonicalSet is the canonical document. Every field of the first schema
// is always present, so an absent field and a default one cannot differ;
// fields added later are omitted when empty, which is their default, so
// the hashes of policies that do not use them stay the same.
//
// Its keys are frozen with Schema: two of them still spell the names the
// manifest keys had in v1 (connect for egress, connect_allow_ranges for
// egress_allow), since renaming them would change every hash. The
// canonical document is a hash input, not a manifest (it has a schema key
// no manifest may have).
type canonicalSet struct {
	Schema         string            `json:"schema"`
	Name           string            `json:"name"`
	Base           bool              `json:"base"`
	ReadFiles      []string          `json:"read_files"`
	ReadDirs       []string          `json:"read_dirs"`
	WriteFiles     []string          `json:"write_files"`
	WriteDirs      []string          `json:"write_dirs"`
	Exec           []string          `json:"exec"`
	Workdir        string            `json:"workdir"`
	ExecDirs       []string          `json:"exec_dirs,omitempty"`       // omitted when empty: older hashes stay valid
	FollowSymlinks []string          `json:"follow_symlinks,omitempty"` // omitted when empty: older hashes stay valid
	WorkdirExec    bool              `json:"workdir_exec,omitempty"`    // omitted when false: older hashes stay valid
	Tmp            Size              `json:"tmp"`
	Env            map[string]string `json:"env"`
	Memory         Size              `json:"memory"`
	Pids           int64             `json:"pids"`
	CPU            float64           `json:"cpu"`
	Timeout        Duration          `json:"timeout"`
	MaxOutput      Size              `json:"max_output"`
	OutputOverflow string            `json:"output_overflow,omitempty"` // omitted when kill: older hashes stay valid
	MaxFileSize    Size              `json:"max_file_size"`
	Syscalls       []string          `json:"syscalls"`
	Egress         []string          `json:"connect"`                        // the v1 name of egress: hashes stay valid
	EgressAllow    []string          `json:"connect_allow_ranges,omitempty"` // the v1 name of egress_allow
	HTTPAPI        []HTTPAPI         `json:"http_api,omitempty"`             // omitted when empty: older hashes stay valid
	// Omitted at their defaults: older hashes stay valid, and a zero limit
	// and the explicit default still encode the same.
	InotifyInstances int64 `json:"inotify_instances,omitempty"`
	InotifyWatches   int64 `json:"inotify_watches,omitempty"`
}

// sortedAPIs orders API grants by host (validation keeps hosts unique).
func sortedAPIs(l []HTTPAPI) []HTTPAPI {
	out := append([]HTTPAPI(nil), l...)
	sort.Slice(out, func(i, j int) bool { return out[i].Host < out[j].Host })
	return out
}

func sortedUnique(l []string) []string {
	out := append([]string{}, l...)
	sort.Strings(out)
	k := 0
	for i, v := range out {
		if i == 0 || v != out[i-1] {
			out[k] = v
			k++
		}
	}
	return out[:k]
}

// Canonical returns the canonical encoding of s: compact JSON with a fixed
// key order, the schema string Schema, path lists sorted, env keys
// sorted, every limit with its default applied (so a zero limit and the
// explicit default encode the same), sizes as integers of bytes, the
// timeout as a Go duration string, and no HTML escaping.
//
// Canonical makes every check of Validate that does not touch the file
// system and fails if one fails; it never touches the file system itself,
// so the same policy has the same canonical form on every host. The form
// includes env values, which may be secrets: do not log it.
func (s *Set) Canonical() ([]byte, error) {
	if err := s.checkStaticErr(); err != nil {
		return nil, err
	}
	sorted := func(p []string) []string {
		out := append([]string{}, p...)
		sort.Strings(out)
		return out
	}
	env := map[string]string{}
	for k, v := range s.Env {
		env[k] = v
	}
	c := canonicalSet{
		Schema:         Schema,
		Name:           s.Name,
		Base:           s.Base,
		ReadFiles:      sorted(s.ReadFiles),
		ReadDirs:       sorted(s.ReadDirs),
		WriteFiles:     sorted(s.WriteFiles),
		WriteDirs:      sorted(s.WriteDirs),
		Exec:           sorted(s.Exec),
		Workdir:        s.Workdir,
		ExecDirs:       sortedUnique(s.ExecDirs),
		FollowSymlinks: sortedUnique(s.FollowSymlinks),
		WorkdirExec:    s.WorkdirExec,
		Tmp:            s.TmpOrDefault(),
		Env:            env,
		Memory:         s.MemoryOrDefault(),
		Pids:           s.PidsOrDefault(),
		CPU:            s.CPUOrDefault(),
		Timeout:        Duration(s.TimeoutOrDefault()),
		MaxOutput:      s.MaxOutputOrDefault(),
		OutputOverflow: overflow(s.OutputOverflow),
		MaxFileSize:    s.MaxFileSizeOrDefault(),
		Syscalls:       s.SyscallsOrDefault(),
		Egress:         sortedUnique(s.Egress),
		EgressAllow:    sortedUnique(s.EgressAllow),
		HTTPAPI:        sortedAPIs(s.HTTPAPI),
	}
	if n := s.InotifyInstancesOrDefault(); n != DefaultInotifyInstances {
		c.InotifyInstances = n
	}
	if n := s.InotifyWatchesOrDefault(); n != DefaultInotifyWatches {
		c.InotifyWatches = n
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(c); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// Hash returns "sha256:" followed by the lowercase hex SHA-256 of
// Canonical(). It names the policy in the audit record: two Sets have the
// same hash exactly when they grant the same things with the same limits,
// however they were written (builder, struct literal or manifest, in any
// order, with defaults implicit or explicit). The hash is stable across
// versions of this package for as long as Schema does not change. Like
// Canonical, Hash does not touch the file system.
func (s *Set) Hash() (string, error) {
	b, err := s.Canonical()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// overflow is the canonical OutputOverflow: "" for the default, kill.
func overflow(m string) string {
	if m == OverflowKill {
		return ""
	}
	return m
}
