package seccomp

import (
	"encoding/binary"
	"fmt"
	"testing"
)

// Values from linux/seccomp.h and linux/audit.h.
const (
	retKillProcess = 0x80000000
	retErrno       = 0x00050000
	retAllow       = 0x7fff0000
	retErrnoEPERM  = retErrno | 1
	retErrnoENOSYS = retErrno | 38
	retUserNotif   = 0x7fc00000

	x32SyscallBit = 0x40000000
)

// seccompData mirrors struct seccomp_data.
type seccompData struct {
	nr   int32
	arch uint32
	ip   uint64
	args [6]uint64
}

func (d seccompData) bytes() []byte {
	b := make([]byte, 64)
	binary.LittleEndian.PutUint32(b[0:], uint32(d.nr))
	binary.LittleEndian.PutUint32(b[4:], d.arch)
	binary.LittleEndian.PutUint64(b[8:], d.ip)
	for i, a := range d.args {
		binary.LittleEndian.PutUint64(b[16+8*i:], a)
	}
	return b
}

type insn struct {
	code   uint16
	jt, jf uint8
	k      uint32
}

func decode(t testing.TB, prog []byte) []insn {
	t.Helper()
	if len(prog)%8 != 0 {
		t.Fatalf("program length %d not a multiple of 8", len(prog))
	}
	out := make([]insn, len(prog)/8)
	for i := range out {
		b := prog[8*i:]
		out[i] = insn{
			code: binary.NativeEndian.Uint16(b[0:]),
			jt:   b[2],
			jf:   b[3],
			k:    binary.NativeEndian.Uint32(b[4:]),
		}
	}
	return out
}

// Classic BPF opcode parts.
const (
	bpfLD   = 0x00
	bpfLDX  = 0x01
	bpfST   = 0x02
	bpfSTX  = 0x03
	bpfALU  = 0x04
	bpfJMP  = 0x05
	bpfRET  = 0x06
	bpfMISC = 0x07

	bpfW   = 0x00
	bpfABS = 0x20
	bpfIMM = 0x00
	bpfMEM = 0x60

	bpfK = 0x00
	bpfX = 0x08
	bpfA = 0x10

	bpfJA   = 0x00
	bpfJEQ  = 0x10
	bpfJGT  = 0x20
	bpfJGE  = 0x30
	bpfJSET = 0x40

	bpfAND = 0x50
	bpfOR  = 0x40
	bpfRSH = 0x70
	bpfLSH = 0x60
	bpfADD = 0x00
	bpfSUB = 0x10

	bpfTAX = 0x00
	bpfTXA = 0x80
)

// run evaluates a seccomp classic-BPF program the way the kernel does and
// returns the SECCOMP_RET_* value. Unsupported opcodes are an error.
func run(prog []insn, d seccompData) (uint32, error) {
	data := d.bytes()
	var a, x uint32
	var mem [16]uint32
	for pc, steps := 0, 0; pc < len(prog); pc, steps = pc+1, steps+1 {
		if steps > 100000 {
			return 0, fmt.Errorf("no termination")
		}
		in := prog[pc]
		src := func() uint32 {
			if in.code&bpfX != 0 {
				return x
			}
			return in.k
		}
		switch in.code & 0x07 {
		case bpfLD:
			switch in.code &^ 0x07 {
			case bpfW | bpfABS:
				if in.k%4 != 0 || int(in.k)+4 > len(data) {
					return 0, fmt.Errorf("pc %d: bad load offset %d", pc, in.k)
				}
				a = binary.LittleEndian.Uint32(data[in.k:])
			case bpfW | bpfIMM:
				a = in.k
			case bpfW | bpfMEM:
				a = mem[in.k%16]
			default:
				return 0, fmt.Errorf("pc %d: unsupported ld %#x", pc, in.code)
			}
		case bpfLDX:
			switch in.code &^ 0x07 {
			case bpfW | bpfIMM:
				x = in.k
			case bpfW | bpfMEM:
				x = mem[in.k%16]
			default:
				return 0, fmt.Errorf("pc %d: unsupported ldx %#x", pc, in.code)
			}
		case bpfST:
			mem[in.k%16] = a
		case bpfSTX:
			mem[in.k%16] = x
		case bpfALU:
			switch in.code & 0xf0 {
			case bpfAND:
				a &= src()
			case bpfOR:
				a |= src()
			case bpfRSH:
				a >>= src()
			case bpfLSH:
				a <<= src()
			case bpfADD:
				a += src()
			case bpfSUB:
				a -= src()
			default:
				return 0, fmt.Errorf("pc %d: unsupported alu %#x", pc, in.code)
			}
		case bpfJMP:
			op := in.code & 0xf0
			if op == bpfJA {
				pc += int(in.k)
				continue
			}
			var cond bool
			v := src()
			switch op {
			case bpfJEQ:
				cond = a == v
			case bpfJGT:
				cond = a > v
			case bpfJGE:
				cond = a >= v
			case bpfJSET:
				cond = a&v != 0
			default:
				return 0, fmt.Errorf("pc %d: unsupported jmp %#x", pc, in.code)
			}
			if cond {
				pc += int(in.jt)
			} else {
				pc += int(in.jf)
			}
		case bpfRET:
			switch in.code &^ 0x07 {
			case bpfK:
				return in.k, nil
			case bpfA:
				return a, nil
			default:
				return 0, fmt.Errorf("pc %d: unsupported ret %#x", pc, in.code)
			}
		case bpfMISC:
			switch in.code &^ 0x07 {
			case bpfTAX:
				x = a
			case bpfTXA:
				a = x
			default:
				return 0, fmt.Errorf("pc %d: unsupported misc %#x", pc, in.code)
			}
		}
	}
	return 0, fmt.Errorf("fell off the end of the program")
}

// eval is run for tests: x86_64 arch unless given, fatal on interpreter error.
func eval(t testing.TB, prog []insn, arch uint32, nr int32, args ...uint64) uint32 {
	t.Helper()
	d := seccompData{nr: nr, arch: arch, ip: 0x401000}
	copy(d.args[:], args)
	r, err := run(prog, d)
	if err != nil {
		t.Fatalf("nr=%#x arch=%#x args=%#x: %v", nr, arch, args, err)
	}
	return r
}

func retName(r uint32) string {
	switch {
	case r == retAllow:
		return "ALLOW"
	case r == retKillProcess:
		return "KILL_PROCESS"
	case r == retUserNotif:
		return "USER_NOTIF"
	case r&0xffff0000 == retErrno:
		return fmt.Sprintf("ERRNO(%d)", r&0xffff)
	}
	return fmt.Sprintf("%#x", r)
}
