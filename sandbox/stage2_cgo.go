package sandbox

/*
#cgo CFLAGS: -Wall -Wextra -O2
#cgo LDFLAGS: -Wl,-z,now
#include "stage2.h"
*/
import "C"

// The wire contract with the C stage-2 (stage2.h), taken from the header so
// the two sides cannot drift apart.
const (
	stage2Env       = C.TC_ENV
	stage2EnvDirect = C.TC_ENV_DIRECT

	msgPlan    = C.TC_MSG_PLAN
	msgExec    = C.TC_MSG_EXEC
	msgStarted = C.TC_MSG_STARTED
	msgExit    = C.TC_MSG_EXIT
	msgError   = C.TC_MSG_ERROR
	msgDone    = C.TC_MSG_DONE
	msgSockets = C.TC_MSG_SOCKETS
	msgPlanFDs = C.TC_MSG_PLAN_FDS
	msgReady   = C.TC_MSG_READY
	msgFork    = C.TC_MSG_FORK
	msgForked  = C.TC_MSG_FORKED

	fdChunk    = C.TC_FD_CHUNK
	maxPlanFDs = C.TC_MAX_PLAN_FDS

	sockTCP    = C.TC_SOCK_TCP
	sockUDP    = C.TC_SOCK_UDP
	sockTCP6   = C.TC_SOCK_TCP6
	sockUDP6   = C.TC_SOCK_UDP6
	maxSockets = C.TC_MAX_SOCKETS

	opMkdir    = C.TC_OP_MKDIR
	opFile     = C.TC_OP_FILE
	opSymlink  = C.TC_OP_SYMLINK
	opBind     = C.TC_OP_BIND
	opTmpfs    = C.TC_OP_TMPFS
	opProc     = C.TC_OP_PROC
	opMaskFile = C.TC_OP_MASK_FILE
	opMaskDir  = C.TC_OP_MASK_DIR
	opReadonly = C.TC_OP_READONLY
	opSetattr  = C.TC_OP_SETATTR

	planDropGroups  = C.TC_PLAN_DROP_GROUPS
	planRunIDs      = C.TC_PLAN_RUN_IDS
	maxUserLimits   = C.TC_MAX_USER_LIMITS
	planNotify      = C.TC_PLAN_NOTIFY
	planRoute4      = C.TC_PLAN_ROUTE4
	planRoute6      = C.TC_PLAN_ROUTE6
	planMemfd       = C.TC_PLAN_MEMFD_NOEXEC
	planIDMapOpt    = C.TC_PLAN_IDMAP_OPTIONAL
	planReady       = C.TC_PLAN_READY
	planCgroupClone = C.TC_PLAN_CGROUP_CLONE
	maxIDMaps       = C.TC_MAX_IDMAPS
	nsCount         = C.TC_NS_COUNT
	maxCgroupFDs    = C.TC_MAX_CGROUP_FDS
	maxMsg          = C.TC_MAX_MSG
	maxLLRules      = C.TC_MAX_LL_RULES
	maxLLPorts      = C.TC_MAX_LL_PORTS
	exitSetup       = C.TC_EXIT_SETUP
)
