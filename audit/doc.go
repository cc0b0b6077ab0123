// Package audit is the audit record of a toolcell run: the Go types, their
// JSON form (schema "toolcell.audit/v1", the constant Schema), the JSON
// Schema of that form (JSONSchema, the file record.schema.json), and the
// pure functions of a record (Compact, CompactedHash, Notable, LogValue).
// It imports the standard library only and builds with CGO_ENABLED=0, so
// log pipelines and dashboards can parse records without building the
// sandbox (package sandbox, which needs cgo and libseccomp, produces
// them; its sinks write them).
//
// One record is written for every run, a run whose sandbox could not be
// set up included. Records are plain data: decode them with encoding/json
// into a Record, or validate the JSON against JSONSchema.
//
// # Versioning
//
// Record.Schema is "toolcell.audit/v1". Within v1 a field is never removed
// or given another meaning, and a value listed below (a Reason, a Limit, a
// NetEvent kind) never changes; a new optional field or value may appear.
// Anything else is a new version.
//
// # Conventions
//
// Times are RFC 3339 in UTC with up to nanoseconds ("2025-03-04T05:06:07.891Z").
// Durations are milliseconds as fractional numbers (_ms). CPU time is
// microseconds (_us); sizes are bytes. A field tagged omitempty is absent
// when empty; any other field is always present. A list without omitempty
// is [] when empty, except where it says it may be null.
//
// # Fields
//
// The top level (Record):
//
//	schema           "toolcell.audit/v1"
//	id               the run's random id, 16 hex digits; also the cgroup's name (toolcell-<id>)
//	tool             Cmd.Tool, else the base name of the command's path
//	policy           hash: "sha256:<hex>" of the capability set's canonical form; "" only when
//	                 setup failed before it was computed. name: the set's Name (omitted if none)
//	command          path and args as given (args[0] is the program), cwd inside the sandbox,
//	                 env_names: the names of the variables the tool got, sorted (never values)
//	started_at       when the run was asked for (Runner.Start, Plan.Start, Pool.Start)
//	ended_at         when the run was over: the tool ended and the sandbox was torn down
//	duration_ms      ended_at - started_at
//	setup_ms         from started_at until the tool was started (0 when setup failed)
//	exit             how the run ended (below)
//	resources        read from the run's cgroup after the tool ended (below)
//	output           what the tool wrote (below)
//	enforcement      what the kernel was asked to enforce and reported back (below)
//	denials          denied syscall attempts (below); [] when none
//	denials_dropped  attempts counted in an overflow entry of denials rather than itemised
//	network          network attempts (below); [] when none or no egress was granted
//	network_dropped  attempts not itemised because their class's quota was full
//	temp_workdir     host path of the temporary workdir, removed after the run (omitted if none)
//	pool             runs through a sandbox.Pool only: state "warm" (the run took a sandbox
//	                 built ahead; waited_ms is how long it had been ready before the run)
//	                 or "cold" (none was ready: the run built its own); omitted otherwise
//	error            why setup failed (reason setup_failed only; omitted otherwise)
//
// exit (Exit): reason is exactly one Reason; code is the tool's exit
// status (0-255), -1 when it did not exit by itself, 127 when it could not
// be executed inside a complete sandbox; signal names the signal that
// killed it ("SIGKILL"; omitted when none); limits_hit lists every Limit
// the run ran into, whatever the exit status says ([] when none): a child
// killed for memory under a shell that exited 0 still shows.
//
//	reason        meaning
//	exited        the tool exited by itself; see code
//	signaled      the tool died of a signal it got inside
//	timeout       the wall-clock limit killed the sandbox
//	oom           the memory limit killed the tool (any OOM kill in a run that did not succeed)
//	output_limit  an output stream passed max_output (with output_overflow kill)
//	setup_failed  the sandbox was never complete; nothing ran; see error
//	canceled      the caller's context ended the run
//	seccomp_kill  the tool died of SIGSYS: the filter killed a foreign syscall ABI (int 0x80, x32)
//
//	limit          evidence
//	memory         the cgroup's OOM killer killed a process (oom_kill)
//	pids           a fork was refused by the pids limit (pids.events max)
//	cpu_throttled  the cpu limit throttled the run (cpu.stat nr_throttled); not notable alone
//	file_size      the tool died of SIGXFSZ (RLIMIT_FSIZE)
//	output         an output stream passed max_output
//	timeout        the wall-clock limit ended the run
//
// resources (Resources): cpu_user_us, cpu_system_us (microseconds),
// memory_peak_bytes, pids_peak, oom_kills, pids_max_events (forks the
// pids limit refused), cpu_throttled (periods throttled); all 0 when setup
// failed. notes says what could not be read (omitted when all was).
//
// output (Output): stdout_bytes and stderr_bytes count everything the tool
// wrote, including what was cut off; *_truncated says the stream passed
// the cap.
//
// enforcement (Enforcement), read from the running sandbox's pid 1 where
// it says so; after a setup failure only what was reached is filled:
//
//	namespaces    the namespaces pid 1 has of its own, confirmed by the kernel: user, mnt, net,
//	              pid, ipc, uts, cgroup (omitted when none could be confirmed)
//	uid_map       pid 1's /proc uid_map, fields single-spaced ("1000 1879048192 1"); "" if unread
//	gid_map       the same for gids
//	mounts        the view, one MountInfo each: dst inside, src on the host or "tmpfs(...)",
//	              "proc", "generated", "mask"; mode the mount flags ("ro,nosuid,nodev,noexec")
//	              or "absent"; idmap the host owner of an idmapped writable grant
//	seccomp       the filter: default, denied and foreign-arch actions, the syscall groups and
//	              their version, the allowed syscalls, arches, filter_hash (the sha256 of the
//	              program, hex; "" when setup failed before it was built), memfd_create (the
//	              condition put on it where vm.memfd_noexec could not be set), inspected (the
//	              syscalls the supervisor decides on by argument)
//	cgroup        version ("v1", "v2"), path, limits (memory_bytes, swap_bytes, pids, cpu ...)
//	              join: how pid 1 came into it, "cgroup.procs" (v1: the stage-2 wrote itself
//	              there) or "clone_into_cgroup" (v2: the stage-2 forked itself into it)
//	no_new_privs  pid 1's NoNewPrivs
//	capabilities  capabilities pid 1 holds in any set ([] normally; null when pid 1 was gone
//	              before it was read)
//	cap_sets      pid 1's CapInh, CapPrm, CapEff, CapBnd, CapAmb in hex
//	degraded      protections the Runner allowed the run without, one sentence each; [] normally
//	rlimits       pid 1's core, nofile, fsize as "soft/hard" ("unlimited" spelled out)
//	memfd_noexec  vm.memfd_noexec of the sandbox's pid namespace (2: no executable memfd);
//	              null when the kernel has no such setting (before Linux 6.3)
//	landlock      the Landlock ruleset the tool restricted itself to (LandlockInfo): the kernel's
//	              abi, the applied_abi, the rights handled (fs, net, scope), the rights missing
//	              from this ABI, the path rules and the TCP port rules; handled's lists and
//	              missing may be null when empty; omitted when the run had no Landlock
//	user_limits   per-user-namespace limits pid 1 set (/proc/sys/user/<name>), read back
//	egress        present when the policy grants network endpoints (EgressInfo): the grants,
//	              the dns address, the relay's listeners inside the sandbox, hosts (exact names
//	              -> synthetic addresses), allow (ranges exempt from the address checks),
//	              http_api (APIInfo: host, upstream, header, secret reference) and the caps
//	notes         where evidence could not be read (the enforcement is unaffected)
//	compacted     only in a compact record (Record.Compact): the fields left out, and the
//	              sha256 that ties them to a full record (Record.CompactedHash)
//
// denials (Denial): one entry per kind of denied syscall attempt, answered
// EPERM by the supervisor (SECCOMP_RET_USER_NOTIF), deduplicated by
// syscall and decoded arguments: syscall, nr and arch, args (the six raw
// arguments of the first attempt, hex), detail (decoded arguments, e.g.
// target="/mnt"), process (the caller's comm), answer ("EPERM"), count,
// first_at and last_at. At most 128 entries are itemised by argument;
// past that each syscall gets one more entry whose detail is "<further
// attempts, arguments not itemised>", and denials_dropped counts the
// attempts those entries hold.
//
// network (NetEvent): one entry per network attempt the egress relay saw.
// kind is "dns" (a query to toolcell's DNS), "connect" (a TCP connection,
// or a UDP datagram with protocol "udp") or "http" (an HTTP API call the
// supervisor made). name is the name asked for or connected to ("" when
// unknown); type the DNS query type; port and dst the port and address
// connected to inside the sandbox; ip the upstream address dialed or the
// one refused; protocol "tls", "http", "tcp" or "udp" from the first
// bytes; sni the TLS server name; allowed; reason why it was refused or
// cut ("not granted", "sni mismatch: ...", "cap reached: bytes"); method,
// path, status and secret (the reference) of an API call; requests the
// request heads relayed on a plain HTTP connection; bytes_out (tool to
// upstream) and bytes_in; duration_ms of a connection; count; at. Refusals
// and DNS answers that repeat are one entry with a count; allowed
// connections are one entry each. An entry that only counts dropped
// attempts has the zero time in at.
//
// # Notable and compact records
//
// Notable says whether a run deserves attention: a limit hit other than
// cpu_throttled, a denial, a refused network attempt, a degradation, or a
// setup failure. LogValue is the record's summary for log/slog. Compact
// makes the record of a busy log, about 1 KB, by replacing the enforcement
// details that follow from the policy and the host with their hash.
package audit
