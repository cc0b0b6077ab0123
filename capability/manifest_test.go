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
	return New().WithName("report").WithBase().
		WithReadFiles("/data/in.json").WithReadDirs("/data/lib").
		WithWriteFiles("/data/log.txt").WithWriteDirs("/data/out").
		WithExec("/usr/bin/python3").WithWorkdir("/work").
		WithTmp(32*MiB).WithEnv("LANG", "C.UTF-8").WithEnv("MODE", "0755").
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
	want := New().WithReadDirs("/data/lib").WithWorkdir("/work").WithFollowSymlinks("/data/lib")
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
	if s.InotifyInstancesOrDefault() != 16 || New().InotifyInstancesOrDefault() != DefaultInotifyInstances || New().InotifyWatchesOrDefault() != DefaultInotifyWatches {
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

// A manifest key an earlier version accepted is refused with an error that
// names the key replacing it, and the new key works.
func TestManifestRenamedKeys(t *testing.T) {
	for old, key := range renamedKeys {
		if !manifestFields[key] {
			t.Errorf("%q is renamed to %q, which is no manifest key", old, key)
		}
		for _, text := range []string{old + ": [x]\n", `{"` + old + `": ["x"]}`} {
			_, err := ParseManifest([]byte(text))
			want := `unknown field "` + old + `": renamed to "` + key + `"`
			if err == nil || !strings.Contains(err.Error(), want) || !errors.Is(err, ErrInvalid) {
				t.Errorf("%s: err %v, want %q", text, err, want)
			}
		}
	}
	s, err := ParseManifest([]byte("egress: [api.example.com:443]\negress_allow: [10.0.0.0/8]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := New().WithEgress("api.example.com:443").WithEgressAllow("10.0.0.0/8"); !reflect.DeepEqual(s, want) {
		t.Errorf("got %+v, want %+v", s, want)
	}
}

// One name per concept (see the package documentation): each field's
// manifest key is its name in snake case, its builder method is With and
// its name, and a field with a default has the accessor name + OrDefault.
func TestOneNamePerConcept(t *testing.T) {
	irregular := map[string]string{"HTTPAPI": "http_api", "CPU": "cpu"}
	withDefault := map[string]bool{"Tmp": true, "Memory": true, "Pids": true, "CPU": true, "Timeout": true,
		"MaxOutput": true, "OutputOverflow": true, "MaxFileSize": true, "InotifyInstances": true,
		"InotifyWatches": true, "Syscalls": true}
	st := reflect.TypeOf(Set{})
	pt := reflect.TypeOf(&Set{})
	for i := 0; i < st.NumField(); i++ {
		f := st.Field(i)
		key, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		want := irregular[f.Name]
		if want == "" {
			for j, r := range f.Name {
				if j > 0 && r >= 'A' && r <= 'Z' {
					want += "_"
				}
				want += strings.ToLower(string(r))
			}
		}
		if key != want {
			t.Errorf("field %s: manifest key %q, want %q", f.Name, key, want)
		}
		if _, ok := pt.MethodByName("With" + f.Name); !ok {
			t.Errorf("field %s: no builder With%s", f.Name, f.Name)
		}
		if _, ok := pt.MethodByName(f.Name + "OrDefault"); ok != withDefault[f.Name] {
			t.Errorf("field %s: method %sOrDefault exists: %v, want %v", f.Name, f.Name, ok, withDefault[f.Name])
		}
	}
	for i := 0; i < pt.NumMethod(); i++ {
		m := pt.Method(i).Name
		if field, ok := strings.CutPrefix(m, "With"); ok {
			if _, ok := st.FieldByName(field); !ok {
				t.Errorf("builder %s sets no field %s", m, field)
			}
		}
		if field, ok := strings.CutSuffix(m, "OrDefault"); ok {
			if _, ok := st.FieldByName(field); !ok {
				t.Errorf("accessor %s reads no field %s", m, field)
			}
		}
	}
}
