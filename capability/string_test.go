package capability

import (
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	s := builderPolicy().WithEnv("API_TOKEN", "s3cr3t-value")
	got := s.String()
	for _, want := range []string{
		`policy "report"`,
		"base system view",
		"read  /data/in.json",
		"read  dir /data/lib",
		"write /data/log.txt",
		"write dir /data/out",
		"exec  /usr/bin/python3",
		"workdir /work",
		"tmp 32MiB",
		"env API_TOKEN, LANG, MODE (values hidden)",
		"memory 256MiB, pids 64, cpu 0.5, timeout 1m30s, max output 1MiB",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("String() does not contain %q:\n%s", want, got)
		}
	}
	for _, secret := range []string{"s3cr3t-value", "C.UTF-8", "0755"} {
		if strings.Contains(got, secret) {
			t.Errorf("String() shows env value %q:\n%s", secret, got)
		}
	}
}

func TestStringEmptyAndQuoting(t *testing.T) {
	got := New().String()
	for _, want := range []string{"no file access", "env empty", "memory 512MiB, pids 128, cpu 1, timeout 1m0s, max output 16MiB"} {
		if !strings.Contains(got, want) {
			t.Errorf("String() does not contain %q:\n%s", want, got)
		}
	}
	if got := New().WithReadDirs("/data").WithFollowSymlinks("/data").String(); !strings.Contains(got, "symlinks followed for /data\n") {
		t.Errorf("String() does not show follow_symlinks:\n%s", got)
	}
	got = New().WithReadFiles("/a\nwrite /etc").String()
	if strings.Contains(got, "\nwrite /etc") {
		t.Errorf("a path forged a line:\n%s", got)
	}
}
