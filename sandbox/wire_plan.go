package sandbox

/*
#include "stage2.h"
*/
import "C"

import (
	"fmt"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// encodePlan lays out the PLAN as stage2.h describes it. Its fixed-size
// parts are stage2.h's structs, filled here field by field through cgo:
// a field renamed, removed or retyped there fails this build, and both
// sides use the compiler's size and padding.
func encodePlan(flags uint32, c *compiled, bpf []byte, fsize uint64, ids planIDs, ncg int, socks []planSock, ll llPlan) []byte {
	rl := []C.struct_tc_plan_rlimit{
		{resource: unix.RLIMIT_CORE, cur: 0, max: 0},
		{resource: unix.RLIMIT_NOFILE, cur: 1024, max: 1024},
		{resource: unix.RLIMIT_FSIZE, cur: C.uint64_t(fsize), max: C.uint64_t(fsize)},
	}
	m := u32msg(msgPlan)
	m = appendWire(m, &C.struct_tc_plan_head{
		flags: C.uint32_t(flags), uid: sandboxUID, gid: sandboxGID, last_cap: C.uint32_t(lastCap()),
		run_uid: C.uint32_t(ids.uid), run_gid: C.uint32_t(ids.gid),
		ncgfds: C.uint32_t(ncg), nfiles: C.uint32_t(len(c.files)),
		nidmaps: C.uint32_t(len(c.owners)), nops: C.uint32_t(len(c.ops)), nrlim: C.uint32_t(len(rl)),
		nulim: C.uint32_t(len(ids.limits)), nfilter: C.uint32_t(len(bpf) / 8), nsock: C.uint32_t(len(socks)),
	})
	m = putStr(m, "/tmp")
	m = putStr(m, sandboxHost)
	m = putStr(m, "size=4m,nr_inodes=4096,mode=0755")
	m = putStr(m, ids.uidMap)
	m = putStr(m, ids.gidMap)
	// An idmapped bind shows its owner's files as the run's host ids,
	// which the sandbox user is mapped to.
	for _, o := range c.owners {
		m = putStr(m, fmt.Sprintf("%d %d 1\n", o.uid, ids.uid))
		m = putStr(m, fmt.Sprintf("%d %d 1\n", o.gid, ids.gid))
	}
	for _, o := range c.ops {
		m = appendWire(m, &C.struct_tc_plan_op{kind: C.uint32_t(o.kind), attr: C.uint32_t(o.attr), mode: C.uint32_t(o.mode),
			fd: C.int32_t(o.fd), idmap: C.uint32_t(o.idmap)}) // fd: an index into c.files, or -1
		m = putStr(m, o.a)
		m = putStr(m, o.b)
	}
	for i := range rl {
		m = appendWire(m, &rl[i])
	}
	for _, l := range ids.limits {
		m = putStr(m, l.name)
		m = putStr(m, strconv.FormatInt(l.value, 10))
	}
	m = append(m, bpf...)
	for _, s := range socks {
		m = appendWire(m, &C.struct_tc_plan_sock{kind: C.uint32_t(s.kind), addr: C.uint32_t(s.addr), port: C.uint32_t(s.port)})
	}
	return ll.encode(m)
}

// appendLandlockHead and appendLandlockPort lay out the Landlock part's
// structs (stage2.h).
func appendLandlockHead(m []byte, abi, nrules, nports int, fs, net, scoped uint64) []byte {
	return appendWire(m, &C.struct_tc_plan_landlock{abi: C.uint32_t(abi), nrules: C.uint32_t(nrules), nports: C.uint32_t(nports),
		fs: C.uint64_t(fs), net: C.uint64_t(net), scoped: C.uint64_t(scoped)})
}

func appendLandlockPort(m []byte, access, port uint64) []byte {
	return appendWire(m, &C.struct_tc_plan_llport{access: C.uint64_t(access), port: C.uint64_t(port)})
}

// appendWire appends the bytes of one of stage2.h's wire structs, as the
// C compiler laid it out (this host's byte order, its padding).
func appendWire[T C.struct_tc_plan_head | C.struct_tc_plan_op | C.struct_tc_plan_rlimit | C.struct_tc_plan_sock | C.struct_tc_plan_landlock | C.struct_tc_plan_llport](m []byte, v *T) []byte {
	return append(m, unsafe.Slice((*byte)(unsafe.Pointer(v)), unsafe.Sizeof(*v))...)
}
