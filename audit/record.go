package audit

import "time"

// Schema names the version of the record's JSON shape, the value of
// Record.Schema. A change that removes or redefines a field changes it;
// new optional fields do not.
const Schema = "toolcell.audit/v1"

// Reason says how a run ended (Exit.Reason): exactly one per run.
type Reason string

// Exit reasons in Record.Exit.Reason.
const (
	ReasonExited      Reason = "exited"       // the tool exited by itself; see Code
	ReasonSignaled    Reason = "signaled"     // the tool died of a signal it got inside
	ReasonTimeout     Reason = "timeout"      // the wall-clock limit killed the sandbox
	ReasonOOM         Reason = "oom"          // the memory limit killed the tool
	ReasonOutputLimit Reason = "output_limit" // an output stream passed max_output
	ReasonSetupFailed Reason = "setup_failed" // the sandbox was never complete; nothing ran
	ReasonCanceled    Reason = "canceled"     // the caller's context ended the run
	// ReasonSeccompKill: the tool died of SIGSYS, which is what the filter's
	// KILL_PROCESS action (a foreign syscall ABI: int 0x80, x32) does. A
	// tool that sends itself SIGSYS looks the same.
	ReasonSeccompKill Reason = "seccomp_kill"
)

// Record is the audit record of one run: what was enforced, and what the
// tool did. One is produced for every run, setup failures included. It is
// plain data meant to be serialised as JSON (schema toolcell.audit/v1).
type Record struct {
	Schema      string      `json:"schema"`
	ID          string      `json:"id"`
	Tool        string      `json:"tool"`
	Policy      PolicyRef   `json:"policy"`
	Command     CommandRef  `json:"command"`
	StartedAt   time.Time   `json:"started_at"`
	EndedAt     time.Time   `json:"ended_at"`
	DurationMS  float64     `json:"duration_ms"`
	SetupMS     float64     `json:"setup_ms"`
	Exit        Exit        `json:"exit"`
	Resources   Resources   `json:"resources"`
	Output      Output      `json:"output"`
	Enforcement Enforcement `json:"enforcement"`
	Denials     []Denial    `json:"denials"`
	// DenialsDropped counts denied attempts not itemised in Denials because
	// it already held its maximum of distinct entries (128).
	DenialsDropped int64      `json:"denials_dropped"`
	Network        []NetEvent `json:"network"`
	// NetworkDropped counts network attempts not itemised in Network
	// because their class's quota was full (4096 allowed connections and
	// API calls, 512 distinct DNS answers, 512 names not granted, 128
	// distinct refusals of each other class); each class counts them in
	// one entry per kind.
	NetworkDropped int `json:"network_dropped"`
	// TempWorkdir is the host path of the run's temporary workdir (the
	// tool saw it at capability.TempWorkdirPath), removed after the run.
	TempWorkdir string `json:"temp_workdir,omitempty"`
	// Pool is present when the run was started through a Pool: whether
	// it took a sandbox built ahead.
	Pool  *PoolInfo `json:"pool,omitempty"`
	Error string    `json:"error,omitempty"`
}

// PolicyRef names the capability set by its canonical hash.
type PolicyRef struct {
	Hash string `json:"hash"`
	Name string `json:"name,omitempty"`
}

// CommandRef is the command as run. Environment values are never recorded.
type CommandRef struct {
	Path     string   `json:"path"`
	Args     []string `json:"args"`
	Cwd      string   `json:"cwd"`
	EnvNames []string `json:"env_names"`
}

// Exit says how the run ended.
type Exit struct {
	Reason Reason `json:"reason"`
	Code   int    `json:"code"`             // exit status, or -1
	Signal string `json:"signal,omitempty"` // e.g. "SIGKILL"
	// LimitsHit lists every limit the run ran into, whatever the exit
	// status says (a child killed for memory under a shell that exited 0
	// still shows): LimitMemory, LimitPids, LimitCPUThrottled,
	// LimitFileSize, LimitOutput, LimitTimeout. Empty when none.
	LimitsHit []Limit `json:"limits_hit"`
}

// Limit names a limit a run ran into (Exit.LimitsHit); a run may hit
// several.
type Limit string

// Limits in Exit.LimitsHit, and the evidence for each.
const (
	LimitMemory       Limit = "memory"        // the cgroup's OOM killer killed a process (oom_kill)
	LimitPids         Limit = "pids"          // a fork was refused by the pids limit (pids.events max)
	LimitCPUThrottled Limit = "cpu_throttled" // the cpu limit throttled the run (cpu.stat nr_throttled)
	LimitFileSize     Limit = "file_size"     // the tool died of SIGXFSZ (RLIMIT_FSIZE)
	LimitOutput       Limit = "output"        // an output stream passed max_output
	LimitTimeout      Limit = "timeout"       // the wall-clock limit ended the run
)

// Resources are read from the run's cgroup after the tool ended.
type Resources struct {
	CPUUserUS       uint64   `json:"cpu_user_us"`
	CPUSystemUS     uint64   `json:"cpu_system_us"`
	MemoryPeakBytes uint64   `json:"memory_peak_bytes"`
	PidsPeak        uint64   `json:"pids_peak"`
	OOMKills        uint64   `json:"oom_kills"`
	PidsMaxEvents   uint64   `json:"pids_max_events"` // forks the pids limit refused
	CPUThrottled    uint64   `json:"cpu_throttled"`   // periods the cpu limit throttled
	Notes           []string `json:"notes,omitempty"`
}

// Output counts what the tool wrote, including what the caps cut off.
type Output struct {
	StdoutBytes     int64 `json:"stdout_bytes"`
	StderrBytes     int64 `json:"stderr_bytes"`
	StdoutTruncated bool  `json:"stdout_truncated"`
	StderrTruncated bool  `json:"stderr_truncated"`
}

// Enforcement is what the kernel was asked to enforce, and what it reported
// back from the running sandbox (read from /proc of the sandbox's pid 1).
type Enforcement struct {
	Namespaces   []string          `json:"namespaces,omitempty"`
	UIDMap       string            `json:"uid_map"`
	GIDMap       string            `json:"gid_map"`
	Mounts       []MountInfo       `json:"mounts,omitempty"`
	Seccomp      SeccompInfo       `json:"seccomp"`
	Cgroup       CgroupInfo        `json:"cgroup"`
	NoNewPrivs   bool              `json:"no_new_privs"`
	Capabilities []string          `json:"capabilities"`
	CapSets      map[string]string `json:"cap_sets,omitempty"`
	Degraded     []string          `json:"degraded"`
	// Rlimits are pid 1's resource limits as the kernel reports them
	// (/proc/<pid 1>/limits; the tool inherits them): "core", "nofile",
	// "fsize" -> "soft/hard", "unlimited" spelled out.
	Rlimits map[string]string `json:"rlimits,omitempty"`
	// MemfdNoexec is vm.memfd_noexec of the sandbox's pid namespace as its
	// pid 1 read it back once it was set (no process left in the
	// sandbox may change it): 2 means no memfd can be executed
	// (memfd_create refuses MFD_EXEC and seals every memfd non-executable).
	// Where the sandbox cannot set it (rootless), it is the inherited value
	// and the seccomp filter enforces the same: see Seccomp.MemfdCreate.
	// Null when the kernel has no such setting (before Linux 6.3).
	MemfdNoexec *int `json:"memfd_noexec"`

	// Landlock is what the tool restricted itself to with Landlock, a
	// second file-system barrier beside the view; absent only when the
	// Runner allowed a run without it (see Degraded).
	Landlock *LandlockInfo `json:"landlock,omitempty"`

	// UserLimits are the per-user-namespace limits pid 1 set in the
	// sandbox's user namespace (/proc/sys/user/<name> there, each read back
	// after the write), on top of the host's limits for the run's uid.
	UserLimits map[string]int64 `json:"user_limits,omitempty"`
	// Egress is present when the policy grants network endpoints.
	Egress *EgressInfo `json:"egress,omitempty"`
	// Notes says where evidence could not be read (the enforcement itself
	// is unaffected); empty normally.
	Notes []string `json:"notes,omitempty"`
	// Compacted, in a record made by Record.Compact, names the fields left
	// out and the sha256 that ties them to a full record.
	Compacted *Compacted `json:"compacted,omitempty"`
}

// SeccompInfo describes the installed filter.
type SeccompInfo struct {
	DefaultAction     string   `json:"default_action,omitempty"`
	DeniedAction      string   `json:"denied_action,omitempty"`
	ForeignArchAction string   `json:"foreign_arch_action,omitempty"`
	Groups            []string `json:"groups,omitempty"`         // the syscall groups allowed
	GroupsVersion     string   `json:"groups_version,omitempty"` // version of the groups' content
	AllowedSyscalls   []string `json:"allowed_syscalls,omitempty"`
	Arches            []string `json:"arches,omitempty"`
	FilterHash        string   `json:"filter_hash"`
	// MemfdCreate is the condition the filter puts on memfd_create when
	// vm.memfd_noexec = 2 could not be set for the sandbox; empty otherwise.
	MemfdCreate string `json:"memfd_create,omitempty"`
	// Inspected lists the syscalls every call of which the filter sends to
	// the supervisor, which decides on its arguments: the set*id family
	// (ids other than the tool's own refused) and the setxattr family
	// (security.* and trusted.* names refused); refusals are denials, the
	// rest run.
	Inspected []string `json:"inspected,omitempty"`
}

// CgroupInfo describes the run's cgroup.
type CgroupInfo struct {
	Version string            `json:"version"`
	Path    string            `json:"path"`
	Limits  map[string]string `json:"limits,omitempty"`
	// Join says how pid 1 came into the cgroup: JoinCgroupProcs or
	// JoinCloneIntoCgroup. Omitted when no cgroup was made.
	Join string `json:"join,omitempty"`
}

// How pid 1 came into its cgroup, in CgroupInfo.Join.
const (
	// JoinCgroupProcs: the stage-2 wrote itself into cgroup.procs (each
	// v1 hierarchy) before it cloned pid 1.
	JoinCgroupProcs = "cgroup.procs"
	// JoinCloneIntoCgroup (v2): the stage-2 forked itself into the cgroup
	// with clone3(CLONE_INTO_CGROUP), then cloned pid 1 from there.
	JoinCloneIntoCgroup = "clone_into_cgroup"
)

// Denial is one kind of denied syscall attempt: the supervisor received it
// from the filter's listener (SECCOMP_RET_USER_NOTIF), answered EPERM, and
// counted every attempt with the same syscall and Detail.
type Denial struct {
	Syscall string    `json:"syscall"`
	Nr      int       `json:"nr"`
	Arch    string    `json:"arch"`
	Args    []string  `json:"args"`             // the six raw arguments of the first attempt
	Detail  string    `json:"detail,omitempty"` // decoded arguments, e.g. target="/mnt"
	Process string    `json:"process,omitempty"`
	Answer  string    `json:"answer"` // what the call returned: "EPERM"
	Count   int       `json:"count"`
	FirstAt time.Time `json:"first_at"`
	LastAt  time.Time `json:"last_at"`
}

// NetEvent is one network attempt, as the egress relay saw it: a DNS query
// (kind "dns") or a TCP connection the tool made (kind "connect").
// Refusals and DNS answers that repeat are one entry with a Count;
// allowed connections are one entry each.
type NetEvent struct {
	Kind     string `json:"kind"`
	Name     string `json:"name"`               // asked for, or connected to ("" if unknown)
	Type     string `json:"type,omitempty"`     // DNS query type: A, AAAA, TXT ...
	Port     int    `json:"port,omitempty"`     // the port connected to
	Dst      string `json:"dst,omitempty"`      // the address connected to, inside the sandbox
	IP       string `json:"ip,omitempty"`       // the upstream address dialed, or the one refused
	Protocol string `json:"protocol,omitempty"` // first bytes: tls, http or tcp
	SNI      string `json:"sni,omitempty"`      // server name of the TLS ClientHello
	Allowed  bool   `json:"allowed"`
	// Reason says why the attempt was refused ("not granted", "sni
	// mismatch: ...", "loopback address 127.0.0.1", "cap reached: ...") or
	// why an allowed connection was cut ("idle for 1m0s", "cap reached:
	// bytes").
	Reason string `json:"reason,omitempty"`
	// Method, Path and Status describe an HTTP API call (kind "http");
	// Secret is the reference of the secret the supervisor added.
	Method string `json:"method,omitempty"`
	Path   string `json:"path,omitempty"`
	Status int    `json:"status,omitempty"`
	Secret string `json:"secret,omitempty"`
	// Requests counts the request heads relayed on a plain HTTP
	// connection, each checked before it went (kind "connect").
	Requests   int       `json:"requests,omitempty"`
	BytesOut   int64     `json:"bytes_out"` // tool -> upstream
	BytesIn    int64     `json:"bytes_in"`  // upstream -> tool
	DurationMS float64   `json:"duration_ms,omitempty"`
	Count      int       `json:"count"`
	At         time.Time `json:"at"`
}

// APIInfo is an HTTP API call-through: what the tool calls, where the
// supervisor sends it, and which secret (by reference) it adds.
type APIInfo struct {
	Host     string `json:"host"`     // http://<host>/ inside the sandbox
	Upstream string `json:"upstream"` // https://<host>/
	Header   string `json:"header"`
	Secret   string `json:"secret"` // the reference; the value is never recorded
}

// EgressInfo is the network a run was given: toolcell's DNS, the relay's
// listeners inside the sandbox, and the addresses handed to exact names.
type EgressInfo struct {
	Grants    []string          `json:"grants"`
	DNS       string            `json:"dns"`             // what /etc/resolv.conf names
	Listeners []string          `json:"listeners"`       // sockets inside the sandbox, served from outside
	Hosts     map[string]string `json:"hosts"`           // exact names -> synthetic address (/etc/hosts)
	Allow     []string          `json:"allow,omitempty"` // ranges exempt from the address checks
	APIs      []APIInfo         `json:"http_api,omitempty"`
	Limits    map[string]string `json:"limits"`
}

// MountInfo is one mount of the view, as the audit record lists it.
type MountInfo struct {
	Dst  string `json:"dst"`
	Src  string `json:"src"`
	Mode string `json:"mode"`
	// IDMap is set on a writable grant's mount that the kernel reports
	// idmapped (pid 1's mountinfo): files of the owner it names show as
	// the sandbox user there, and what the tool creates belongs to it.
	IDMap *IDMap `json:"idmap,omitempty"`
}

// IDMap is the host owner an idmapped mount gives the sandbox user's files.
type IDMap struct {
	UID uint32 `json:"uid"` // host uid the sandbox's uid 1000 reads and writes as
	GID uint32 `json:"gid"` // host gid the sandbox's gid 1000 reads and writes as
}

// LandlockInfo is what the tool was restricted to by Landlock
// (enforcement.landlock).
type LandlockInfo struct {
	// ABI is the kernel's Landlock ABI version; Applied is the version
	// whose rights were used (the kernel's, at most the newest toolcell
	// knows).
	ABI     int `json:"abi"`
	Applied int `json:"applied_abi"`
	// Handled lists the rights the ruleset restricts: any of them not
	// given by a rule is refused (EACCES).
	Handled LandlockRights `json:"handled"`
	// Missing lists the rights toolcell would handle that this ABI lacks
	// (best effort beyond the minimum a run needs).
	Missing []string `json:"missing"`
	// Rules are the paths (inside the view) and what each allows beneath
	// it; Ports the TCP ports and what each allows.
	Rules []LandlockRule `json:"rules,omitempty"`
	Ports []LandlockPort `json:"ports"`
}

// LandlockRights are rights by kind, named as in linux/landlock.h without
// the prefix (LANDLOCK_ACCESS_FS_READ_FILE is "read_file").
type LandlockRights struct {
	FS    []string `json:"fs"`
	Net   []string `json:"net"`
	Scope []string `json:"scope"`
}

// LandlockRule is one path-beneath rule.
type LandlockRule struct {
	Path   string   `json:"path"`
	Access []string `json:"access"`
}

// LandlockPort is one TCP port rule.
type LandlockPort struct {
	Port   uint16   `json:"port"`
	Access []string `json:"access"`
}

// Pool states in PoolInfo.State.
const (
	PoolWarm = "warm" // the run took a sandbox built ahead
	PoolCold = "cold" // none was ready: the run built its own
)

// PoolInfo is present in the record of a run started through a
// sandbox.Pool.
type PoolInfo struct {
	State string `json:"state"`
	// WaitedMS is how long a warm sandbox had been ready (built, pid 1
	// waiting for the command) before the run took it.
	WaitedMS float64 `json:"waited_ms,omitempty"`
}
