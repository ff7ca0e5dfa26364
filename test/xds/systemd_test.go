package xds

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshdns/meshdns/test/harness"
)

// TestSystemdUnit checks docs/vm/meshdns.service with systemd-analyze
// verify, with ExecStart pointing at the built bin/meshdns instead of the
// path the package installs it to. A missing systemd-analyze fails the test.
func TestSystemdUnit(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatalf("systemd-analyze is needed to check docs/vm/meshdns.service (Debian: apt-get install systemd): %v", err)
	}
	unit, err := os.ReadFile(filepath.Join(harness.RepoRoot(t), "docs", "vm", "meshdns.service"))
	if err != nil {
		t.Fatal(err)
	}
	const installed = "ExecStart=/usr/bin/meshdns "
	if n := strings.Count(string(unit), installed); n != 1 {
		t.Fatalf("docs/vm/meshdns.service: %q occurs %d times, want once (the package installs the binary there)", installed, n)
	}
	bin := filepath.Join(filepath.Dir(harness.CoreDNSBinary(t)), "meshdns")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("bin/meshdns, the binary the unit runs, is needed (make build): %v", err)
	}
	good := strings.Replace(string(unit), installed, "ExecStart="+bin+" ", 1)

	verify := func(t *testing.T, unit string) (string, error) {
		t.Helper()
		// The unit's name matters to systemd: the file is meshdns.service.
		path := filepath.Join(t.TempDir(), "meshdns.service")
		if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(analyze, "verify", "--man=no", path).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}

	t.Run("as shipped", func(t *testing.T) {
		// systemd-analyze exits 0 on warnings (unknown keys, bad values):
		// any output is a failure.
		if out, err := verify(t, good); err != nil || out != "" {
			t.Errorf("systemd-analyze verify docs/vm/meshdns.service: %v\n%s\nunit:\n%s", err, out, good)
		}
	})

	// The check sees mistakes: a misspelt key, a bad value, a missing binary.
	for _, c := range []struct{ name, old, new string }{
		{"misspelt key", "NoNewPrivileges=yes", "NoNewPrivilege=yes"},
		{"bad value", "Restart=always", "Restart=sometimes"},
		{"missing binary", "ExecStart=" + bin, "ExecStart=/nonexistent/meshdns"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(good, c.old) {
				t.Fatalf("the unit has no %q", c.old)
			}
			if out, err := verify(t, strings.Replace(good, c.old, c.new, 1)); err == nil && out == "" {
				t.Errorf("systemd-analyze verify says nothing about %s (%q)", c.name, c.new)
			}
		})
	}
}
