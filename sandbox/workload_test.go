package sandbox_test

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/toolcell/toolcell/audit"
	"github.com/toolcell/toolcell/capability"
	"github.com/toolcell/toolcell/internal/testenv"
	"github.com/toolcell/toolcell/sandbox"
)

// The workloads an agent's tools run every day, each under the example
// policy for it in testdata/policies (the least that suffices), with the
// caller's own directory or a fresh one as the workdir. Every syscall the
// sandbox denies them is checked against the list each test documents.

// workloadPolicy loads testdata/policies/<name>.yaml.
func workloadPolicy(t *testing.T, name string) *capability.Set {
	t.Helper()
	s, err := capability.LoadManifest(filepath.Join("..", "testdata", "policies", name+".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// onlyDenials fails the test for a denial not in want ("syscall" or
// "syscall detail-prefix").
func onlyDenials(t *testing.T, rec *audit.Record, want ...string) {
	t.Helper()
next:
	for _, d := range rec.Denials {
		for _, w := range want {
			sc, detail, _ := strings.Cut(w, " ")
			if d.Syscall == sc && strings.HasPrefix(d.Detail, detail) {
				continue next
			}
		}
		t.Errorf("undocumented denial: %s %s by %s (%d times)", d.Syscall, d.Detail, d.Process, d.Count)
	}
}

// ownedBy fails the test for a file under dir that is not uid:gid's.
func ownedBy(t *testing.T, dir string, uid, gid uint32) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		n++
		if u, g := owner(t, p); u != uid || g != gid {
			t.Errorf("%s belongs to %d:%d on the host, want %d:%d", p, u, g, uid, gid)
			return filepath.SkipAll
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// 1. C: gcc compiles and runs a program in the caller's project
// directory, and make builds one of two files.
func TestWorkloadC(t *testing.T) {
	testenv.RequireUserNS(t)
	dir := workdir(t)
	writeFiles(t, dir, map[string]string{
		"single.c": "#include <stdio.h>\nint main(void) { puts(\"single\"); return 0; }\n",
		"main.c":   "#include <stdio.h>\n#include \"util.h\"\nint main(void) { printf(\"%d\\n\", twice(21)); return 0; }\n",
		"util.c":   "#include \"util.h\"\nint twice(int x) { return 2 * x; }\n",
		"util.h":   "int twice(int x);\n",
		"Makefile": "app: main.o util.o\n\t$(CC) -o $@ main.o util.o\n%.o: %.c util.h\n\t$(CC) -c -o $@ $<\n",
	})
	set := workloadPolicy(t, "c-build").WithWorkdir(dir)
	res := run(t, set, `gcc -o single single.c && ./single && make -s && ./app`)
	if res.Exit.Code != 0 || string(res.Stdout) != "single\n42\n" {
		t.Fatalf("exit %d stdout %q stderr %q", res.Exit.Code, res.Stdout, res.Stderr)
	}
	for _, f := range []string{"single", "main.o", "util.o", "app"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("build output: %v", err)
		}
	}
	ownedBy(t, dir, uint32(os.Geteuid()), uint32(os.Getegid()))
	onlyDenials(t, res.Audit)
}

// wheel builds a pure-Python wheel of module (VALUE = value) in dir, the
// way a build backend would: the module, METADATA, WHEEL and a RECORD with
// each file's hash.
func wheel(t *testing.T, dir, dist, module string, value int) string {
	t.Helper()
	info := dist + "-1.0.dist-info/"
	files := []struct{ name, body string }{
		{module + "/__init__.py", fmt.Sprintf("VALUE = %d\n", value)},
		{info + "METADATA", "Metadata-Version: 2.1\nName: " + strings.ReplaceAll(dist, "_", "-") + "\nVersion: 1.0\n"},
		{info + "WHEEL", "Wheel-Version: 1.0\nGenerator: toolcell-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"},
	}
	var record strings.Builder
	var buf bytes.Buffer
	z := zip.NewWriter(&buf)
	for _, f := range files {
		w, err := z.Create(f.name)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(f.body))
		sum := sha256.Sum256([]byte(f.body))
		fmt.Fprintf(&record, "%s,sha256=%s,%d\n", f.name, base64.RawURLEncoding.EncodeToString(sum[:]), len(f.body))
	}
	record.WriteString(info + "RECORD,,\n")
	w, _ := z.Create(info + "RECORD")
	w.Write([]byte(record.String()))
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, dist+"-1.0-py3-none-any.whl")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// 2. Python: a venv in a fresh workdir, pip install of a wheel offline,
// then of another from a package index on the host's loopback, reached
// through an egress grant to localhost with its range allowed.
func TestWorkloadPython(t *testing.T) {
	testenv.RequireUserNS(t)
	wheels, served := testenv.Tempdir(t), testenv.Tempdir(t)
	wheel(t, wheels, "toolcell_demo", "toolcell_demo", 42)
	indexed := filepath.Base(wheel(t, served, "toolcell_index_demo", "toolcell_index_demo", 7))
	// A PEP 503 simple index on 127.0.0.1.
	mux := http.NewServeMux()
	mux.HandleFunc("/simple/toolcell-index-demo/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "<html><body><a href=\"/files/%s\">%s</a></body></html>\n", indexed, indexed)
	})
	mux.Handle("/files/", http.StripPrefix("/files/", http.FileServer(http.Dir(served))))
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(mux)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	defer srv.Close()
	port := ln.Addr().(*net.TCPAddr).Port

	set := workloadPolicy(t, "python-venv").WithReadDirs(wheels).
		WithEgress(fmt.Sprintf("localhost:%d", port)).WithEgressAllow("127.0.0.1/32")
	cmd := sandbox.Command("/bin/sh", "-c", fmt.Sprintf(`set -e
python3 -m venv venv
venv/bin/python -m pip install -q --no-index --find-links %s toolcell-demo
venv/bin/python -m pip install -q --index-url http://localhost:%d/simple/ toolcell-index-demo
venv/bin/python -c 'import toolcell_demo, toolcell_index_demo; print(toolcell_demo.VALUE, toolcell_index_demo.VALUE)'`, wheels, port))
	var site []string
	cmd.Collect = func(dir string) error {
		m, err := filepath.Glob(filepath.Join(dir, "venv", "lib", "python3*", "site-packages", "toolcell_*"))
		site = m
		return err
	}
	res := runCmd(t, set, cmd)
	if res.Exit.Code != 0 || string(res.Stdout) != "42 7\n" {
		t.Fatalf("exit %d stdout %q stderr %q", res.Exit.Code, res.Stdout, res.Stderr)
	}
	if len(site) < 2 {
		t.Errorf("site-packages in the workdir: %q", site)
	}
	c := conns(res.Audit, "connect", "localhost")
	if len(c) == 0 || !c[0].Allowed || c[0].BytesIn == 0 {
		t.Errorf("connect entries for localhost: %+v", c)
	}
	// Python probes for IPv6 support (socket.has_ipv6, an AF_INET6
	// socket); only IPv4 ranges are granted.
	onlyDenials(t, res.Audit, "socket family=AF_INET6")
}

// 3. Node: npm installs a package from a local tarball and node runs it.
func TestWorkloadNode(t *testing.T) {
	testenv.RequireUserNS(t)
	if _, err := exec.LookPath("npm"); err != nil {
		testenv.Require(t, false, "npm (scripts/deps.sh installs it)")
	}
	pkgs := testenv.Tempdir(t)
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for name, body := range map[string]string{
		"package/package.json": `{"name": "toolcell-demo", "version": "1.0.0", "main": "index.js"}`,
		"package/index.js":     "module.exports = { value: 42 };\n",
	} {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
		tw.Write([]byte(body))
	}
	tw.Close()
	gz.Close()
	tgz := filepath.Join(pkgs, "toolcell-demo-1.0.0.tgz")
	if err := os.WriteFile(tgz, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	set := workloadPolicy(t, "node-npm").WithReadFiles(tgz)
	res := run(t, set, `npm install --offline --silent `+tgz+` && node -e 'console.log(require("toolcell-demo").value)' && test -f node_modules/toolcell-demo/index.js`)
	if res.Exit.Code != 0 || !strings.HasSuffix(string(res.Stdout), "42\n") {
		t.Fatalf("exit %d stdout %q stderr %q", res.Exit.Code, res.Stdout, res.Stderr)
	}
	// npm lists the network interfaces (libuv reads them over netlink);
	// the sandbox's network namespace has only loopback, and npm goes on.
	onlyDenials(t, res.Audit, "socket family=AF_NETLINK")
}

// 4. git: clone over HTTPS through the git policy's egress grant (the
// test's resolver sends github.com to a local git server), commit and
// diff in the workdir.
func TestWorkloadGit(t *testing.T) {
	testenv.RequireUserNS(t)
	backend := "/usr/lib/git-core/git-http-backend"
	if _, err := os.Stat(backend); err != nil {
		t.Fatalf("git http-backend: %v (scripts/deps.sh installs git)", err)
	}
	repos := testenv.Tempdir(t)
	src := filepath.Join(repos, "demo", "tool.git")
	work := filepath.Join(repos, "work")
	gitEnv := append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@e", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@e")
	for _, args := range [][]string{
		{"init", "-q", "--bare", src},
		{"init", "-q", work},
		{"-C", work, "add", "."},
		{"-C", work, "commit", "-q", "-m", "first"},
		{"-C", work, "push", "-q", src, "HEAD:refs/heads/main"},
		{"-C", src, "symbolic-ref", "HEAD", "refs/heads/main"},
	} {
		if args[0] == "-C" && args[2] == "add" {
			writeFiles(t, work, map[string]string{"README": "one\n"})
		}
		cmd := exec.Command("git", args...)
		cmd.Env = gitEnv
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v %s", args, err, out)
		}
	}
	certs := testenv.Tempdir(t)
	srv := httptest.NewUnstartedServer(&cgi.Handler{Path: backend, Root: "/",
		Env: []string{"GIT_PROJECT_ROOT=" + repos, "GIT_HTTP_EXPORT_ALL=1"}})
	srv.TLS = testCA(t, certs, "github.com")
	srv.StartTLS()
	defer srv.Close()
	u := newUpstreams()
	u.add("github.com", "203.0.113.31", 443, srv.Listener.Addr().String())
	set := workloadPolicy(t, "git").WithReadFiles(filepath.Join(certs, "ca.pem"))
	res := runWith(t, u.runner(), set, `set -e
export GIT_SSL_CAINFO=`+filepath.Join(certs, "ca.pem")+`
git clone -q https://github.com/demo/tool.git tool
cd tool
echo two >> README
git commit -qam second
git log --format=%s
git diff HEAD~1 --stat`)
	if res.Exit.Code != 0 || !strings.HasPrefix(string(res.Stdout), "second\nfirst\n README | 1 +\n") {
		t.Fatalf("exit %d stdout %q stderr %q", res.Exit.Code, res.Stdout, res.Stderr)
	}
	if c := conns(res.Audit, "connect", "github.com"); len(c) == 0 || !c[0].Allowed || c[0].SNI != "github.com" {
		t.Errorf("connect entries %+v", c)
	}
	onlyDenials(t, res.Audit)
}

// 5. Many files and a large one in the caller's directory, within the
// limits: the host sees them with the caller as owner; a file past
// max_file_size stops at it, and output past max_output is cut.
func TestWorkloadBulkFiles(t *testing.T) {
	testenv.RequireUserNS(t)
	dir := workdir(t)
	set := workloadPolicy(t, "bulk-files").WithWorkdir(dir)
	res := run(t, set, `set -e
mkdir many && cd many
i=0; while [ $i -lt 10000 ]; do echo $i > f$i; i=$((i+1)); done
cd .. && head -c 200M /dev/zero > big && echo done`)
	if res.Exit.Code != 0 || string(res.Stdout) != "done\n" {
		t.Fatalf("exit %d stdout %q stderr %q", res.Exit.Code, res.Stdout, res.Stderr)
	}
	if fi, err := os.Stat(filepath.Join(dir, "big")); err != nil || fi.Size() != 200<<20 {
		t.Fatalf("big: %v %v", fi, err)
	}
	if n := ownedBy(t, dir, uint32(os.Geteuid()), uint32(os.Getegid())); n != 10000+3 {
		t.Errorf("%d entries under the workdir, want 10003", n)
	}

	// On a tmpfs workdir (the VM's) written data is memory: make room.
	if err := os.Remove(filepath.Join(dir, "big")); err != nil {
		t.Fatal(err)
	}
	res = run(t, set, `head -c 300M /dev/zero > toobig; echo "head: $?"`)
	if fi, err := os.Stat(filepath.Join(dir, "toobig")); err != nil || fi.Size() != int64(set.MaxFileSizeOrDefault()) {
		t.Errorf("toobig: %v %v, want max_file_size %d bytes", fi, err, set.MaxFileSizeOrDefault())
	}
	// head dies of SIGXFSZ (128 + 25), the shell goes on.
	if string(res.Stdout) != "head: 153\n" {
		t.Errorf("past max_file_size: stdout %q stderr %q", res.Stdout, res.Stderr)
	}

	res = run(t, set, `head -c 1M /dev/zero`)
	if !res.Audit.Output.StdoutTruncated || int64(len(res.Stdout)) != int64(set.MaxOutputOrDefault()) || res.Exit.Reason != audit.ReasonOutputLimit {
		t.Errorf("output cap: %d bytes kept, truncated %v, reason %s; want %d", len(res.Stdout), res.Audit.Output.StdoutTruncated, res.Exit.Reason, set.MaxOutputOrDefault())
	}
	onlyDenials(t, res.Audit)
}
