// Package needcgo stops a build without cgo with one line that says so.
//
// toolcell compiles its seccomp filters with libseccomp through cgo, and
// its stage-2 is C. Without cgo (CGO_ENABLED=0) the build would otherwise
// fail deep inside a dependency ("build constraints exclude all Go files
// in .../libseccomp-golang"). Package seccomp imports this package first,
// and its libseccomp files build only with cgo, so that the one error is
// this package's: build with CGO_ENABLED=1 and libseccomp's headers
// installed (Debian/Ubuntu: apt-get install libseccomp-dev).
package needcgo
