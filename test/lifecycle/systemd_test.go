package lifecycle

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/meshdns/meshdns/test/harness"
)

// systemdBinary is systemd's manager, which Debian's systemd package installs.
const systemdBinary = "/lib/systemd/systemd"

// requireSystemd fails, never skips, when a throwaway systemd cannot be run
// here: the test is about what systemd does with the unit.
func requireSystemd(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(systemdBinary); err != nil {
		t.Fatalf("%s is needed to run docs/vm/meshdns.service (Debian: apt-get install systemd): %v", systemdBinary, err)
	}
	for _, cmd := range []string{"nsenter", "unshare", "mount", "umount"} {
		if _, err := exec.LookPath(cmd); err != nil {
			t.Fatalf("%s is needed to run systemd in namespaces (Debian: util-linux, mount): %v", cmd, err)
		}
	}
	fs, err := os.ReadFile("/proc/filesystems")
	if err != nil || !bytes.Contains(fs, []byte("\toverlay\n")) {
		t.Fatalf("overlayfs is needed to give systemd its own /etc, /usr/bin and /var (modprobe overlay): %v", err)
	}
	if _, _, err := cgroup2Mount(); err != nil {
		t.Fatal(err)
	}
}

// cgroup2Mount returns where this machine mounts the cgroup v2 hierarchy
// (/sys/fs/cgroup, or /sys/fs/cgroup/unified on a hybrid layout) and which
// cgroup of the hierarchy that directory is.
func cgroup2Mount() (dir, root string, err error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		pre, post, ok := strings.Cut(s.Text(), " - ")
		fields, postFields := strings.Fields(pre), strings.Fields(post)
		if ok && len(fields) >= 5 && len(postFields) >= 1 && postFields[0] == "cgroup2" {
			return fields[4], fields[3], nil
		}
	}
	return "", "", errors.New("no cgroup2 hierarchy is mounted: systemd needs one")
}

// systemd is a throwaway systemd: the machine's systemd binary, PID 1 of new
// PID, mount, IPC and cgroup namespaces inside a VM's network namespace. It
// sees only the units the test gives it, in place of the machine's, and
// /etc, /usr/bin and /var are overlays whose changes stay in the test's
// directory, so the unit's absolute paths (/usr/bin/meshdns,
// /etc/meshdns/Corefile, /var/lib/meshdns) exist as a package installs
// them without touching the machine. /run and /tmp are its own tmpfs.
type systemd struct {
	t      *testing.T
	pid    int    // systemd's PID on this machine
	dir    string // the overlays' upper and work directories, the console
	cgroup string // its cgroup, the root of its cgroup namespace
	p      *harness.Process
}

// bootSystemd starts systemd in vm with units (file name → content) as its
// only units and startUnit as the target it boots into. etc and usrBin are
// files (path relative to /etc or /usr/bin → content and mode) laid into
// the overlays before it starts.
func bootSystemd(t *testing.T, vm *harness.VM, units map[string]string, startUnit string, etc, usrBin map[string]file) *systemd {
	t.Helper()
	requireSystemd(t)
	dir := t.TempDir()
	for _, d := range []string{"units", "etc.upper", "etc.work", "usr.upper", "usr.work", "var.upper", "var.work"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, data := range units {
		writeFile(t, filepath.Join(dir, "units", name), file{data: []byte(data), mode: 0o644})
	}
	for name, f := range etc {
		writeFile(t, filepath.Join(dir, "etc.upper", name), f)
	}
	for name, f := range usrBin {
		writeFile(t, filepath.Join(dir, "usr.upper", name), f)
	}
	// The overlay's /etc/passwd and /etc/group: the machine's, with the
	// unit's user, as the package's postinst adds it.
	for _, db := range []struct{ name, line string }{
		{"passwd", "meshdns:x:990:990:meshdns:/nonexistent:/usr/sbin/nologin\n"},
		{"group", "meshdns:x:990:\n"},
	} {
		data, err := os.ReadFile("/etc/" + db.name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(data, []byte("\nmeshdns:")) && !bytes.HasPrefix(data, []byte("meshdns:")) {
			data = append(data, db.line...)
		}
		writeFile(t, filepath.Join(dir, "etc.upper", db.name), file{data: data, mode: 0o644})
	}
	consolePath := openConsole(t, filepath.Join(dir, "console"))

	mnt, root, err := cgroup2Mount()
	if err != nil {
		t.Fatal(err)
	}
	removeStaleCgroups(mnt)
	name := fmt.Sprintf("meshdns-test-%d-%d", os.Getpid(), rand.Uint32())
	cgroup := filepath.Join(mnt, name)
	if err := os.Mkdir(cgroup, 0o755); err != nil {
		t.Fatalf("cgroup for systemd: %v", err)
	}
	t.Cleanup(func() { _ = removeCgroup(cgroup) })

	// The script runs as PID 1 of the new namespaces. Everything under
	// dir is mounted before /tmp is replaced. systemd logs to its console,
	// a terminal whose other end the test reads.
	boot := fmt.Sprintf(`set -e
D=%s
mount --make-rprivate /
mount --bind %s /dev/console
mount -t overlay overlay -o lowerdir=/etc,upperdir=$D/etc.upper,workdir=$D/etc.work /etc
mount -t overlay overlay -o lowerdir=/usr/bin,upperdir=$D/usr.upper,workdir=$D/usr.work /usr/bin
mount -t overlay overlay -o lowerdir=/var,upperdir=$D/var.upper,workdir=$D/var.work /var
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /etc/systemd/system
mount --bind $D/units /lib/systemd/system
umount -R /sys/fs/cgroup
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t tmpfs tmpfs /tmp
export container=meshdns-test
export SYSTEMD_COLORS=0
exec %s --system --unit=%s --log-target=console --log-level=debug </dev/null
`, shellQuote(dir), consolePath, systemdBinary, startUnit)
	writeFile(t, filepath.Join(dir, "boot.sh"), file{data: []byte(boot), mode: 0o755})
	// This shell joins the cgroup, so that the cgroup namespace unshare
	// makes is rooted there: through a cgroup2 mount of its own, as ip
	// netns exec gave the VM a /sys without the machine's. --kill-child
	// takes systemd, and with it every process of its PID namespace, down
	// with unshare.
	script := fmt.Sprintf("mount -t cgroup2 cgroup2 /sys/fs/cgroup && echo $$ > /sys/fs/cgroup/%s/cgroup.procs && "+
		"exec unshare --pid --kill-child=SIGKILL --mount --ipc --cgroup --mount-proc sh %s",
		shellQuote(filepath.Join(strings.TrimPrefix(root, "/"), name)), shellQuote(filepath.Join(dir, "boot.sh")))
	p, err := vm.Start("systemd", []string{"sh", "-c", script}, filepath.Join(dir, "unshare.log"))
	if err != nil {
		t.Fatal(err)
	}
	s := &systemd{t: t, dir: dir, cgroup: cgroup, p: p}
	t.Cleanup(s.stop)

	deadline := time.Now().Add(10 * time.Second)
	for s.pid == 0 {
		if p.Exited() || time.Now().After(deadline) {
			t.Fatalf("systemd did not start: %v\n%s\nconsole:\n%s", p.Err(), p.LogTail(20), s.console(20))
		}
		s.pid = childNamed(p.Pid(), "systemd")
		time.Sleep(20 * time.Millisecond)
	}
	for {
		out, err := s.sh("systemctl is-system-running", nil)
		state := strings.TrimSpace(out)
		if err == nil && state == "running" || state == "degraded" {
			break
		}
		if p.Exited() || time.Now().After(deadline) {
			t.Fatalf("systemd is %q after 10 s (%v)\nconsole:\n%s", state, err, s.console(40))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s
}

// openConsole makes a pseudo-terminal for systemd's console (it logs only
// to a terminal) and copies what it gets to path. It returns the master and
// the path of the terminal.
func openConsole(t *testing.T, path string) string {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("a terminal for systemd's console: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		master.Close()
		t.Fatalf("unlock the terminal: %v", err)
	}
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		master.Close()
		t.Fatalf("the terminal's number: %v", err)
	}
	tty := fmt.Sprintf("/dev/pts/%d", n)
	// Held open so that reading the master waits for systemd rather than
	// failing before it has opened its console.
	slave, err := os.OpenFile(tty, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		t.Fatalf("open %s: %v", tty, err)
	}
	out, err := os.Create(path)
	if err != nil {
		master.Close()
		slave.Close()
		t.Fatal(err)
	}
	go func() {
		_, _ = io.Copy(out, master)
		out.Close()
	}()
	t.Cleanup(func() {
		slave.Close()
		master.Close()
	})
	return tty
}

// file is a file's content and mode.
type file struct {
	data []byte
	mode os.FileMode
}

func writeFile(t *testing.T, path string, f file) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, f.data, f.mode); err != nil {
		t.Fatal(err)
	}
}

// childNamed returns the PID of the child of pid whose command is name, or 0.
func childNamed(pid int, name string) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return 0
	}
	for _, f := range strings.Fields(string(data)) {
		child, err := strconv.Atoi(f)
		if err != nil {
			continue
		}
		if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", child)); err == nil && strings.TrimSpace(string(comm)) == name {
			return child
		}
	}
	return 0
}

// removeStaleCgroups removes the cgroups of earlier runs that were killed
// before their cleanup; rmdir refuses a cgroup that still has processes.
func removeStaleCgroups(root string) {
	entries, _ := os.ReadDir(root)
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), "meshdns-test-") {
			_ = removeCgroup(filepath.Join(root, e.Name()))
		}
	}
}

// removeCgroup removes a cgroup and the ones systemd made below it, deepest
// first.
func removeCgroup(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := removeCgroup(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return syscall.Rmdir(dir)
}

// stop kills systemd, which kills its PID namespace, and removes its cgroup.
func (s *systemd) stop() {
	if s.t.Failed() {
		s.t.Logf("systemd's console, last lines:\n%s", s.console(60))
	}
	if s.pid != 0 {
		_ = syscall.Kill(s.pid, syscall.SIGKILL)
	}
	s.p.Stop()
	var err error
	for range 50 {
		if err = removeCgroup(s.cgroup); err == nil || errors.Is(err, os.ErrNotExist) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Logf("remove cgroup %s: %v", s.cgroup, err)
}

// sh runs script with sh inside systemd's mount and PID namespaces (its
// systemctl, its /usr/bin, PIDs as systemd numbers them), stdin from in.
func (s *systemd) sh(script string, in io.Reader) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", "-t", strconv.Itoa(s.pid), "-m", "-p", "sh", "-c", script)
	cmd.Stdin = in
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s: %v: %s", script, err, strings.TrimSpace(errOut.String()))
	}
	return out.String(), nil
}

// mustSh is sh, failing the test on an error.
func (s *systemd) mustSh(script string, in io.Reader) string {
	s.t.Helper()
	out, err := s.sh(script, in)
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

// show returns properties of unit, as systemctl show gives them.
func (s *systemd) show(unit string, props ...string) map[string]string {
	s.t.Helper()
	out := s.mustSh("systemctl show "+unit+" -p "+strings.Join(props, ","), nil)
	m := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			m[k] = v
		}
	}
	return m
}

// console returns the last n lines systemd logged.
func (s *systemd) console(n int) string {
	data, err := os.ReadFile(filepath.Join(s.dir, "console"))
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// grepConsole returns the lines systemd logged that contain any of subs.
func (s *systemd) grepConsole(subs ...string) string {
	data, err := os.ReadFile(filepath.Join(s.dir, "console"))
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		for _, sub := range subs {
			if strings.Contains(line, sub) {
				out = append(out, line)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}
