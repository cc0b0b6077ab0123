package vmtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeQEMU is a qemu-system-x86_64 stand-in: with KVM it behaves as
// $FAKE_KVM says (abort as nested virtualisation can, or boot to the
// kernel's panic), with TCG it "runs" the guest: it writes what vmexec
// expects back from one and exits as isa-debug-exit does for status 0. It
// logs each call's accelerator.
const fakeQEMU = `#!/bin/sh
accel= serial= run=
while [ $# -gt 0 ]; do
  case $1 in
    -accel) accel=$2; shift ;;
    -serial) serial=${2#file:}; shift ;;
    -virtfs) case $2 in *mount_tag=run,*) run=${2#local,path=}; run=${run%%,*} ;; esac; shift ;;
  esac
  shift
done
echo "$accel" >> "$FAKE_LOG"
case $accel in
  kvm)
    if [ "$FAKE_KVM" = broken ]; then
      echo "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x2000000" >&2
      exit 1
    fi
    echo "Kernel panic - not syncing: VFS: Unable to mount root fs" > "$serial"
    [ -n "$run" ] || exit 0 ;;
esac
echo "guest ran with $accel" > "$run/stdout"
exit 1
`

// vmexec's accelerator choice: a /dev/kvm whose guest does not boot (as
// under nested virtualisation) falls back to TCG and says so; a working
// one is used; TOOLCELL_VM_ACCEL forces either.
func TestVMExecAccelFallback(t *testing.T) {
	vmexec, err := filepath.Abs("../../scripts/vm/vmexec")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, kvm, force string
		want             string // accelerator the guest ran with
		probes           int    // KVM probe boots
		says             string // on stderr
	}{
		{"broken kvm", "broken", "", "tcg,thread=single", 1, "a KVM guest did not boot"},
		{"working kvm", "works", "", "kvm", 1, ""},
		{"forced tcg", "works", "tcg", "tcg,thread=single", 0, ""},
		{"no kvm device", "none", "", "tcg,thread=single", 0, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			bin := filepath.Join(dir, "bin")
			if err := os.Mkdir(bin, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(bin, "qemu-system-x86_64"), []byte(fakeQEMU), 0o755); err != nil {
				t.Fatal(err)
			}
			kvmDev := filepath.Join(dir, "kvm")
			if c.kvm != "none" {
				if err := os.WriteFile(kvmDev, nil, 0o666); err != nil {
					t.Fatal(err)
				}
			}
			for _, f := range []string{"vmlinuz", "initrd"} {
				if err := os.WriteFile(filepath.Join(dir, f), []byte("not a kernel"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			log := filepath.Join(dir, "qemu.log")
			cmd := exec.Command(vmexec, "/bin/true")
			cmd.Env = append(os.Environ(),
				"PATH="+bin+":"+os.Getenv("PATH"), "TMPDIR="+dir,
				"TOOLCELL_VM_KERNEL="+filepath.Join(dir, "vmlinuz"), "TOOLCELL_VM_INITRD="+filepath.Join(dir, "initrd"),
				"TOOLCELL_VM_KVM_DEV="+kvmDev, "TOOLCELL_VM_ACCEL="+c.force,
				"FAKE_KVM="+c.kvm, "FAKE_LOG="+log)
			if c.force == "" {
				cmd.Env = append(cmd.Env, "TOOLCELL_VM_ACCEL=auto")
			}
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("vmexec: %v\nstdout %s\nstderr %s", err, out, stderr.String())
			}
			if got := strings.TrimSpace(string(out)); got != "guest ran with "+c.want {
				t.Errorf("stdout %q, want the guest run with %s", got, c.want)
			}
			b, _ := os.ReadFile(log)
			calls := strings.Fields(string(b))
			if n := strings.Count(string(b), "kvm\n"); n != c.probes+boolInt(c.want == "kvm") {
				t.Errorf("qemu calls %q: want %d KVM probe(s)", calls, c.probes)
			}
			if !strings.Contains(stderr.String(), c.says) {
				t.Errorf("stderr %q lacks %q", stderr.String(), c.says)
			}
			// The verdict is kept: a second run does not probe again.
			if c.probes > 0 {
				cmd2 := exec.Command(vmexec, "--which-accel")
				cmd2.Env = cmd.Env
				o, err := cmd2.Output()
				if err != nil {
					t.Fatal(err)
				}
				if want := strings.SplitN(c.want, ",", 2)[0]; strings.TrimSpace(string(o)) != want {
					t.Errorf("--which-accel %q, want %s", o, want)
				}
				b2, _ := os.ReadFile(log)
				if string(b2) != string(b) {
					t.Errorf("--which-accel probed again: %q", b2)
				}
			}
		})
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
