//go:build !cgo

package needcgo

var _ = toolcell_needs_cgo_and_libseccomp_dev__build_with_CGO_ENABLED_1
