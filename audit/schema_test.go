package audit_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/toolcell/toolcell/audit"
	"github.com/toolcell/toolcell/internal/auditschema"
)

var at = time.Date(2025, 3, 4, 5, 6, 7, 891011000, time.UTC)

// full is a record with every field set, as a run with egress, denials
// and a limit hit has it.
func full() *audit.Record {
	two := 2
	return &audit.Record{
		Schema: audit.Schema, ID: "0123456789abcdef", Tool: "python",
		Policy:    audit.PolicyRef{Hash: "sha256:" + strings.Repeat("ab", 32), Name: "py"},
		Command:   audit.CommandRef{Path: "python3", Args: []string{"python3", "-c", "print(1)"}, Cwd: "/work", EnvNames: []string{"HOME", "PATH"}},
		StartedAt: at, EndedAt: at.Add(1500 * time.Millisecond), DurationMS: 1500.25, SetupMS: 3.5,
		Exit: audit.Exit{Reason: audit.ReasonOOM, Code: -1, Signal: "SIGKILL",
			LimitsHit: []audit.Limit{audit.LimitMemory, audit.LimitCPUThrottled}},
		Resources: audit.Resources{CPUUserUS: 1200, CPUSystemUS: 300, MemoryPeakBytes: 64 << 20, PidsPeak: 3,
			OOMKills: 1, PidsMaxEvents: 0, CPUThrottled: 7, Notes: []string{"stats: partial"}},
		Output: audit.Output{StdoutBytes: 10, StderrBytes: 0, StdoutTruncated: false, StderrTruncated: false},
		Enforcement: audit.Enforcement{
			Namespaces: []string{"user", "mnt", "net", "pid", "ipc", "uts", "cgroup"},
			UIDMap:     "1000 1879048192 1", GIDMap: "1000 1879048192 1",
			Mounts: []audit.MountInfo{{Dst: "/", Src: "tmpfs", Mode: "ro"},
				{Dst: "/work", Src: "/home/u/work", Mode: "rw,nosuid,nodev,noexec", IDMap: &audit.IDMap{UID: 1000, GID: 1000}}},
			Seccomp: audit.SeccompInfo{DefaultAction: "errno(ENOSYS)", DeniedAction: "user_notif", ForeignArchAction: "kill_process",
				Groups: []string{"base", "network"}, GroupsVersion: "7", AllowedSyscalls: []string{"read", "write"},
				Arches: []string{"x86_64"}, FilterHash: "sha256:" + strings.Repeat("cd", 32),
				MemfdCreate: "flags & MFD_NOEXEC_SEAL", Inspected: []string{"setuid", "setxattr"}},
			Cgroup:     audit.CgroupInfo{Version: "v2", Path: "/sys/fs/cgroup/toolcell/run-1", Limits: map[string]string{"memory_bytes": "67108864", "pids": "32"}},
			NoNewPrivs: true, Capabilities: []string{}, CapSets: map[string]string{"CapEff": "0000000000000000"},
			Degraded:    []string{},
			Rlimits:     map[string]string{"core": "0/0", "nofile": "1024/1024", "fsize": "unlimited/unlimited"},
			MemfdNoexec: &two,
			Landlock: &audit.LandlockInfo{ABI: 7, Applied: 6,
				Handled: audit.LandlockRights{FS: []string{"read_file", "write_file"}, Net: []string{"bind_tcp", "connect_tcp"}, Scope: []string{"signal"}},
				Missing: []string{}, Rules: []audit.LandlockRule{{Path: "/work", Access: []string{"read_file"}}},
				Ports: []audit.LandlockPort{{Port: 443, Access: []string{"connect_tcp"}}}},
			UserLimits: map[string]int64{"max_inotify_instances": 8},
			Egress: &audit.EgressInfo{Grants: []string{"pypi.org:443"}, DNS: "127.77.0.1:53", Listeners: []string{"127.0.0.1:443"},
				Hosts: map[string]string{"pypi.org": "127.77.0.2"}, Allow: []string{"10.0.0.0/8"},
				APIs:   []audit.APIInfo{{Host: "api.example.com", Upstream: "https://api.example.com/", Header: "Authorization", Secret: "env:API_KEY"}},
				Limits: map[string]string{"bytes": "1GiB"}},
			Notes: []string{"evidence: something unreadable"},
		},
		Denials: []audit.Denial{{Syscall: "mount", Nr: 165, Arch: "x86_64", Args: []string{"0x0", "0x1", "0x2", "0x3", "0x4", "0x5"},
			Detail: `target="/mnt"`, Process: "sh", Answer: "EPERM", Count: 2, FirstAt: at, LastAt: at.Add(time.Millisecond)}},
		DenialsDropped: 1,
		Network: []audit.NetEvent{
			{Kind: "dns", Name: "pypi.org", Type: "A", Dst: "127.77.0.1:53", Allowed: true, Count: 3, At: at},
			{Kind: "dns", Name: "evil.example", Type: "TXT", Allowed: false, Reason: "not granted", Count: 1, At: at},
			{Kind: "connect", Name: "pypi.org", Port: 443, Dst: "127.77.0.2:443", IP: "151.101.0.223", Protocol: "tls", SNI: "pypi.org",
				Allowed: true, Requests: 0, BytesOut: 517, BytesIn: 4096, DurationMS: 120.5, Count: 1, At: at},
			{Kind: "http", Name: "api.example.com", Port: 80, Dst: "127.77.0.3:80", Protocol: "http", Method: "GET", Path: "/v1/x",
				Status: 200, Secret: "env:API_KEY", Allowed: true, BytesOut: 100, BytesIn: 200, Count: 1, At: at},
			// A count of dropped queries carries no time.
			{Kind: "dns", Reason: "rate limit: queries dropped unanswered", Count: 5},
		},
		NetworkDropped: 2,
		TempWorkdir:    "/tmp/toolcell-work-1",
		Error:          "",
	}
}

// setupFailed is a record of a run whose sandbox was never complete, as
// Runner.Start makes it when the policy names a missing path.
func setupFailed() *audit.Record {
	return &audit.Record{Schema: audit.Schema, ID: "fedcba9876543210", Tool: "true",
		Command:   audit.CommandRef{Path: "true", Args: []string{"true"}, EnvNames: []string{"PATH"}},
		StartedAt: at, EndedAt: at, Exit: audit.Exit{Reason: audit.ReasonSetupFailed, Code: -1, LimitsHit: []audit.Limit{}},
		Enforcement: audit.Enforcement{Capabilities: []string{}, Degraded: []string{}},
		Denials:     []audit.Denial{}, Network: []audit.NetEvent{},
		Error: "sandbox: policy: read_dirs[0] /definitely/not/here: no such file or directory"}
}

// degraded ran without Landlock or user notification, on a kernel
// without vm.memfd_noexec, and pid 1 was gone before its evidence was
// read.
func degraded() *audit.Record {
	r := full()
	r.Exit = audit.Exit{Reason: audit.ReasonExited, Code: 0, LimitsHit: []audit.Limit{}}
	r.Enforcement.Landlock, r.Enforcement.MemfdNoexec, r.Enforcement.Egress = nil, nil, nil
	r.Enforcement.Degraded = []string{"landlock: not supported", "seccomp_user_notif: denied syscalls get EPERM from the filter"}
	r.Enforcement.Capabilities, r.Enforcement.CapSets = nil, nil
	r.Denials, r.Network = []audit.Denial{}, []audit.NetEvent{}
	return r
}

func TestRecordsValidate(t *testing.T) {
	signaled := full()
	signaled.Exit = audit.Exit{Reason: audit.ReasonSeccompKill, Code: -1, Signal: "SIGSYS", LimitsHit: []audit.Limit{audit.LimitFileSize, audit.LimitOutput, audit.LimitTimeout, audit.LimitPids}}
	landlockNil := full()
	landlockNil.Enforcement.Landlock.Missing, landlockNil.Enforcement.Landlock.Handled.Net = nil, nil
	for name, r := range map[string]*audit.Record{
		"full": full(), "compact": full().Compact(), "setup_failed": setupFailed(), "degraded": degraded(),
		"signaled": signaled, "landlock lists null": landlockNil,
	} {
		if err := auditschema.Validate(r); err != nil {
			b, _ := json.Marshal(r)
			t.Errorf("%s: %v\n%s", name, err, b)
		}
	}
}

// What the schema refuses: a record it lets through would not be one
// toolcell writes.
func TestInvalidRecords(t *testing.T) {
	for name, mutate := range map[string]func(m map[string]any){
		"unknown reason":     func(m map[string]any) { m["exit"].(map[string]any)["reason"] = "crashed" },
		"unknown limit":      func(m map[string]any) { m["exit"].(map[string]any)["limits_hit"] = []any{"disk"} },
		"limits_hit null":    func(m map[string]any) { m["exit"].(map[string]any)["limits_hit"] = nil },
		"other schema":       func(m map[string]any) { m["schema"] = "toolcell.audit/v2" },
		"unknown field":      func(m map[string]any) { m["extra"] = 1 },
		"old enforce key":    func(m map[string]any) { m["enforce"] = m["enforcement"] },
		"missing exit":       func(m map[string]any) { delete(m, "exit") },
		"missing denials":    func(m map[string]any) { delete(m, "denials") },
		"denials null":       func(m map[string]any) { m["denials"] = nil },
		"negative duration":  func(m map[string]any) { m["duration_ms"] = -1 },
		"code a string":      func(m map[string]any) { m["exit"].(map[string]any)["code"] = "0" },
		"time not UTC":       func(m map[string]any) { m["started_at"] = "2025-03-04T05:06:07+01:00" },
		"bad id":             func(m map[string]any) { m["id"] = "xyz" },
		"conn kind":          func(m map[string]any) { m["network"].([]any)[0].(map[string]any)["kind"] = "udp" },
		"conn field":         func(m map[string]any) { m["network"].([]any)[0].(map[string]any)["host"] = "x" },
		"denial without arg": func(m map[string]any) { delete(m["denials"].([]any)[0].(map[string]any), "args") },
		"enforcement field":  func(m map[string]any) { m["enforcement"].(map[string]any)["selinux"] = "on" },
		"mount field": func(m map[string]any) {
			m["enforcement"].(map[string]any)["mounts"].([]any)[0].(map[string]any)["flags"] = "x"
		},
		"memfd_noexec 3": func(m map[string]any) { m["enforcement"].(map[string]any)["memfd_noexec"] = 3 },
		"landlock field": func(m map[string]any) { m["enforcement"].(map[string]any)["landlock"].(map[string]any)["abi_x"] = 1 },
		"egress field":   func(m map[string]any) { m["enforcement"].(map[string]any)["egress"].(map[string]any)["proxy"] = "x" },
		"compacted hash": func(m map[string]any) {
			m["enforcement"].(map[string]any)["compacted"] = map[string]any{"fields": []any{}, "sha256": "md5:0"}
		},
	} {
		b, _ := json.Marshal(full())
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		mutate(m)
		b, _ = json.Marshal(m)
		if err := auditschema.ValidateJSON(b); err == nil {
			t.Errorf("%s: validates", name)
		}
	}
}

// The schema's enums are the Go constants, no more, no fewer.
func TestSchemaEnums(t *testing.T) {
	defs := schemaDefs(t)
	reasons := []audit.Reason{audit.ReasonExited, audit.ReasonSignaled, audit.ReasonTimeout, audit.ReasonOOM,
		audit.ReasonOutputLimit, audit.ReasonSetupFailed, audit.ReasonCanceled, audit.ReasonSeccompKill}
	limits := []audit.Limit{audit.LimitMemory, audit.LimitPids, audit.LimitCPUThrottled, audit.LimitFileSize,
		audit.LimitOutput, audit.LimitTimeout}
	if got, want := enum(defs["reason"]), sortedStrings(reasons); !slices.Equal(got, want) {
		t.Errorf("reason enum %q, constants %q", got, want)
	}
	if got, want := enum(defs["limit"]), sortedStrings(limits); !slices.Equal(got, want) {
		t.Errorf("limit enum %q, constants %q", got, want)
	}
}

// Every field of every type is a property of its schema, and the other
// way round; a field without omitempty is required.
func TestSchemaMatchesTypes(t *testing.T) {
	var root map[string]any
	if err := json.Unmarshal(audit.JSONSchema(), &root); err != nil {
		t.Fatal(err)
	}
	defs := root["$defs"].(map[string]any)
	obj := func(path ...string) map[string]any {
		s := defs[path[0]].(map[string]any)
		for _, p := range path[1:] {
			s = s["properties"].(map[string]any)[p].(map[string]any)
			if items, ok := s["items"].(map[string]any); ok {
				s = items
			}
		}
		return s
	}
	for _, c := range []struct {
		v      any
		schema map[string]any
	}{
		{audit.Record{}, root},
		{audit.PolicyRef{}, obj("policy")},
		{audit.CommandRef{}, obj("command")},
		{audit.Exit{}, obj("exit")},
		{audit.Resources{}, obj("resources")},
		{audit.Output{}, obj("output")},
		{audit.Enforcement{}, obj("enforcement")},
		{audit.MountInfo{}, obj("mount")},
		{audit.IDMap{}, obj("mount", "idmap")},
		{audit.SeccompInfo{}, obj("seccomp")},
		{audit.CgroupInfo{}, obj("cgroup")},
		{audit.LandlockInfo{}, obj("landlock")},
		{audit.LandlockRights{}, obj("landlock", "handled")},
		{audit.LandlockRule{}, obj("landlock", "rules")},
		{audit.LandlockPort{}, obj("landlock", "ports")},
		{audit.EgressInfo{}, obj("egress")},
		{audit.APIInfo{}, obj("egress", "http_api")},
		{audit.Compacted{}, obj("compacted")},
		{audit.Denial{}, obj("denial")},
		{audit.NetEvent{}, obj("conn")},
	} {
		typ := reflect.TypeOf(c.v)
		if c.schema["additionalProperties"] != false {
			t.Errorf("%s: schema not closed", typ)
		}
		props := map[string]bool{}
		for k := range c.schema["properties"].(map[string]any) {
			props[k] = true
		}
		required := map[string]bool{}
		for _, r := range c.schema["required"].([]any) {
			required[r.(string)] = true
		}
		for i := range typ.NumField() {
			name, opts, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
			if !props[name] {
				t.Errorf("%s.%s (%q) not in the schema", typ, typ.Field(i).Name, name)
			}
			if omit := strings.Contains(opts, "omitempty"); omit == required[name] {
				t.Errorf("%s.%s: omitempty %v, required %v", typ, typ.Field(i).Name, omit, required[name])
			}
			delete(props, name)
		}
		for p := range props {
			t.Errorf("%s: schema property %q has no field", typ, p)
		}
	}
}

func TestJSONSchemaIsACopy(t *testing.T) {
	a := audit.JSONSchema()
	a[0] = 'x'
	if b := audit.JSONSchema(); b[0] != '{' {
		t.Fatal("JSONSchema returned the package's bytes")
	}
}

// Compact leaves the record valid and ties it to the full one; a full
// record of another policy has another hash.
func TestCompact(t *testing.T) {
	r := full()
	before, _ := json.Marshal(r)
	c := r.Compact()
	after, _ := json.Marshal(r)
	if !bytes.Equal(before, after) {
		t.Fatal("Compact changed the record")
	}
	e := c.Enforcement
	if e.Compacted == nil || e.Compacted.SHA256 != r.CompactedHash() || len(e.Compacted.Fields) != 8 ||
		e.Mounts != nil || e.Landlock != nil || e.Seccomp.AllowedSyscalls != nil || e.Seccomp.FilterHash != r.Enforcement.Seccomp.FilterHash ||
		e.Cgroup.Limits != nil || e.Cgroup.Path != r.Enforcement.Cgroup.Path || e.Egress == nil || len(c.Network) != len(r.Network) {
		t.Fatalf("compact: %+v", e)
	}
	other := full()
	other.Enforcement.Mounts = other.Enforcement.Mounts[:1]
	if other.CompactedHash() == r.CompactedHash() {
		t.Fatal("different mounts, same hash")
	}
}

func TestNotable(t *testing.T) {
	quiet := degraded()
	quiet.Enforcement.Degraded = []string{}
	quiet.Exit.LimitsHit = []audit.Limit{audit.LimitCPUThrottled}
	if quiet.Notable() {
		t.Error("a quiet, throttled run is notable")
	}
	for name, r := range map[string]*audit.Record{"full": full(), "setup_failed": setupFailed(), "degraded": degraded()} {
		if !r.Notable() {
			t.Errorf("%s: not notable", name)
		}
	}
}

func TestLogValue(t *testing.T) {
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("run", "run", full())
	var line struct {
		Run map[string]any `json:"run"`
	}
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatal(err)
	}
	r := line.Run
	if r["reason"] != "oom" || r["signal"] != "SIGKILL" || r["denials"] != 1.0 || r["network_refused"] != 2.0 ||
		!reflect.DeepEqual(r["limits_hit"], []any{"memory", "cpu_throttled"}) {
		t.Errorf("summary %v", r)
	}
}

func schemaDefs(t *testing.T) map[string]any {
	t.Helper()
	var root map[string]any
	if err := json.Unmarshal(audit.JSONSchema(), &root); err != nil {
		t.Fatal(err)
	}
	return root["$defs"].(map[string]any)
}

func enum(s any) []string {
	var out []string
	for _, v := range s.(map[string]any)["enum"].([]any) {
		out = append(out, v.(string))
	}
	sort.Strings(out)
	return out
}

func sortedStrings[S ~string](s []S) []string {
	var out []string
	for _, v := range s {
		out = append(out, string(v))
	}
	sort.Strings(out)
	return out
}
