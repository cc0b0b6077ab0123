package seccomp

// The ioctl group allows every request but a few. Some are refused by
// request number, some by their whole type (bits 8-15 of the request):
//
//   - TIOCSTI and TIOCLINUX inject input into, or control, the terminal.
//   - btrfs (type 0x94) and bcachefs (type 0xbc) ioctls make and destroy
//     subvolumes and snapshots. A snapshot of a subvolume the tool's
//     writable grant shows as its own (an idmapped mount of a root-owned
//     directory: every root-owned subvolume of that file system counts)
//     copies a tree from outside the grant into it, root's private files
//     and set-ID programs included, and a read-only one cannot be removed.
//     The generic clone and dedupe requests that share type 0x94
//     (FICLONE, FICLONERANGE, FIDEDUPERANGE: cp --reflink) stay allowed;
//     they copy data between files the tool already has open.

// ioctlPattern is a set of requests: those whose low 32 bits under mask
// equal value.
type ioctlPattern struct{ value, mask uint32 }

var (
	ioctlDenied = []ioctlPattern{
		{0x5412, 0xffffffff}, // TIOCSTI
		{0x541c, 0xffffffff}, // TIOCLINUX
		{0x9400, 0xff00},     // btrfs
		{0xbc00, 0xff00},     // bcachefs
	}
	// ioctlExcepted are allowed although a denied pattern covers them
	// (type and number: the size and direction bits are the kernel's).
	ioctlExcepted = []ioctlPattern{
		{0x9409, 0xffff}, // FICLONE
		{0x940d, 0xffff}, // FICLONERANGE
		{0x9436, 0xffff}, // FIDEDUPERANGE
	}
)

// ioctlBitOrder splits on the type bits first, then the number, then the
// direction and size: the denied types cost one test each.
var ioctlBitOrder = func() []uint {
	var o []uint
	for b := 15; b >= 8; b-- {
		o = append(o, uint(b))
	}
	for b := 7; b >= 0; b-- {
		o = append(o, uint(b))
	}
	for b := 31; b >= 16; b-- {
		o = append(o, uint(b))
	}
	return o
}()

// partition32 covers all 2^32 values of an argument's low 32 bits with
// masked-equality tests, each wholly allowed or wholly denied: a value is
// denied if a denied pattern matches it and no excepted one does. It walks
// the bits in order, and a subtree that no pattern can still match, or
// that a pattern matches whole, becomes one test.
func partition32(arg uint, order []uint, denied, excepted []ioctlPattern) (allow, deny []cond) {
	var walk func(i int, mask, value uint32)
	matchesAll := func(p ioctlPattern, mask, value uint32) bool {
		return p.mask&^mask == 0 && value&p.mask == p.value
	}
	compatible := func(p ioctlPattern, mask, value uint32) bool {
		return value&mask&p.mask == p.value&mask
	}
	anyOf := func(ps []ioctlPattern, f func(ioctlPattern, uint32, uint32) bool, mask, value uint32) bool {
		for _, p := range ps {
			if f(p, mask, value) {
				return true
			}
		}
		return false
	}
	walk = func(i int, mask, value uint32) {
		c := cond{arg: arg, mask: uint64(mask), value: uint64(value)}
		switch {
		case anyOf(excepted, matchesAll, mask, value):
			allow = append(allow, c)
			return
		case !anyOf(excepted, compatible, mask, value) && anyOf(denied, matchesAll, mask, value):
			deny = append(deny, c)
			return
		case !anyOf(denied, compatible, mask, value):
			allow = append(allow, c)
			return
		}
		bit := uint32(1) << order[i]
		walk(i+1, mask|bit, value)
		walk(i+1, mask|bit, value|bit)
	}
	walk(0, 0, 0)
	return allow, deny
}

func ioctlFilter() argFilter {
	allow, deny := partition32(1, ioctlBitOrder, ioctlDenied, ioctlExcepted)
	return argFilter{
		syscall: "ioctl",
		desc:    "request (arg1, low 32 bits) is not TIOCSTI (0x5412), TIOCLINUX (0x541c), or of type btrfs (0x94; FICLONE, FICLONERANGE, FIDEDUPERANGE excepted) or bcachefs (0xbc)",
		allow:   singles(allow),
		deny:    singles(deny),
	}
}
