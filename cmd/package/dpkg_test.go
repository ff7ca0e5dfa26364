package main

import (
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// requireDpkg skips, or fails where MESHDNS_REQUIRE_DPKG is set (CI), when
// the machine cannot run the dpkg test.
func requireDpkg(t *testing.T) {
	t.Helper()
	miss := func(why string) {
		if os.Getenv("MESHDNS_REQUIRE_DPKG") != "" {
			t.Fatalf("MESHDNS_REQUIRE_DPKG is set but %s", why)
		}
		t.Skip(why)
	}
	if os.Geteuid() != 0 {
		miss("not root: dpkg --root chroots into the tree to run the maintainer scripts")
	}
	for _, p := range append([]string{"dpkg", "dpkg-query", "ldd"}, chrootTools...) {
		if _, err := exec.LookPath(p); err != nil {
			miss(fmt.Sprintf("no %s here", p))
		}
	}
}

// chrootTools are the programs the maintainer scripts run, copied from
// the host with their libraries: the throwaway root is a Debian system
// just large enough for them. systemctl is left out on purpose: the
// scripts must get by without it, as in a chroot or an image build.
var chrootTools = []string{"sh", "getent", "useradd", "install", "grep", "rm", "rmdir"}

// makeChroot lays out a merged-/usr tree with the tools, a minimal /etc
// and an empty dpkg database.
func makeChroot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"usr/bin", "usr/sbin", "usr/lib", "usr/lib64", "etc", "dev", "tmp", "run",
		"var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers", "var/log"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range []string{"bin", "sbin", "lib", "lib64"} {
		if err := os.Symlink("usr/"+l, filepath.Join(root, l)); err != nil {
			t.Fatal(err)
		}
	}
	copyIn := func(hostPath string) {
		data, err := os.ReadFile(hostPath)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(root, hostPath)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, tool := range chrootTools {
		p, _ := exec.LookPath(tool)
		copyIn(p)
		out, _ := exec.Command("ldd", p).Output() // a static binary has no libraries: an error, nothing to copy
		for _, f := range strings.Fields(string(out)) {
			if strings.HasPrefix(f, "/") {
				copyIn(f)
			}
		}
	}
	// The scripts redirect to /dev/null.
	if err := syscall.Mknod(filepath.Join(root, "dev/null"), syscall.S_IFCHR|0o666, int(1<<8|3)); err != nil {
		t.Skipf("mknod /dev/null: %v", err)
	}
	os.Chmod(filepath.Join(root, "dev/null"), 0o666)
	etc := map[string]string{
		"etc/passwd":          "root:x:0:0:root:/root:/bin/sh\n",
		"etc/group":           "root:x:0:\n",
		"etc/shadow":          "root:*:19000:0:99999:7:::\n",
		"etc/gshadow":         "root:*::\n",
		"etc/nsswitch.conf":   "passwd: files\ngroup: files\nshadow: files\n",
		"var/lib/dpkg/status": "",
	}
	if b, err := os.ReadFile("/etc/login.defs"); err == nil {
		etc["etc/login.defs"] = string(b)
	}
	for p, c := range etc {
		if err := os.WriteFile(filepath.Join(root, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// dpkg runs dpkg on the tree; the maintainer scripts run chrooted into it.
// Dependencies are not there (an empty database): --force-depends.
func dpkg(t *testing.T, root string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("dpkg", append([]string{"--root=" + root, "--force-depends", "--force-unsafe-io"}, args...)...)
	cmd.Env = append(os.Environ(), "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND=noninteractive")
	out, err := cmd.CombinedOutput()
	t.Logf("dpkg %s: %v\n%s", strings.Join(args, " "), err, out)
	return string(out), err
}

func dpkgStatus(t *testing.T, root string) string {
	t.Helper()
	out, _ := exec.Command("dpkg-query", "--admindir="+filepath.Join(root, "var/lib/dpkg"),
		"-W", "-f=${Status} ${Version}", "meshdns").CombinedOutput()
	return strings.TrimSpace(string(out))
}

// fakeMeshdns answers meshdns-setup install's checks: ready, and DNS.
func fakeMeshdns(t *testing.T) (readyURL, dnsAddr string) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "OK") }))
	t.Cleanup(srv.Close)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			n, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			buf[2] |= 0x80
			pc.WriteTo(buf[:n], addr)
		}
	}()
	return srv.URL + "/ready", pc.LocalAddr().String()
}

type fileState struct {
	mode       fs.FileMode
	uid, gid   uint32
	content    string
	target     string
	modTime    time.Time
	isSymlink  bool
	notPresent bool
}

func stat(t *testing.T, p string) fileState {
	t.Helper()
	fi, err := os.Lstat(p)
	if os.IsNotExist(err) {
		return fileState{notPresent: true}
	}
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	s := fileState{mode: fi.Mode(), uid: st.Uid, gid: st.Gid, modTime: fi.ModTime()}
	if fi.Mode()&fs.ModeSymlink != 0 {
		s.isSymlink = true
		s.target, _ = os.Readlink(p)
	} else if fi.Mode().IsRegular() {
		b, _ := os.ReadFile(p)
		s.content = string(b)
	}
	return s
}

func passwdEntry(t *testing.T, root, name string) (uid, gid int, ok bool) {
	b, _ := os.ReadFile(filepath.Join(root, "etc/passwd"))
	for line := range strings.Lines(string(b)) {
		f := strings.Split(strings.TrimSpace(line), ":")
		if len(f) >= 7 && f[0] == name {
			uid, _ = strconv.Atoi(f[2])
			gid, _ = strconv.Atoi(f[3])
			return uid, gid, true
		}
	}
	return 0, 0, false
}

// The .deb installed, upgraded, removed and purged by dpkg into a throwaway
// root, maintainer scripts and all (chrooted there, without systemd):
// the user and directories are made, the upstreams written from the tree's
// resolv.conf, the operator's Corefile edit survives upgrades, removal puts
// back the resolv.conf meshdns-setup install replaced, byte for byte, and
// refuses to go on when resolv.conf names meshdns by hand.
func TestDpkgRoot(t *testing.T) {
	requireDpkg(t)
	deb1, _ := v1(t)
	root := makeChroot(t)
	resolv := filepath.Join(root, "etc/resolv.conf")
	const origResolv = "# the VM's own\nnameserver 192.0.2.53\nsearch corp.example\noptions timeout:2\n"
	if err := os.WriteFile(resolv, []byte(origResolv), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)
	os.Chtimes(resolv, old, old)
	before := stat(t, resolv)

	// Install.
	if out, err := dpkg(t, root, "-i", deb1); err != nil {
		t.Fatalf("dpkg -i: %v\n%s", err, out)
	}
	if st := dpkgStatus(t, root); st != "install ok installed 1.0.0" {
		t.Fatalf("after dpkg -i: %q", st)
	}
	uid, gid, ok := passwdEntry(t, root, "meshdns")
	if !ok || uid == 0 || uid >= 1000 {
		t.Fatalf("postinst made no meshdns system user: %v %d", ok, uid)
	}
	for _, c := range []struct {
		path     string
		mode     fs.FileMode
		uid, gid int
	}{
		{"usr/bin/meshdns", 0o755, 0, 0},
		{"usr/bin/meshdns-setup", 0o755, 0, 0},
		{"usr/lib/systemd/system/meshdns.service", 0o644, 0, 0},
		{"etc/meshdns/Corefile", 0o644, 0, 0},
		{"var/lib/meshdns", fs.ModeDir | 0o750, uid, gid},
		{"etc/meshdns/istio", fs.ModeDir | 0o750, 0, gid},
		{"etc/meshdns/upstream.conf", 0o644, 0, 0},
	} {
		s := stat(t, filepath.Join(root, c.path))
		if s.notPresent || s.mode != c.mode || int(s.uid) != c.uid || int(s.gid) != c.gid {
			t.Errorf("/%s: present %v mode %v owner %d:%d, want %v %d:%d", c.path, !s.notPresent, s.mode, s.uid, s.gid, c.mode, c.uid, c.gid)
		}
	}
	up, _ := os.ReadFile(filepath.Join(root, "etc/meshdns/upstream.conf"))
	if !strings.Contains(string(up), "\nnameserver 192.0.2.53\n") || strings.Count(string(up), "nameserver") != 1 {
		t.Errorf("upstream.conf, from the tree's resolv.conf:\n%s", up)
	}
	if s := stat(t, resolv); s != before {
		t.Errorf("installing the package changed resolv.conf: %+v", s)
	}
	conffiles, _ := exec.Command("dpkg-query", "--admindir="+filepath.Join(root, "var/lib/dpkg"), "-W", "-f=${Conffiles}", "meshdns").Output()
	if !strings.Contains(string(conffiles), "/etc/meshdns/Corefile ") {
		t.Errorf("dpkg's conffiles for meshdns: %q", conffiles)
	}

	// The operator edits the Corefile; upgrades keep the edit, whether the
	// packaged Corefile changed (dpkg asks; non-interactively, the old one
	// is kept) or not (dpkg keeps it silently).
	corefile := filepath.Join(root, "etc/meshdns/Corefile")
	orig, _ := os.ReadFile(corefile)
	edited := string(orig) + "# the operator's edit\n"
	if err := os.WriteFile(corefile, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	c2 := testConfig(t, "1.0.1")
	c2.Fast = true
	deb2, _, err := build(c2)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := dpkg(t, root, "-i", deb2); err != nil {
		t.Fatalf("upgrade to 1.0.1: %v\n%s", err, out)
	}
	c3 := testConfig(t, "1.0.2")
	c3.Fast = true
	changed := filepath.Join(t.TempDir(), "Corefile")
	os.WriteFile(changed, append(orig, "# a new default\n"...), 0o644)
	c3.Corefile = changed
	deb3, _, err := build(c3)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := dpkg(t, root, "--force-confdef", "--force-confold", "-i", deb3); err != nil {
		t.Fatalf("upgrade to 1.0.2: %v\n%s", err, out)
	}
	if st := dpkgStatus(t, root); st != "install ok installed 1.0.2" {
		t.Errorf("after the upgrades: %q", st)
	}
	if got, _ := os.ReadFile(corefile); string(got) != edited {
		t.Errorf("an upgrade overwrote the operator's Corefile:\n%s", got)
	}
	if u2, _, _ := passwdEntry(t, root, "meshdns"); u2 != uid {
		t.Errorf("an upgrade changed the meshdns user: %d, was %d", u2, uid)
	}

	// meshdns-setup install, as the operator runs it once meshdns is ready,
	// then the package's removal undoes it.
	readyURL, dnsAddr := fakeMeshdns(t)
	setup := exec.Command(filepath.Join(root, "usr/bin/meshdns-setup"), "-root", root, "install", "-ready", readyURL, "-probe", dnsAddr, "-timeout", "10s")
	if out, err := setup.CombinedOutput(); err != nil {
		t.Fatalf("meshdns-setup install: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(resolv); !strings.Contains(string(b), "nameserver 127.0.0.2\n") {
		t.Fatalf("after meshdns-setup install resolv.conf:\n%s", b)
	}
	if out, err := dpkg(t, root, "-r", "meshdns"); err != nil {
		t.Fatalf("dpkg -r: %v\n%s", err, out)
	}
	if s := stat(t, resolv); s != before {
		t.Errorf("after dpkg -r resolv.conf is %+v, want as before install %+v", s, before)
	}
	for _, p := range []string{"usr/bin/meshdns", "usr/bin/meshdns-setup", "usr/lib/systemd/system/meshdns.service"} {
		if !stat(t, filepath.Join(root, p)).notPresent {
			t.Errorf("/%s still there after dpkg -r", p)
		}
	}
	if got, _ := os.ReadFile(corefile); string(got) != edited {
		t.Errorf("dpkg -r took the Corefile (a conffile stays until purge)")
	}

	// resolv.conf pointed at meshdns by hand: removal stops, meshdns stays.
	if out, err := dpkg(t, root, "-i", deb3); err != nil {
		t.Fatalf("dpkg -i again: %v\n%s", err, out)
	}
	if err := os.WriteFile(resolv, []byte("nameserver 127.0.0.2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := dpkg(t, root, "-r", "meshdns")
	if err == nil || !strings.Contains(out, "not set up by meshdns-setup install") {
		t.Errorf("dpkg -r with resolv.conf naming meshdns by hand: %v, want a refusal", err)
	}
	// Wanted for removal ("deinstall"), but installed all the same.
	if st := dpkgStatus(t, root); !strings.HasSuffix(st, " ok installed 1.0.2") {
		t.Errorf("after the refused removal: %q, want meshdns still installed", st)
	}
	if stat(t, filepath.Join(root, "usr/bin/meshdns")).notPresent {
		t.Errorf("the refused removal took /usr/bin/meshdns")
	}
	os.WriteFile(resolv, []byte(origResolv), 0o644)

	// Purge: the Corefile, upstream.conf and the state directories go; the
	// user stays.
	if out, err := dpkg(t, root, "--purge", "meshdns"); err != nil {
		t.Fatalf("dpkg --purge: %v\n%s", err, out)
	}
	for _, p := range []string{"etc/meshdns/Corefile", "etc/meshdns/upstream.conf", "var/lib/meshdns", "var/lib/meshdns-setup", "etc/meshdns"} {
		if !stat(t, filepath.Join(root, p)).notPresent {
			t.Errorf("/%s still there after purge", p)
		}
	}
	if st := dpkgStatus(t, root); strings.Contains(st, "installed") {
		t.Errorf("after purge: %q", st)
	}
	if _, _, ok := passwdEntry(t, root, "meshdns"); !ok {
		t.Errorf("purge removed the meshdns user")
	}
	if b, _ := os.ReadFile(resolv); string(b) != origResolv {
		t.Errorf("resolv.conf after purge:\n%s", b)
	}
}

// freePort is a TCP and UDP port free on 127.0.0.1 and 127.0.0.2 a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if pc, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.2:%d", port)); err == nil {
			pc.Close()
			return strconv.Itoa(port)
		}
	}
	t.Fatal("no free port")
	return ""
}

// meshdns-setup install against the packaged meshdns itself, not a fake:
// CoreDNS's ready endpoint and meshdns's DNS answers are what install waits
// for. The VM Corefile as shipped, but for a file source in place of xds
// (no istiod here) and ports of the test's own.
func TestSetupAgainstPackagedMeshdns(t *testing.T) {
	deb, _ := v1(t)
	p := readDeb(t, deb)
	dir := t.TempDir()
	bin := filepath.Join(dir, "meshdns")
	setup := filepath.Join(dir, "meshdns-setup")
	os.WriteFile(bin, p.data["usr/bin/meshdns"].data, 0o755)
	os.WriteFile(setup, p.data["usr/bin/meshdns-setup"].data, 0o755)

	root := filepath.Join(dir, "root")
	os.MkdirAll(filepath.Join(root, "etc/meshdns"), 0o755)
	os.MkdirAll(filepath.Join(root, "var/lib"), 0o755)
	// The upstream is a loopback address where nothing listens: the loop
	// plugin's probe at start goes there, and nowhere off this machine.
	const origResolv = "nameserver 127.0.0.9\nsearch corp.example\n"
	os.WriteFile(filepath.Join(root, "etc/resolv.conf"), []byte(origResolv), 0o644)
	mesh := filepath.Join(dir, "mesh.json")
	os.WriteFile(mesh, []byte(`{"table": {"reviews.bookinfo.svc.cluster.local": {"ips": ["10.96.1.11"], "registry": "Kubernetes"}}}`), 0o644)

	dnsPort, readyPort := freePort(t), freePort(t)
	vm := string(p.data["etc/meshdns/Corefile"].data)
	start, end := strings.Index(vm, "        xds {"), strings.Index(vm, "        authoritative")
	if start < 0 || end < start {
		t.Fatalf("the VM Corefile has no xds block before authoritative:\n%s", vm)
	}
	vm = vm[:start] + "        file " + mesh + "\n" + vm[end:]
	vm = strings.NewReplacer(".:53 {", ".:"+dnsPort+" {", "127.0.0.1:8181", "127.0.0.1:"+readyPort,
		"prometheus 127.0.0.1:9153", "prometheus 127.0.0.1:"+freePort(t)).Replace(vm)
	os.WriteFile(filepath.Join(root, "etc/meshdns/Corefile"), []byte(vm), 0o644)

	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(setup, append([]string{"-root", root}, args...)...).CombinedOutput()
		t.Logf("meshdns-setup %s: %v\n%s", strings.Join(args, " "), err, out)
		if err != nil {
			t.Fatalf("meshdns-setup %s: %v", args[0], err)
		}
		return string(out)
	}
	run("upstreams")
	// meshdns reads the upstreams from the tree, as it would on the VM.
	hostCorefile := filepath.Join(dir, "Corefile")
	os.WriteFile(hostCorefile, []byte(strings.ReplaceAll(vm, "/etc/meshdns/upstream.conf", filepath.Join(root, "etc/meshdns/upstream.conf"))), 0o644)
	cmd := exec.Command(bin, "-conf", hostCorefile)
	var log strings.Builder
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		t.Logf("meshdns:\n%s", log.String())
	})

	out := run("install", "-probe", "127.0.0.2:"+dnsPort, "-timeout", "20s")
	if !strings.Contains(out, "now names meshdns (127.0.0.2)") {
		t.Errorf("install: %s", out)
	}
	if out := run("status", "-probe", "127.0.0.2:"+dnsPort); !strings.Contains(out, "ready: OK") || !strings.Contains(out, "points at meshdns: true") {
		t.Errorf("status: %s", out)
	}
	run("remove")
	if b, _ := os.ReadFile(filepath.Join(root, "etc/resolv.conf")); string(b) != origResolv {
		t.Errorf("after remove resolv.conf:\n%s", b)
	}
}
