package capability

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func builderPolicy() *Set {
	return New().Named("report").WithBase().
		ReadFile("/data/in.json").ReadDir("/data/lib").
		WriteFile("/data/log.txt").WriteDir("/data/out").
		ExecFile("/usr/bin/python3").InWorkdir("/work").
		TmpSize(32*MiB).SetEnv("LANG", "C.UTF-8").SetEnv("MODE", "0755").
		WithMemory(256 * MiB).WithPids(64).WithCPU(0.5).
		WithTimeout(90 * time.Second).WithMaxOutput(MiB)
}

const jsonManifest = `{
	"name": "report",
	"base": true,
	"read_files": ["/data/in.json"],
	"read_dirs": ["/data/lib"],
	"write_files": ["/data/log.txt"],
	"write_dirs": ["/data/out"],
	"exec": ["/usr/bin/python3"],
	"workdir": "/work",
	"tmp": "32MiB",
	"env": {"LANG": "C.UTF-8", "MODE": "0755"},
	"memory": 268435456,
	"pids": 64,
	"cpu": 0.5,
	"timeout": "1m30s",
	"max_output": "1M"
}`

const yamlManifest = `# a policy
name: report
base: true
read_files: [/data/in.json]
read_dirs:
  - /data/lib
write_files:
  - /data/log.txt
write_dirs: [/data/out]
exec:
  - /usr/bin/python3
workdir: /work
tmp: 32MiB
env:
  LANG: C.UTF-8
  MODE: "0755"
memory: 256MiB
pids: 64
cpu: 0.5
timeout: 1m30s
max_output: 1048576
`

func TestManifestMatchesBuilder(t *testing.T) {
	want := builderPolicy()
	for name, text := range map[string]string{"json": jsonManifest, "yaml": yamlManifest} {
		got, err := ParseManifest([]byte(text))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %+v\nwant %+v", name, got, want)
		}
	}
}

func TestManifestRoundTrip(t *testing.T) {
	want := builderPolicy()
	b, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseManifest(b)
	if err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip: got %+v\nwant %+v", got, want)
	}
	hw, _ := want.Hash()
	hg, _ := got.Hash()
	if hw != hg {
		t.Errorf("hash changed in round trip: %s != %s", hg, hw)
	}
}

// follow_symlinks reads the same in JSON, YAML and the builder.
func TestManifestFollowSymlinks(t *testing.T) {
	want := New().ReadDir("/data/lib").InWorkdir("/work").FollowSymlinksFor("/data/lib")
	for name, text := range map[string]string{
		"json": `{"read_dirs": ["/data/lib"], "workdir": "/work", "follow_symlinks": ["/data/lib"]}`,
		"yaml": "read_dirs: [/data/lib]\nworkdir: /work\nfollow_symlinks:\n  - /data/lib\n",
	} {
		got, err := ParseManifest([]byte(text))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %+v\nwant %+v", name, got, want)
		}
	}
	for name, c := range map[string]struct{ text, want string }{
		"bool":       {"read_dirs: [/a]\nfollow_symlinks: true\n", "follow_symlinks"},
		"misspelled": {"read_dirs: [/a]\nfollow_symlink: [/a]\n", `unknown field "follow_symlink"`},
	} {
		if _, err := ParseManifest([]byte(c.text)); err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: error %v, want one containing %q", name, err, c.want)
		}
	}
	s, err := ParseManifest([]byte("read_dirs: [/a]\nfollow_symlinks: [/b]\n"))
	if err != nil {
		t.Fatal(err)
	}
	var fe *FieldError
	if err := s.Validate(); !errors.As(err, &fe) || fe.Field != "follow_symlinks[0]" || fe.Value != "/b" {
		t.Errorf("follow_symlinks naming no grant: %v", err)
	}
}

func TestManifestInotify(t *testing.T) {
	s, err := ParseManifest([]byte("inotify_instances: 16\ninotify_watches: 1000\n"))
	if err != nil || s.InotifyInstances != 16 || s.InotifyWatches != 1000 {
		t.Fatalf("got %+v %v", s, err)
	}
	if s.InotifyInstancesLimit() != 16 || New().InotifyInstancesLimit() != DefaultInotifyInstances || New().InotifyWatchesLimit() != DefaultInotifyWatches {
		t.Fatal("limits with defaults")
	}
}

func TestManifestTabIndentedJSON(t *testing.T) {
	s, err := ParseManifest([]byte("{\n\t\"read_files\": [\n\t\t\"/a\"\n\t],\n\t\"pids\": 3\n}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.ReadFiles) != 1 || s.ReadFiles[0] != "/a" || s.Pids != 3 {
		t.Fatalf("got %+v", s)
	}
}

func TestManifestRejects(t *testing.T) {
	cases := []struct{ name, text, want string }{
		{"unknown json", `{"raed_files": ["/a"]}`, `capability: manifest: unknown field "raed_files"`},
		{"unknown yaml", "read_files: [/a]\nraed_files: [/b]\n", `capability: manifest: unknown field "raed_files"`},
		{"wrong case", `{"Read_Files": ["/a"]}`, `unknown field "Read_Files"`},
		{"duplicate yaml", "read_files: [/a]\nread_files: [/b]\n", `duplicate key "read_files"`},
		{"duplicate json", `{"memory": 1024, "memory": "1T"}`, `duplicate key "memory"`},
		{"duplicate env", "env:\n  A: x\n  A: y\n", `duplicate key "A"`},
		{"empty", "  \n", "empty manifest"},
		{"null", "null\n", "empty manifest"},
		{"comment only", "# nothing\n", "empty manifest"},
		{"list", "- /a\n", "want a mapping"},
		{"two documents", "name: a\n---\nread_dirs: [/]\n", "2 YAML documents"},
		{"alias", "read_files: &x [/a]\nexec: *x\n", "aliases"},
		{"merge key", "env:\n  <<: {A: b}\n", "variable name"},
		{"yes for true", "base: yes\n", "want true or false"},
		{"env number", "env:\n  MODE: 0755\n", "value must be a string"},
		{"env bool", `{"env": {"DEBUG": true}}`, "value must be a string"},
		{"octal size", "tmp: 0755\n", "plain decimal"},
		{"hex pids", "pids: 0x10\n", "plain decimal"},
		{"hex inotify instances", "inotify_instances: 0x10\n", "plain decimal"},
		{"octal inotify watches", "inotify_watches: 0755\n", "plain decimal"},
		{"timeout number", "timeout: 30\n", "ambiguous"},
		{"size fraction", `{"memory": 1.5}`, "fractions"},
		{"size ambiguous", "memory: 64MB\n", "ambiguous"},
		{"size negative", "memory: -1\n", "negative"},
		{"wrong type", `{"read_files": "/a"}`, "read_files"},
		{"syntax", "read_files: [/a\n", "syntax"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := ParseManifest([]byte(c.text))
			if err == nil {
				t.Fatalf("ParseManifest succeeded: %+v", s)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not contain %q", err, c.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("errors.Is(%v, ErrInvalid) = false", err)
			}
		})
	}
}

func TestLoadManifest(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(good, []byte(yamlManifest), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte(`{"raed_files": []}`), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := LoadManifest(good)
	if err != nil || !reflect.DeepEqual(s, builderPolicy()) {
		t.Fatalf("LoadManifest(good) = %+v, %v", s, err)
	}
	if _, err := LoadManifest(bad); err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "raed_files") {
		t.Errorf("LoadManifest(bad) error %v: want it to name the file and the key", err)
	}
	missing := filepath.Join(dir, "missing.yaml")
	if _, err := LoadManifest(missing); err == nil || !strings.Contains(err.Error(), missing) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadManifest(missing) error %v", err)
	}
}

// The example manifest shipped in testdata parses and validates.
func TestExampleManifestInTestdata(t *testing.T) {
	s, err := LoadManifest("../testdata/example-policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if s.Name != "example-python-tool" || !s.Base || s.Memory != 256*MiB || s.MaxFileSize != 64*MiB || s.Env["LANG"] != "C.UTF-8" {
		t.Fatalf("parsed %+v", s)
	}
}
