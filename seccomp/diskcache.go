//go:build cgo

package seccomp

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

// A compiled filter kept on disk spares a short-lived process (the CLI runs
// one sandbox and exits) libseccomp's cold compile, several milliseconds.
//
// What the cache must not become is a way to loosen the filter of a later
// run. So:
//   - It is only for a process whose effective uid is 0 (the sandbox
//     package uses it only then): a tool of a root host process runs as a
//     host uid of its own that is never 0 and holds no capability on the
//     host, and every directory from / to the cache and every entry must be
//     owned by uid 0 and writable by it alone (checked on each open, without
//     following symbolic links), so nothing the tool could become can write
//     there. A rootless host process's tool runs as the caller's own uid,
//     which owns whatever cache that process could write: no disk cache for
//     it.
//   - An entry is named and checked by a key over everything the compiled
//     program depends on: the policy (Policy.key), the build of this binary
//     (its Go build ID: the group tables and this compiler), the libseccomp
//     version and the kernel (release and version; libseccomp probes the
//     kernel's features). An entry carries the sha256 of key and content,
//     and the program's own hash (Filter.Hash) and shape are checked again.
//   - Anything unexpected (a missing, foreign, torn or malformed entry, an
//     unsafe directory) means: compile, as without a cache. A failure to
//     store is ignored.

// cacheFormat names the entry format; a change of it changes every key.
const cacheFormat = "toolcell-seccomp-cache/1"

// maxCacheEntry bounds what is read: the largest program (4096
// instructions, BPF_MAXINSNS) with its lists fits many times over.
const maxCacheEntry = 1 << 20

// CompileCachedDir is CompileCached with a second cache in dir, for the
// next process: a filter not yet compiled in this process is read from dir
// if a valid entry for its key is there, else compiled and stored there.
// dir is used only when this process's effective uid is 0 (see above);
// dir and its parents must be owned by uid 0 and writable by it alone (dir
// is made, 0700, if missing). Each call returns its own copy.
func CompileCachedDir(p Policy, dir string) (*Filter, error) {
	return compileCachedDir(p, dir, os.Geteuid() == 0)
}

func compileCachedDir(p Policy, dir string, root bool) (*Filter, error) {
	k, err := p.key()
	if err != nil {
		return nil, err
	}
	if f := cacheGet(k); f != nil {
		return f.clone(), nil
	}
	var dk string
	if root && dir != "" {
		if dk = diskKey(k); dk != "" {
			if f := loadEntry(dir, dk, p); f != nil {
				return cachePut(k, f).clone(), nil
			}
		}
	}
	f, err := CompileCached(p)
	if err != nil {
		return nil, err
	}
	if dk != "" {
		storeEntry(dir, dk, f)
	}
	return f, nil
}

// buildID is the Go build ID of this process's binary, "" if unknown (then
// nothing is cached on disk).
var buildID = sync.OnceValue(func() string {
	ef, err := elf.Open("/proc/self/exe")
	if err != nil {
		return ""
	}
	defer ef.Close()
	s := ef.Section(".note.go.buildid")
	if s == nil {
		return ""
	}
	b, err := s.Data()
	if err != nil || len(b) == 0 {
		return ""
	}
	return hex.EncodeToString(b)
})

// diskKey is the entry name for the policy key k: the hex sha256 of k and
// of all else the program depends on; "" when some of it is unknown.
func diskKey(k string) string {
	id := buildID()
	var u unix.Utsname
	if id == "" || unix.Uname(&u) != nil {
		return ""
	}
	ma, mi, mc := libseccomp.GetLibraryVersion()
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%d.%d.%d\x00%s\x00%s\x00%s", cacheFormat, k, id, ma, mi, mc,
		unix.ByteSliceToString(u.Release[:]), unix.ByteSliceToString(u.Version[:]), unix.ByteSliceToString(u.Machine[:]))
	return hex.EncodeToString(h.Sum(nil))
}

// entrySum is what an entry's second line holds: sha256 of its key and body.
func entrySum(dk string, body []byte) string {
	h := sha256.New()
	io.WriteString(h, dk)
	h.Write([]byte{0})
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}

// safeOwner reports whether st is owned by uid 0 and writable by no other.
func safeOwner(st *unix.Stat_t) bool {
	return st.Uid == 0 && st.Mode&0o022 == 0
}

// openCacheDir opens dir (absolute) one component at a time without
// following symbolic links, each a directory owned by uid 0 and writable by
// it alone; create makes missing ones (0700).
func openCacheDir(dir string, create bool) (int, error) {
	if !filepath.IsAbs(dir) {
		return -1, fmt.Errorf("seccomp cache %s: not absolute", dir)
	}
	fd, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	parts := strings.Split(strings.Trim(filepath.Clean(dir), "/"), "/")
	for i := 0; ; i++ {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return -1, err
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR || !safeOwner(&st) {
			unix.Close(fd)
			return -1, fmt.Errorf("seccomp cache %s: a directory on the way is not owned by root or writable by others", dir)
		}
		if i == len(parts) || parts[0] == "" {
			return fd, nil
		}
		next, err := unix.Openat(fd, parts[i], unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) && create {
			if err = unix.Mkdirat(fd, parts[i], 0o700); err == nil || errors.Is(err, unix.EEXIST) {
				next, err = unix.Openat(fd, parts[i], unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			}
		}
		unix.Close(fd)
		if err != nil {
			return -1, err
		}
		fd = next
	}
}

// loadEntry returns the valid entry dk of dir for p, or nil.
func loadEntry(dir, dk string, p Policy) *Filter {
	dfd, err := openCacheDir(dir, false)
	if err != nil {
		return nil
	}
	defer unix.Close(dfd)
	fd, err := unix.Openat(dfd, dk, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil
	}
	file := os.NewFile(uintptr(fd), dk)
	defer file.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG ||
		st.Uid != 0 || st.Mode&0o077 != 0 || st.Nlink != 1 || st.Size > maxCacheEntry {
		return nil
	}
	b, err := io.ReadAll(io.LimitReader(file, maxCacheEntry+1))
	if err != nil || len(b) > maxCacheEntry {
		return nil
	}
	return parseEntry(dk, b, p)
}

// parseEntry checks an entry's content against its key and p.
func parseEntry(dk string, b []byte, p Policy) *Filter {
	head, rest, ok := bytes.Cut(b, []byte("\n"))
	if !ok || string(head) != cacheFormat {
		return nil
	}
	sum, body, ok := bytes.Cut(rest, []byte("\n"))
	if !ok || string(sum) != entrySum(dk, body) {
		return nil
	}
	var f Filter
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil || dec.More() {
		return nil
	}
	_, denied, err := p.normalize()
	bsum := sha256.Sum256(f.BPF)
	if err != nil || len(f.BPF) == 0 || len(f.BPF)%8 != 0 || len(f.BPF)/8 > 4096 ||
		f.Hash != hex.EncodeToString(bsum[:]) || f.GroupsVersion != GroupsVersion ||
		f.DeniedAction != denied || f.DefaultAction != defaultAction || f.ForeignArchAction != foreignArchAction {
		return nil
	}
	return &f
}

// storeEntry writes f as entry dk of dir, atomically (a new file renamed
// over the old); errors are ignored: the next process compiles.
func storeEntry(dir, dk string, f *Filter) {
	body, err := json.Marshal(f)
	if err != nil {
		return
	}
	dfd, err := openCacheDir(dir, true)
	if err != nil {
		return
	}
	defer unix.Close(dfd)
	// An unnamed file, named only once complete.
	fd, err := unix.Openat(dfd, ".", unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return
	}
	file := os.NewFile(uintptr(fd), dk)
	defer file.Close()
	data := fmt.Sprintf("%s\n%s\n%s", cacheFormat, entrySum(dk, body), body)
	if _, err := io.WriteString(file, data); err != nil {
		return
	}
	tmp := fmt.Sprintf(".%s.%d", dk, os.Getpid())
	if err := unix.Linkat(fd, "", dfd, tmp, unix.AT_EMPTY_PATH); err != nil &&
		unix.Linkat(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", fd), dfd, tmp, unix.AT_SYMLINK_FOLLOW) != nil {
		return
	}
	if err := unix.Renameat(dfd, tmp, dfd, dk); err != nil {
		unix.Unlinkat(dfd, tmp, 0)
	}
}
