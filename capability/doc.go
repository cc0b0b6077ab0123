// Package capability is toolcell's policy language: a Set says everything
// one tool invocation may do, and nothing outside it is possible inside the
// sandbox.
//
// # Nothing is granted by default
//
// The zero Set grants nothing: no host files, no network, no environment
// besides PATH, and the default limits (DefaultMemory, DefaultPids, ...).
// Every access is an explicit grant of a path, with the kind of access
// (read, write, exec, exec directories, working directory) spelled out. A zero limit means
// the documented default, never "unlimited"; no field can express
// "unlimited".
//
// # Syscalls
//
// Set.Syscalls (WithSyscalls) names the kinds of syscalls the tool may
// make besides the base set every program needs and exec: file_read,
// file_write, ioctl, ipc_local, process. It is the one grant whose empty
// value means "all kinds", because every kind is already confined by the
// rest of the policy (a file_write syscall can only touch a writable
// mount); listing kinds narrows the seccomp filter further, and the audit
// record shows each refused attempt. Always denied, whatever the grants,
// are the syscalls that reach past the sandbox: ptrace, bpf, the mount API,
// namespaces, module loading and the like (package seccomp lists them with
// their reasons).
//
// # Network
//
// Set.Egress (WithEgress, manifest key "egress") names the endpoints a tool
// may reach as "name:port" or "*.domain:port". Names are checked strictly
// (lower case, no IP literals, a wildcard only as the whole first label of
// a domain with two labels or more, a port from 1 to 65535). Package
// sandbox enforces them with its own DNS and a relay outside the sandbox
// (see its documentation); without any grant the sandbox has no network.
//
// # One policy, three spellings
//
// The builder (New().WithReadFiles(...).WithMemory(...)), a Set struct
// literal and a JSON or YAML manifest (ParseManifest, LoadManifest) are the
// same thing: the builder only appends to and assigns the exported fields,
// and a manifest's keys are those fields' json names. A policy written any
// of the three ways validates, hashes and is enforced identically.
//
// # One name per concept
//
// Each concept has one name, spelled by a fixed rule wherever it appears:
//
//   - the field is the name in Go case: MaxFileSize;
//   - the builder method is With and the field's name: WithMaxFileSize (a
//     list field's appends, Env's adds one variable, the others assign);
//   - a field with a default has an accessor, the field's name and
//     OrDefault, that returns the default where the field is zero:
//     MaxFileSizeOrDefault (the default is Default and the field's name,
//     the upper bound Max and the field's name: DefaultMaxFileSize,
//     MaxMaxFileSize; OutputOverflow defaults to OverflowKill and
//     Syscalls to AllSyscalls);
//   - the manifest key, and the field a *FieldError names, is the name in
//     snake case: max_file_size;
//   - the CLI flag (toolcell run, explain, mcp) is the name in kebab case:
//     --max-file-size. The path flags are the exception: --read, --write
//     and --exec take a file or a directory and fill the _files or _dirs
//     field (exec or exec_dirs) by what the path is on the host.
//
// The audit record uses the same names where it shows a policy field
// (enforcement.egress.grants and .allow are egress and egress_allow,
// enforcement.egress.http_api is http_api).
//
//	concept                 field / builder / default            manifest key       CLI flag
//	policy name             Name, WithName                       name               --name
//	system view             Base, WithBase                       base               --base
//	read-only files, dirs   ReadFiles, WithReadFiles             read_files         --read
//	                        ReadDirs, WithReadDirs               read_dirs          --read
//	read-write files, dirs  WriteFiles, WithWriteFiles           write_files        --write
//	                        WriteDirs, WithWriteDirs             write_dirs         --write
//	executable files, dirs  Exec, WithExec                       exec               --exec
//	                        ExecDirs, WithExecDirs               exec_dirs          --exec
//	working directory       Workdir, WithWorkdir                 workdir            --workdir
//	executable workdir      WorkdirExec, WithWorkdirExec         workdir_exec       --workdir-exec
//	symlinks followed       FollowSymlinks, WithFollowSymlinks   follow_symlinks    --follow-symlinks
//	/tmp size               Tmp, WithTmp, TmpOrDefault           tmp                --tmp
//	environment             Env, WithEnv                         env                --env
//	memory limit            Memory, WithMemory, MemoryOrDefault  memory             --memory
//	task limit              Pids, WithPids, PidsOrDefault        pids               --pids
//	CPU limit               CPU, WithCPU, CPUOrDefault           cpu                --cpu
//	wall-clock limit        Timeout, WithTimeout,                timeout            --timeout
//	                        TimeoutOrDefault
//	output cap              MaxOutput, WithMaxOutput,            max_output         --max-output
//	                        MaxOutputOrDefault
//	past the output cap     OutputOverflow, WithOutputOverflow,  output_overflow    --output-overflow
//	                        OutputOverflowOrDefault
//	file size cap           MaxFileSize, WithMaxFileSize,        max_file_size      --max-file-size
//	                        MaxFileSizeOrDefault
//	inotify instances       InotifyInstances,                    inotify_instances  --inotify-instances
//	                        WithInotifyInstances,
//	                        InotifyInstancesOrDefault
//	inotify watches         InotifyWatches, WithInotifyWatches,  inotify_watches    --inotify-watches
//	                        InotifyWatchesOrDefault
//	syscall kinds           Syscalls, WithSyscalls,              syscalls           --syscalls
//	                        SyscallsOrDefault
//	egress grants           Egress, WithEgress                   egress             --egress
//	egress address ranges   EgressAllow, WithEgressAllow         egress_allow       --egress-allow
//	HTTP API call-through   HTTPAPI, WithHTTPAPI                 http_api           --http-api
//
// Names of earlier versions are not aliases. A manifest with the key
// connect or connect_allow_ranges is refused with an error naming egress
// or egress_allow; the CLI refuses --connect, --allow-range and
// --allow-syscalls the same way, naming --egress, --egress-allow and
// --syscalls. Only the canonical document (Canonical) keeps the keys
// connect and connect_allow_ranges, because it is frozen with Schema: a
// policy's hash did not change with the names.
//
// # Validation fails closed
//
// Validate accepts a policy only when it can confirm every part of it:
// paths must be absolute, clean, exist with the expected type, pass no
// symbolic link unless FollowSymlinks lists them, and stay out of /,
// /proc, /sys and /dev, also after resolving symbolic links; limits
// must lie within the Min*/Max* bounds; env names must be valid. Anything
// else is an error, and all problems are reported together, each as a
// *FieldError naming the field and the value, and all matching ErrInvalid.
//
// # A policy never silently becomes weaker
//
// Nothing is clamped, normalized or guessed. A limit above its maximum is
// an error, not the maximum; a relative or unclean path is an error, not
// a resolved path; a path granted both read-only and read-write is an
// error, not whichever grant happens to win.
// Manifests are parsed strictly: an unknown or misspelled key, a duplicate
// key, a second YAML document, a bare number where a duration is expected
// (seconds or nanoseconds?) or a YAML scalar whose type would change its
// meaning (yes for true, 0755 for 493) is an error, so a typo cannot drop a
// restriction. A more specific grant inside a broader one (a writable
// directory under a read-only tree, a read-only file or an executable
// inside a writable tree) is mounted after the broader one and wins for its
// own path only.
//
// # The canonical form names the policy
//
// Canonical encodes a policy as JSON with sorted path lists and every
// default applied, and Hash digests it ("sha256:..."). Policies that grant
// the same things with the same limits have the same hash however they were
// written; any change to a grant, a limit, the name or the environment
// changes it. The sandbox records the hash in each audit record, so the
// record says exactly which policy a tool ran under. The canonical document
// carries the schema string Schema, so a change of its layout changes every
// hash instead of silently colliding with old ones. Canonical and Hash do
// not touch the file system.
package capability
