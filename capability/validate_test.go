package capability

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

type fixture struct {
	file, file2, dir, sub, subfile, fifo, procLink, rootLink, fileLink, dirLink string
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	root := t.TempDir()
	f := fixture{
		file:     filepath.Join(root, "in.json"),
		file2:    filepath.Join(root, "tool"),
		dir:      filepath.Join(root, "data"),
		sub:      filepath.Join(root, "data", "out"),
		subfile:  filepath.Join(root, "data", "prog"),
		fifo:     filepath.Join(root, "fifo"),
		procLink: filepath.Join(root, "proc"),
		rootLink: filepath.Join(root, "root"),
		fileLink: filepath.Join(root, "in-link.json"),
		dirLink:  filepath.Join(root, "data-link"),
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(f.file, []byte("{}"), 0o644))
	must(os.WriteFile(f.file2, []byte("#!/bin/sh\n"), 0o755))
	must(os.MkdirAll(f.sub, 0o755))
	must(os.WriteFile(f.subfile, nil, 0o755))
	must(syscall.Mkfifo(f.fifo, 0o600))
	must(os.Symlink("/proc/self", f.procLink))
	must(os.Symlink("/", f.rootLink))
	must(os.Symlink(f.file, f.fileLink))
	must(os.Symlink(f.dir, f.dirLink))
	return f
}

// valid returns a policy that uses every kind of grant and passes.
func (f fixture) valid() *Set {
	return New().WithName("fixture").WithBase().
		WithReadFiles(f.file).WithReadDirs(f.dir).WithWriteDirs(f.sub).WithExec(f.file2).
		WithWorkdir(f.sub).WithEnv("FOO", "bar").WithEnv("PATH", "/usr/bin").
		WithMemory(256 * MiB).WithPids(64).WithCPU(0.5).WithTimeout(time.Minute).
		WithTmp(8 * MiB).WithMaxOutput(MiB)
}

func TestValidate(t *testing.T) {
	f := newFixture(t)
	long := "/" + strings.Repeat("a", MaxPathLen)
	cases := []struct {
		name   string
		mutate func(s *Set)
		field  string // "" means valid
		reason string // substring of the error
	}{
		{"baseline", func(s *Set) {}, "", ""},
		{"zero set", func(s *Set) { *s = Set{} }, "", ""},

		// Paths.
		{"relative", func(s *Set) { s.ReadFiles = []string{"in.json"} }, "read_files[0]", "not absolute"},
		{"empty path", func(s *Set) { s.ReadDirs = []string{""} }, "read_dirs[0]", "empty"},
		{"unclean", func(s *Set) { s.ReadFiles = []string{"/etc/../etc/passwd"} }, "read_files[0]", `not clean (want "/etc/passwd")`},
		{"trailing slash", func(s *Set) { s.WriteDirs = []string{f.sub + "/"} }, "write_dirs[0]", "not clean"},
		{"NUL", func(s *Set) { s.Exec = []string{"/bin/a\x00b"} }, "exec[0]", "NUL"},
		{"root", func(s *Set) { s.ReadDirs = []string{"/"} }, "read_dirs[0]", "whole root"},
		{"too long", func(s *Set) { s.ReadFiles = []string{long} }, "read_files[0]", "longer than"},
		{"proc", func(s *Set) { s.ReadDirs = []string{"/proc"} }, "read_dirs[0]", "/proc"},
		{"under sys", func(s *Set) { s.ReadDirs = []string{"/sys/fs"} }, "read_dirs[0]", "/sys"},
		{"under dev", func(s *Set) { s.WriteFiles = []string{"/dev/null"} }, "write_files[0]", "/dev"},
		{"workdir relative", func(s *Set) { s.Workdir = "work" }, "workdir", "not absolute"},
		{"procfoo is not proc", func(s *Set) { s.ReadDirs = append(s.ReadDirs, "/procfoo") }, "read_dirs[1]", "does not exist"},

		// Existence and type.
		{"missing file", func(s *Set) { s.ReadFiles = []string{f.file + ".nope"} }, "read_files[0]", "does not exist"},
		{"file is dir", func(s *Set) { s.ReadFiles = []string{f.dir} }, "read_files[0]", "not a regular file (a directory)"},
		{"dir is file", func(s *Set) { s.ReadDirs = []string{f.file} }, "read_dirs[0]", "not a directory"},
		{"write file is dir", func(s *Set) { s.WriteFiles = []string{f.dir} }, "write_files[0]", "not a regular file"},
		{"write file ok", func(s *Set) { s.WriteFiles = []string{f.subfile} }, "", ""},
		{"write dir is file", func(s *Set) { s.WriteDirs = []string{f.file} }, "write_dirs[0]", "not a directory"},
		{"exec dir", func(s *Set) { s.Exec = []string{f.dir} }, "exec[0]", "not a regular file"},
		{"exec fifo", func(s *Set) { s.Exec = []string{f.fifo} }, "exec[0]", "named pipe"},
		{"read fifo", func(s *Set) { s.ReadFiles = []string{f.fifo} }, "read_files[0]", "named pipe"},
		{"workdir is file", func(s *Set) { s.Workdir = f.file }, "workdir", "not a directory"},
		// A link on a grant's way is refused unless follow_symlinks lists
		// the grant; the cases that test what happens after resolving
		// list it (the checks on the resolved path hold either way).
		{"symlink to file ok", func(s *Set) { s.ReadFiles = []string{f.fileLink}; s.FollowSymlinks = []string{f.fileLink} }, "", ""},
		{"symlink to proc", func(s *Set) { s.ReadDirs = []string{f.procLink}; s.FollowSymlinks = []string{f.procLink} }, "read_dirs[0]", `resolves to`},
		{"symlink to root", func(s *Set) { s.ReadDirs = []string{f.rootLink}; s.FollowSymlinks = []string{f.rootLink} }, "read_dirs[0]", "whole root"},
		{"symlink to proc unlisted", func(s *Set) { s.ReadDirs = []string{f.procLink} }, "read_dirs[0]", `symbolic link ` + f.procLink + ` -> /proc/self, which whoever may write its directory can aim anywhere (it resolves to "/proc/`},
		{"symlink to file unlisted", func(s *Set) { s.ReadFiles = []string{f.fileLink} }, "read_files[0]",
			"passes through the symbolic link " + f.fileLink + " -> " + f.file + ", which whoever may write its directory can aim anywhere; grant the resolved path " + strconv.Quote(f.file) + ", or list " + strconv.Quote(f.fileLink) + " in follow_symlinks"},
		{"symlink dir unlisted", func(s *Set) { s.ReadDirs = []string{f.dirLink} }, "read_dirs[0]", "symbolic link " + f.dirLink + " -> " + f.dir},
		{"symlink component", func(s *Set) { s.ReadDirs = []string{filepath.Join(f.dirLink, "out")} }, "read_dirs[0]", "symbolic link " + f.dirLink + " -> " + f.dir},
		{"symlink component of file", func(s *Set) { s.Exec = []string{filepath.Join(f.dirLink, "prog")} }, "exec[0]", "symbolic link " + f.dirLink + " -> " + f.dir},
		{"symlink write file", func(s *Set) { s.WriteFiles = []string{filepath.Join(f.dirLink, "prog")} }, "write_files[0]", "symbolic link " + f.dirLink},
		{"symlink write dir", func(s *Set) { s.WriteDirs = []string{filepath.Join(f.dirLink, "out")} }, "write_dirs[0]", "symbolic link " + f.dirLink},
		{"symlink workdir", func(s *Set) { s.Workdir = filepath.Join(f.dirLink, "out") }, "workdir", "symbolic link " + f.dirLink},
		{"symlink listed", func(s *Set) { s.ReadDirs = []string{f.dirLink}; s.FollowSymlinks = []string{f.dirLink} }, "", ""},
		{"symlink component listed", func(s *Set) {
			s.Exec = []string{filepath.Join(f.dirLink, "prog")}
			s.FollowSymlinks = []string{filepath.Join(f.dirLink, "prog")}
		}, "", ""},
		{"follow lists another grant", func(s *Set) { s.ReadDirs = []string{f.dirLink}; s.FollowSymlinks = []string{f.file} }, "read_dirs[0]", "symbolic link"},
		{"follow names no grant", func(s *Set) { s.FollowSymlinks = []string{f.dirLink} }, "follow_symlinks[0]", "names no grant"},
		{"follow duplicate", func(s *Set) { s.FollowSymlinks = []string{f.file, f.file} }, "follow_symlinks[1]", "duplicate of follow_symlinks[0]"},
		{"follow relative", func(s *Set) { s.FollowSymlinks = []string{"data"} }, "follow_symlinks[0]", "not absolute"},
		{"follow grant without links", func(s *Set) { s.FollowSymlinks = []string{f.file} }, "", ""},

		// Shadowing and duplicates.
		{"write under read dir", func(s *Set) { s.WriteDirs = []string{f.sub} }, "", ""},
		{"read file under write dir", func(s *Set) { s.ReadDirs = nil; s.WriteDirs = []string{f.dir}; s.ReadFiles = []string{f.subfile} }, "", ""},
		{"exec under write dir", func(s *Set) { s.WriteDirs = []string{f.dir}; s.ReadDirs = nil; s.Exec = []string{f.subfile} }, "", ""},
		{"exec also read", func(s *Set) { s.Exec = []string{f.file} }, "", ""},
		{"workdir also write dir", func(s *Set) { s.WriteDirs = []string{f.sub}; s.Workdir = f.sub }, "", ""},
		{"ro and rw dir", func(s *Set) { s.WriteDirs = []string{f.dir} }, "write_dirs[0]", "granted both read-only and read-write (read_dirs[0]"},
		{"ro dir and workdir", func(s *Set) { s.Workdir = f.dir }, "workdir", "granted both read-only and read-write"},
		{"ro and rw file", func(s *Set) { s.WriteFiles = []string{f.file} }, "write_files[0]", "granted both read-only and read-write"},
		{"ro and rw via symlink", func(s *Set) { s.WriteDirs = []string{f.dirLink}; s.FollowSymlinks = []string{f.dirLink} }, "write_dirs[0]", "both resolving to"},
		{"exec and write same file", func(s *Set) { s.WriteFiles = []string{f.file2} }, "", ""},
		{"duplicate", func(s *Set) { s.ReadFiles = []string{f.file, f.file} }, "read_files[1]", "duplicate of read_files[0]"},
		{"duplicate exec", func(s *Set) { s.Exec = []string{f.file2, f.file2} }, "exec[1]", "duplicate of exec[0]"},

		// Limits.
		{"memory negative", func(s *Set) { s.Memory = -1 }, "memory", "negative"},
		{"memory absurd", func(s *Set) { s.Memory = MaxMemory + 1 }, "memory", "absurd"},
		{"memory max ok", func(s *Set) { s.Memory = MaxMemory }, "", ""},
		{"memory tiny", func(s *Set) { s.Memory = MiB - 1 }, "memory", "too small"},
		{"memory 1MiB ok", func(s *Set) { s.Memory = MiB }, "", ""},
		{"tmp negative", func(s *Set) { s.Tmp = -5 }, "tmp", "negative"},
		{"tmp absurd", func(s *Set) { s.Tmp = MaxTmp + 1 }, "tmp", "absurd"},
		{"tmp small ok", func(s *Set) { s.Tmp = 1 }, "", ""},
		{"output negative", func(s *Set) { s.MaxOutput = -1 }, "max_output", "negative"},
		{"output absurd", func(s *Set) { s.MaxOutput = MaxMaxOutput + 1 }, "max_output", "absurd"},
		{"file size negative", func(s *Set) { s.MaxFileSize = -1 }, "max_file_size", "negative"},
		{"file size absurd", func(s *Set) { s.MaxFileSize = MaxMaxFileSize + 1 }, "max_file_size", "absurd"},
		{"pids negative", func(s *Set) { s.Pids = -1 }, "pids", "negative"},
		{"pids absurd", func(s *Set) { s.Pids = MaxPids + 1 }, "pids", "absurd"},
		{"pids max ok", func(s *Set) { s.Pids = MaxPids }, "", ""},
		{"inotify instances negative", func(s *Set) { s.InotifyInstances = -1 }, "inotify_instances", "negative"},
		{"inotify instances absurd", func(s *Set) { s.InotifyInstances = MaxInotifyInstances + 1 }, "inotify_instances", "absurd"},
		{"inotify instances max ok", func(s *Set) { s.InotifyInstances = MaxInotifyInstances }, "", ""},
		{"inotify watches negative", func(s *Set) { s.InotifyWatches = -2 }, "inotify_watches", "negative"},
		{"inotify watches absurd", func(s *Set) { s.InotifyWatches = MaxInotifyWatches + 1 }, "inotify_watches", "absurd"},
		{"inotify watches max ok", func(s *Set) { s.InotifyWatches = MaxInotifyWatches }, "", ""},
		{"cpu negative", func(s *Set) { s.CPU = -0.5 }, "cpu", "negative"},
		{"cpu NaN", func(s *Set) { s.CPU = math.NaN() }, "cpu", "not a number"},
		{"cpu Inf", func(s *Set) { s.CPU = math.Inf(1) }, "cpu", "infinite"},
		{"cpu absurd", func(s *Set) { s.CPU = MaxCPU + 1 }, "cpu", "absurd"},
		{"cpu tiny", func(s *Set) { s.CPU = 0.001 }, "cpu", "minimum"},
		{"cpu min ok", func(s *Set) { s.CPU = 0.01 }, "", ""},
		{"timeout negative", func(s *Set) { s.Timeout = Duration(-time.Second) }, "timeout", "negative"},
		{"timeout absurd", func(s *Set) { s.Timeout = MaxTimeout + 1 }, "timeout", "absurd"},
		{"timeout max ok", func(s *Set) { s.Timeout = MaxTimeout }, "", ""},

		// Env.
		{"env bad name", func(s *Set) { s.WithEnv("1FOO", "x") }, "env", "invalid variable name"},
		{"env name with =", func(s *Set) { s.WithEnv("A=B", "x") }, "env", "invalid variable name"},
		{"env empty name", func(s *Set) { s.WithEnv("", "x") }, "env", "empty"},
		{"env NUL value", func(s *Set) { s.WithEnv("SECRET", "hunter2\x00") }, `env["SECRET"]`, "NUL"},
		{"env underscore ok", func(s *Set) { s.WithEnv("_x9", "") }, "", ""},

		// Name.
		{"name long", func(s *Set) { s.Name = strings.Repeat("n", MaxNameLen+1) }, "name", "longer than"},
		{"name max ok", func(s *Set) { s.Name = strings.Repeat("n", MaxNameLen) }, "", ""},
		{"name newline", func(s *Set) { s.Name = "a\nb" }, "name", "non-printable"},
		{"name bad utf8", func(s *Set) { s.Name = "a\xffb" }, "name", "UTF-8"},
		{"name unicode ok", func(s *Set) { s.Name = "résumé tool" }, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := f.valid()
			c.mutate(s)
			err := s.Validate()
			if c.field == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want error on %s", c.field)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("errors.Is(%v, ErrInvalid) = false", err)
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("errors.As(%v, *FieldError) = false", err)
			}
			if fe.Field != c.field {
				t.Errorf("Field = %q, want %q (err: %v)", fe.Field, c.field, err)
			}
			if !strings.Contains(err.Error(), c.reason) {
				t.Errorf("error %q does not contain %q", err, c.reason)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error %q shows an env value", err)
			}
		})
	}
}

func TestValidateMessage(t *testing.T) {
	err := New().WithReadFiles("/tmp", "/etc/../etc/passwd").Validate()
	want := `capability: read_files[1] "/etc/../etc/passwd": path is not clean (want "/etc/passwd")`
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error:\n%v\nwant it to contain:\n%s", err, want)
	}
}

func TestValidateReportsAll(t *testing.T) {
	s := New().WithReadFiles("rel").WithMemory(-1).WithPids(-1).WithEnv("1X", "")
	err := s.Validate()
	var fields []string
	var walk func(error)
	walk = func(e error) {
		if fe, ok := e.(*FieldError); ok {
			fields = append(fields, fe.Field)
		}
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
		}
	}
	walk(err)
	want := []string{"read_files[0]", "memory", "pids", "env"}
	if strings.Join(fields, ",") != strings.Join(want, ",") {
		t.Fatalf("fields = %v, want %v (err: %v)", fields, want, err)
	}
	if !errors.Is(err, ErrInvalid) {
		t.Fatal("joined error does not match ErrInvalid")
	}
}

func TestValidateNil(t *testing.T) {
	var s *Set
	if err := s.Validate(); !errors.Is(err, ErrInvalid) {
		t.Fatalf("nil Validate() = %v", err)
	}
}

func TestEgressValidation(t *testing.T) {
	good := []string{"api.example.com:443", "*.example.com:443", "localhost:8080", "a-b.c9.example:1", "x.example.com:65535"}
	for _, ep := range good {
		if err := New().WithEgress(ep).Validate(); err != nil {
			t.Errorf("%q refused: %v", ep, err)
		}
	}
	bad := map[string]string{
		"api.example.com":        "port is required",
		"api.example.com:":       "port is required",
		"api.example.com:0":      "1 to 65535",
		"api.example.com:65536":  "1 to 65535",
		"api.example.com:0443":   "1 to 65535",
		"api.example.com:+443":   "1 to 65535",
		"API.example.com:443":    "lower case",
		"api.example.com.:443":   "ends with a dot",
		"*.com:443":              "at least two labels",
		"*:443":                  "at least two labels",
		"a.*.example.com:443":    "whole first label",
		"*example.com:443":       "whole first label",
		"**.example.com:443":     "whole first label",
		"1.2.3.4:443":            "IP address",
		"[::1]:443":              "IP address",
		"::1:443":                "IP address",
		"-a.example.com:443":     "host name label",
		"a_b.example.com:443":    "host name label",
		"a..example.com:443":     "empty label",
		":443":                   "name is empty",
		"example.com:443/path":   "not a URL",
		"http://example.com:443": "not a URL",
	}
	for ep, want := range bad {
		err := New().WithEgress("ok.example.com:443", ep).Validate()
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != "egress[1]" || fe.Value != ep || !strings.Contains(fe.Reason, want) {
			t.Errorf("%q: err %v, want egress[1] naming %q", ep, err, want)
		}
	}
}

func TestEgressCanonical(t *testing.T) {
	a := New().WithEgress("b.example.com:443", "a.example.com:443", "b.example.com:443")
	b := New().WithEgress("a.example.com:443", "b.example.com:443")
	if mustHash(t, a) != mustHash(t, b) {
		t.Error("order or duplicates of egress grants change the hash")
	}
	if mustHash(t, a) == mustHash(t, New()) || mustHash(t, a) == mustHash(t, New().WithEgress("a.example.com:443")) {
		t.Error("egress grants do not change the hash")
	}
	s, err := ParseManifest([]byte("egress: [api.example.com:443, \"*.example.org:443\"]\n"))
	if err != nil || len(s.Egress) != 2 || s.Egress[1] != "*.example.org:443" {
		t.Fatalf("manifest: %+v %v", s, err)
	}
	if !strings.Contains(s.String(), "egress api.example.com:443") {
		t.Errorf("String lacks the grant:\n%s", s)
	}
}

func TestHTTPAPIValidation(t *testing.T) {
	ok := New().WithHTTPAPI("api.example.com", "Authorization", "Bearer ", "env:API_KEY")
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		set   *Set
		field string
		want  string
	}{
		{New().WithHTTPAPI("*.example.com", "Authorization", "", "env:K"), "http_api[0].host", "wildcard"},
		{New().WithHTTPAPI("1.2.3.4", "Authorization", "", "env:K"), "http_api[0].host", "IP address"},
		{New().WithHTTPAPI("api.example.com:443", "Authorization", "", "env:K"), "http_api[0].host", ""},
		{New().WithEgress("api.example.com:80").WithHTTPAPI("api.example.com", "X-Key", "", "env:K"), "http_api[0].host", "granted twice"},
		{New().WithHTTPAPI("api.example.com", "X-Key", "", "env:K").WithHTTPAPI("api.example.com", "X-Key", "", "env:K"), "http_api[1].host", "granted twice"},
		{New().WithHTTPAPI("api.example.com", "Bad Header", "", "env:K"), "http_api[0].header", "header name"},
		{New().WithHTTPAPI("api.example.com", "Host", "", "env:K"), "http_api[0].header", "frames the request"},
		{New().WithHTTPAPI("api.example.com", "X-Key", "a\r\nX-Evil: 1", "env:K"), "http_api[0].prefix", "line break"},
		{New().WithHTTPAPI("api.example.com", "X-Key", "", ""), "http_api[0].secret", "required"},
	}
	for _, c := range bad {
		err := c.set.Validate()
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != c.field || !strings.Contains(fe.Reason, c.want) {
			t.Errorf("%+v: err %v, want %s: %s", c.set.HTTPAPI, err, c.field, c.want)
		}
	}
}

func TestHTTPAPIManifestAndHash(t *testing.T) {
	s, err := ParseManifest([]byte(`{"base": true, "http_api": [{"host": "api.example.com", "header": "Authorization", "prefix": "Bearer ", "secret": "env:API_KEY"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	b := New().WithBase().WithHTTPAPI("api.example.com", "Authorization", "Bearer ", "env:API_KEY")
	h1, _ := s.Hash()
	h2, _ := b.Hash()
	h3, _ := New().WithBase().Hash()
	if h1 != h2 || h1 == h3 {
		t.Fatalf("hashes %s %s %s", h1, h2, h3)
	}
	other, _ := New().WithBase().WithHTTPAPI("api.example.com", "Authorization", "Bearer ", "env:OTHER").Hash()
	if other == h1 {
		t.Fatal("the secret reference is not part of the hash")
	}
	if _, err := ParseManifest([]byte(`{"http_api": [{"host": "api.example.com", "header": "X", "secret": "env:K", "value": "x"}]}`)); err == nil {
		t.Fatal("unknown key in http_api accepted")
	}
}

func TestEgressAllow(t *testing.T) {
	if err := New().WithEgress("db.internal.example:5432").WithEgressAllow("10.20.0.0/16", "fd00::/8").Validate(); err != nil {
		t.Fatal(err)
	}
	for r, want := range map[string]string{
		"10.20.0.1/16": "host bits", "0.0.0.0/0": "every address", "::/0": "every address",
		"10.0.0.0": "not a CIDR", "internal": "not a CIDR",
	} {
		err := New().WithEgressAllow("10.0.0.0/8", r).Validate()
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != "egress_allow[1]" || !strings.Contains(fe.Reason, want) {
			t.Errorf("%q: err %v, want %q", r, err, want)
		}
	}
	a, _ := New().WithEgressAllow("10.0.0.0/8").Hash()
	b, _ := New().Hash()
	if a == b {
		t.Error("allowed ranges are not part of the hash")
	}
}

// The root's merged-/usr links are the only links a grant passes without
// follow_symlinks; anything else of the same name or pointing elsewhere
// is not one of them.
func TestMergedUsrLinks(t *testing.T) {
	for _, c := range []struct {
		path, target string
		want         bool
	}{
		{"/bin", "usr/bin", true},
		{"/lib64", "usr/lib", true},
		{"/sbin", "/usr/sbin", true},
		{"/lib", "../usr/lib", true},
		{"/bin", "/tmp/bin", false},
		{"/bin", "usr", false},
		{"/usr/bin", "../bin", false},
		{"/tmp", "usr/bin", false},
		{"/opt/bin", "/usr/bin", false},
		{"/bin/sh", "dash", false},
	} {
		if got := IsMergedUsrLink(c.path, c.target); got != c.want {
			t.Errorf("IsMergedUsrLink(%q, %q) = %v, want %v", c.path, c.target, got, c.want)
		}
	}
	// On a merged-/usr host, a grant through /bin is valid as written,
	// and a link after it is not.
	for _, l := range MergedUsrLinks() {
		text, err := os.Readlink(l)
		if err != nil || !IsMergedUsrLink(l, text) {
			continue
		}
		entries, err := os.ReadDir(l)
		if err != nil {
			t.Fatal(err)
		}
		var file, link string
		for _, e := range entries {
			switch {
			case file == "" && e.Type().IsRegular():
				file = filepath.Join(l, e.Name())
			case link == "" && e.Type()&os.ModeSymlink != 0:
				link = filepath.Join(l, e.Name())
			}
		}
		if file != "" {
			if err := New().WithReadFiles(file).Validate(); err != nil {
				t.Errorf("grant through the merged-/usr link %s: %v", l, err)
			}
		}
		if link != "" {
			err := New().WithReadFiles(link).Validate()
			var fe *FieldError
			if !errors.As(err, &fe) || !strings.Contains(fe.Reason, "symbolic link "+link+" -> ") {
				t.Errorf("grant of the link %s: %v, want a refusal naming it", link, err)
			}
		}
	}
}

// exec_dirs: directories only, named by field; the manifest key reads the
// same as the builder; the CLI sorts --exec by what the path is.
func TestExecDirsValidate(t *testing.T) {
	var fe *FieldError
	if err := New().WithExecDirs("/etc/passwd").Validate(); !errors.As(err, &fe) || fe.Field != "exec_dirs[0]" {
		t.Errorf("a file as exec dir: %v", err)
	}
	if err := New().WithExecDirs("usr/bin").Validate(); !errors.As(err, &fe) || fe.Field != "exec_dirs[0]" {
		t.Errorf("a relative exec dir: %v", err)
	}
	if err := New().WithExecDirs("/usr/bin").Validate(); err != nil {
		t.Errorf("/usr/bin: %v", err)
	}
	m, err := ParseManifest([]byte("exec_dirs: [/usr/bin]\n"))
	if err != nil || !reflect.DeepEqual(m.ExecDirs, []string{"/usr/bin"}) {
		t.Errorf("manifest: %+v %v", m, err)
	}
	if a, b := mustHash(t, New().WithExecDirs("/usr/bin", "/usr/sbin")), mustHash(t, New().WithExecDirs("/usr/sbin", "/usr/bin")); a != b {
		t.Error("the order of exec_dirs changes the hash")
	}
}

// "temp" asks for a fresh workdir per run: it names no host path, so it is
// valid anywhere, and the manifest and the builder hash alike.
func TestTempWorkdirPolicy(t *testing.T) {
	s := New().WithBase().WithWorkdir(TempWorkdir()).WithWorkdirExec()
	if err := s.Validate(); err != nil {
		t.Fatalf("temp workdir: %v", err)
	}
	if !s.HasTempWorkdir() || New().WithWorkdir("/tmp").HasTempWorkdir() {
		t.Fatal("HasTempWorkdir")
	}
	m, err := ParseManifest([]byte("base: true\nworkdir: temp\nworkdir_exec: true\n"))
	if err != nil {
		t.Fatal(err)
	}
	h1, _ := s.Hash()
	h2, _ := m.Hash()
	h3, _ := New().WithBase().WithWorkdir(TempWorkdir()).Hash()
	if h1 != h2 || h1 == h3 {
		t.Errorf("hashes builder %s manifest %s without workdir_exec %s", h1, h2, h3)
	}
	if !strings.Contains(s.String(), "/workspace") {
		t.Errorf("String() %q does not say where the workdir is", s.String())
	}
	err = New().WithWorkdirExec().Validate()
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "workdir_exec" || !strings.Contains(err.Error(), "needs a workdir") {
		t.Errorf("workdir_exec without a workdir: %v", err)
	}
	// A relative path is still not a workdir.
	if err := New().WithWorkdir("temp2").Validate(); err == nil {
		t.Error("relative workdir accepted")
	}
}

func TestOutputOverflowPolicy(t *testing.T) {
	for _, m := range []string{"", OverflowKill, OverflowTruncate} {
		if err := New().WithOutputOverflow(m).Validate(); err != nil {
			t.Errorf("%q: %v", m, err)
		}
	}
	var fe *FieldError
	if err := New().WithOutputOverflow("drop").Validate(); !errors.As(err, &fe) || fe.Field != "output_overflow" {
		t.Errorf("drop: %v", err)
	}
	h0, _ := New().Hash()
	hk, _ := New().WithOutputOverflow(OverflowKill).Hash()
	ht, _ := New().WithOutputOverflow(OverflowTruncate).Hash()
	if h0 != hk || h0 == ht {
		t.Errorf("hashes: default %s kill %s truncate %s", h0, hk, ht)
	}
}
