package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
)

// Compact returns a copy of r for a busy log, about 1 KB: the enforcement
// details that follow from the policy and the host (namespaces, the mount
// list, the seccomp filter's description, Landlock, the capability sets,
// the cgroup's limits, rlimits, user-namespace limits) are replaced by the
// sha256 of their JSON in the full record, listed in
// Enforcement.Compacted by field name; the seccomp filter's hash, the id
// maps, the cgroup's path and what was degraded stay. What the run did
// (exit, resources, output, denials, network) stays whole. A full record
// of the same policy on the same host has the same hashes (but for the
// mounts of a temporary workdir, whose path differs), so one full record
// vouches for many compact ones. r is unchanged.
func (r *Record) Compact() *Record {
	c := *r
	e := &c.Enforcement
	e.Compacted = &Compacted{Fields: compactedFields, SHA256: r.CompactedHash()}
	e.Namespaces, e.Mounts, e.CapSets, e.Rlimits, e.UserLimits, e.Landlock = nil, nil, nil, nil, nil, nil
	e.Seccomp = SeccompInfo{FilterHash: e.Seccomp.FilterHash, GroupsVersion: e.Seccomp.GroupsVersion}
	e.Cgroup.Limits = nil
	return &c
}

// Compacted says what Record.Compact left out: the fields, and the
// sha256 of the JSON object holding them as the full record has them, in
// this order, under these names.
type Compacted struct {
	Fields []string `json:"fields"`
	SHA256 string   `json:"sha256"`
}

var compactedFields = []string{"namespaces", "mounts", "seccomp", "landlock", "cap_sets", "cgroup.limits", "rlimits", "user_limits"}

// policyDerived is the object Compacted.SHA256 hashes.
type policyDerived struct {
	Namespaces   []string          `json:"namespaces"`
	Mounts       []MountInfo       `json:"mounts"`
	Seccomp      SeccompInfo       `json:"seccomp"`
	Landlock     *LandlockInfo     `json:"landlock"`
	CapSets      map[string]string `json:"cap_sets"`
	CgroupLimits map[string]string `json:"cgroup.limits"`
	Rlimits      map[string]string `json:"rlimits"`
	UserLimits   map[string]int64  `json:"user_limits"`
}

// CompactedHash is the sha256 Compact puts in Compacted for a full record
// r: compare it with a compact record's to tie the two together.
func (r *Record) CompactedHash() string {
	e := &r.Enforcement
	b, err := json.Marshal(policyDerived{Namespaces: e.Namespaces, Mounts: e.Mounts, Seccomp: e.Seccomp, Landlock: e.Landlock,
		CapSets: e.CapSets, CgroupLimits: e.Cgroup.Limits, Rlimits: e.Rlimits, UserLimits: e.UserLimits})
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}
