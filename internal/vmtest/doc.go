// Package vmtest holds the self-checks of the cgroup v2 test VM
// (scripts/vm): that the VM really has a pure cgroup v2 hierarchy with the
// memory, pids and cpu controllers, that the host's /usr programs the
// sandbox tests rely on run there, and that a failing test inside the VM
// fails the go test run on the host (the exit status crosses qemu).
//
// Run it in the VM with
//
//	TOOLCELL_CI=1 TOOLCELL_HOST_KIND=vm-v2 go test -exec "$PWD/scripts/vm/vmexec" ./internal/vmtest
//
// and prove exit-status propagation with TOOLCELL_VMTEST_SELFCHECK=fail,
// which must make that command fail.
package vmtest
