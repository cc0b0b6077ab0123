// Package testenv is the test plumbing shared by every toolcell test package.
//
// scripts/test.sh runs the whole suite in three environments and tells the
// tests which one through environment variables:
//
//	TOOLCELL_CI                     non-empty under scripts/test.sh (CI and
//	                                local runs of the script). Tests then never
//	                                skip: a missing prerequisite is a failure.
//	TOOLCELL_HOST_KIND              "root-hybrid": root on a hybrid cgroup
//	                                host (v1 memory/pids/cpu, v2 only for
//	                                hugetlb); "rootless-hybrid": the same host,
//	                                as uid/gid 65534 with no capabilities;
//	                                "vm-v2": root in a throwaway qemu VM with a
//	                                pure cgroup v2 hierarchy (scripts/vm).
//	                                Empty when go test is run by hand.
//	TOOLCELL_CGROUP_PARENT_MEMORY   rootless-hybrid only: v1 cgroup paths,
//	TOOLCELL_CGROUP_PARENT_PIDS     relative to each hierarchy's root (as in
//	TOOLCELL_CGROUP_PARENT_CPU      /proc/self/cgroup), of an empty cgroup
//	TOOLCELL_CGROUP_PARENT_CPUACCT  that scripts/test.sh created and chowned to
//	                                uid 65534, so the unprivileged test may
//	                                create run cgroups below it and move its
//	                                own children in. See CgroupParent.
//	TOOLCELL_CGROUP_PARENT          a delegated cgroup v2 parent (path relative
//	                                to the v2 root), when the harness provides
//	                                one (rootless on a pure v2 host).
//
// The rule for skipping: Require, RequireRoot and RequireUserNS skip when a
// developer runs go test by hand without the prerequisite, and fail under
// TOOLCELL_CI. The only skip allowed in CI is NotApplicable, whose reason is
// written in the test source next to the host kinds it applies to.
package testenv
