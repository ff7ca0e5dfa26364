package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const repo = "../.."

// testConfig packages the repository's bin/meshdns and bin/meshdns-setup
// (make test-package builds them first) with the VM files.
func testConfig(t *testing.T, version string) config {
	t.Helper()
	c := config{
		Meshdns:    filepath.Join(repo, "bin/meshdns"),
		Setup:      filepath.Join(repo, "bin/meshdns-setup"),
		Unit:       filepath.Join(repo, "docs/vm/meshdns.service"),
		Corefile:   filepath.Join(repo, "docs/vm/Corefile"),
		OutDir:     t.TempDir(),
		Version:    version,
		MTime:      time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
		Maintainer: "meshdns test <test@example.invalid>",
	}
	for _, f := range []string{c.Meshdns, c.Setup} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("%v: run `make bin/meshdns bin/meshdns-setup` (make test-package does)", err)
		}
	}
	return c
}

var (
	v1Once           sync.Once
	v1Deb, v1Tarball string
	v1Err            error
)

// v1 is the package most tests read, built once.
func v1(t *testing.T) (deb, tgz string) {
	t.Helper()
	c := testConfig(t, "1.0.0")
	v1Once.Do(func() {
		c.OutDir, v1Err = os.MkdirTemp("", "meshdns-package-test-")
		if v1Err == nil {
			start := time.Now()
			v1Deb, v1Tarball, v1Err = build(c)
			t.Logf("built %s and %s in %v", filepath.Base(v1Deb), filepath.Base(v1Tarball), time.Since(start).Round(time.Millisecond))
		}
	})
	if v1Err != nil {
		t.Fatal(v1Err)
	}
	return v1Deb, v1Tarball
}

func TestMain(m *testing.M) {
	code := m.Run()
	if v1Deb != "" {
		os.RemoveAll(filepath.Dir(v1Deb))
	}
	os.Exit(code)
}

// arMember is one member of an ar archive, the container of a .deb.
type arMember struct {
	name string
	data []byte
}

// readAr reads the common ar format dpkg writes and reads: a magic line,
// then per member a 60-byte header (name, mtime, uid, gid, mode, size) and
// the data padded to an even length.
func readAr(b []byte) ([]arMember, error) {
	const magic = "!<arch>\n"
	if !bytes.HasPrefix(b, []byte(magic)) {
		return nil, fmt.Errorf("not an ar archive")
	}
	var ms []arMember
	for off := len(magic); off < len(b); {
		if off+60 > len(b) {
			return nil, fmt.Errorf("truncated header at %d", off)
		}
		h := b[off : off+60]
		if string(h[58:60]) != "`\n" {
			return nil, fmt.Errorf("bad header at %d", off)
		}
		size, err := strconv.Atoi(strings.TrimSpace(string(h[48:58])))
		if err != nil {
			return nil, fmt.Errorf("bad size at %d: %v", off, err)
		}
		off += 60
		if off+size > len(b) {
			return nil, fmt.Errorf("truncated member at %d", off)
		}
		ms = append(ms, arMember{name: strings.TrimRight(strings.TrimSpace(string(h[:16])), "/"), data: b[off : off+size]})
		off += size + size%2
	}
	return ms, nil
}

// tarFile is an entry of a tar archive, with its content.
type tarFile struct {
	hdr  *tar.Header
	data []byte
}

func readTarGz(b []byte) (map[string]tarFile, []string, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, nil, err
	}
	tr := tar.NewReader(zr)
	files := map[string]tarFile{}
	var order []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files, order, nil
		}
		if err != nil {
			return nil, nil, err
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return nil, nil, err
		}
		name := strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")
		files[name] = tarFile{h, data}
		order = append(order, name)
	}
}

// debParts is a .deb read back: its members in order and the files of its
// control and data archives, by path without the leading "./".
type debParts struct {
	members []string
	control map[string]tarFile
	data    map[string]tarFile
}

func readDeb(t *testing.T, deb string) debParts {
	t.Helper()
	b, err := os.ReadFile(deb)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := readAr(b)
	if err != nil {
		t.Fatalf("%s: %v", deb, err)
	}
	var p debParts
	for _, m := range ms {
		p.members = append(p.members, m.name)
		switch {
		case m.name == "debian-binary":
			if string(m.data) != "2.0\n" {
				t.Errorf("debian-binary %q, want 2.0", m.data)
			}
		case m.name == "control.tar.gz":
			if p.control, _, err = readTarGz(m.data); err != nil {
				t.Fatalf("control.tar.gz: %v", err)
			}
		case m.name == "data.tar.gz":
			if p.data, _, err = readTarGz(m.data); err != nil {
				t.Fatalf("data.tar.gz: %v", err)
			}
		}
	}
	// dpkg requires this order.
	if !slices.Equal(p.members, []string{"debian-binary", "control.tar.gz", "data.tar.gz"}) {
		t.Fatalf("%s members %v, want debian-binary, control.tar.gz, data.tar.gz", deb, p.members)
	}
	return p
}

func controlFields(control []byte) map[string]string {
	f := map[string]string{}
	var last string
	sc := bufio.NewScanner(bytes.NewReader(control))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, " ") && last != "" {
			f[last] += "\n" + line
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			last = k
			f[k] = strings.TrimSpace(v)
		}
	}
	return f
}

// The files of both packages, where docs/vm.md says, with their modes and
// contents; the Corefile a conffile; the maintainer scripts; the unit
// starting the binary the package ships; the lean binary.
func TestPackageContents(t *testing.T) {
	deb, tgz := v1(t)
	p := readDeb(t, deb)

	read := func(f string) []byte {
		b, err := os.ReadFile(filepath.Join(repo, f))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	type wantFile struct {
		path string
		mode int64
		data []byte
	}
	want := []wantFile{
		{"usr/bin/meshdns", 0o755, read("bin/meshdns")},
		{"usr/bin/meshdns-setup", 0o755, read("bin/meshdns-setup")},
		{"usr/lib/systemd/system/meshdns.service", 0o644, read("docs/vm/meshdns.service")},
		{"etc/meshdns/Corefile", 0o644, read("docs/vm/Corefile")},
	}
	for _, w := range want {
		f, ok := p.data[w.path]
		if !ok {
			t.Errorf(".deb lacks /%s", w.path)
			continue
		}
		if f.hdr.Typeflag != tar.TypeReg || f.hdr.Mode&0o7777 != w.mode || f.hdr.Uname != "root" || f.hdr.Gname != "root" {
			t.Errorf(".deb /%s: type %c mode %o owner %s:%s, want a file, %o, root:root", w.path, f.hdr.Typeflag, f.hdr.Mode, f.hdr.Uname, f.hdr.Gname, w.mode)
		}
		if !bytes.Equal(f.data, w.data) {
			t.Errorf(".deb /%s differs from its source", w.path)
		}
	}
	for name, f := range p.data {
		if f.hdr.Typeflag == tar.TypeReg && !slices.ContainsFunc(want, func(w wantFile) bool { return w.path == name }) {
			t.Errorf(".deb holds an unexpected file /%s", name)
		}
		if f.hdr.Typeflag == tar.TypeDir && f.hdr.Mode&0o7777 != 0o755 {
			t.Errorf(".deb directory /%s mode %o, want 755", name, f.hdr.Mode)
		}
	}

	// Control: fields, conffiles, scripts, checksums.
	ctl, ok := p.control["control"]
	if !ok {
		t.Fatal("no control file")
	}
	fields := controlFields(ctl.data)
	arch, _, err := debArch(filepath.Join(repo, "bin/meshdns"))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"Package": "meshdns", "Version": "1.0.0", "Architecture": arch} {
		if fields[k] != v {
			t.Errorf("control %s: %q, want %q", k, fields[k], v)
		}
	}
	if !strings.Contains(fields["Depends"], "passwd") {
		t.Errorf("Depends %q lacks passwd (useradd)", fields["Depends"])
	}
	if cf, ok := p.control["conffiles"]; !ok || !slices.Contains(strings.Fields(string(cf.data)), "/etc/meshdns/Corefile") {
		t.Errorf("conffiles %q, want /etc/meshdns/Corefile listed", cf.data)
	}
	for _, s := range []struct{ name, src, needs string }{
		{"postinst", "scripts/postinst", "meshdns-setup upstreams"},
		{"prerm", "scripts/prerm", "meshdns-setup remove"},
		{"postrm", "scripts/postrm", "purge"},
	} {
		f, ok := p.control[s.name]
		if !ok {
			t.Errorf("no %s in control.tar.gz", s.name)
			continue
		}
		src, _ := os.ReadFile(s.src)
		if f.hdr.Mode&0o777 != 0o755 || !bytes.Equal(f.data, src) || !bytes.HasPrefix(f.data, []byte("#!/bin/sh\n")) || !bytes.Contains(f.data, []byte(s.needs)) {
			t.Errorf("%s: mode %o, %d bytes, want 755, %s as it is, a /bin/sh script running %q", s.name, f.hdr.Mode, len(f.data), s.src, s.needs)
		}
		if out, err := exec.Command("sh", "-n", s.src).CombinedOutput(); err != nil {
			t.Errorf("sh -n %s: %v\n%s", s.src, err, out)
		}
	}
	sums, ok := p.control["md5sums"]
	if !ok {
		t.Error("no md5sums")
	}
	for line := range strings.Lines(string(sums.data)) {
		sum, name, _ := strings.Cut(strings.TrimSpace(line), "  ")
		h := md5.Sum(p.data[name].data)
		if hex.EncodeToString(h[:]) != sum {
			t.Errorf("md5sums: %s does not match", name)
		}
	}

	// The unit runs what the package ships.
	unit := string(p.data["usr/lib/systemd/system/meshdns.service"].data)
	exe := ""
	for line := range strings.Lines(unit) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "ExecStart="); ok {
			exe = strings.TrimLeft(strings.Fields(v)[0], "-@:+!")
		}
	}
	if f, ok := p.data[strings.TrimPrefix(exe, "/")]; !ok || f.hdr.Mode&0o111 == 0 {
		t.Errorf("the unit's ExecStart runs %q, which the package does not ship as an executable", exe)
	}

	// The binary is the lean one: CoreDNS with meshdns, without kubernetes.
	dir := t.TempDir()
	bin := filepath.Join(dir, "meshdns")
	if err := os.WriteFile(bin, p.data["usr/bin/meshdns"].data, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "-plugins").CombinedOutput()
	if err != nil {
		t.Fatalf("meshdns -plugins: %v\n%s", err, out)
	}
	plugins := strings.Fields(string(out))
	if !slices.Contains(plugins, "meshdns") || !slices.Contains(plugins, "forward") || slices.Contains(plugins, "kubernetes") || slices.Contains(plugins, "etcd") {
		t.Errorf("/usr/bin/meshdns -plugins: %v, want meshdns and forward and neither kubernetes nor etcd (the lean build)", plugins)
	}
	setup := filepath.Join(dir, "meshdns-setup")
	if err := os.WriteFile(setup, p.data["usr/bin/meshdns-setup"].data, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, _ := exec.Command(setup).CombinedOutput(); !strings.Contains(string(out), "upstreams|install|remove|status") {
		t.Errorf("/usr/bin/meshdns-setup without arguments: %s", out)
	}

	// The tarball: the same files under one directory, and INSTALL.
	b, err := os.ReadFile(tgz)
	if err != nil {
		t.Fatal(err)
	}
	tf, order, err := readTarGz(b)
	if err != nil {
		t.Fatalf("%s: %v", tgz, err)
	}
	prefix := "meshdns_1.0.0_" + arch
	if filepath.Base(deb) != prefix+".deb" || filepath.Base(tgz) != prefix+".tar.gz" {
		t.Errorf("packages %s and %s, want %s.deb and .tar.gz", deb, tgz, prefix)
	}
	for _, name := range order {
		if name != prefix && !strings.HasPrefix(name, prefix+"/") {
			t.Errorf("tarball entry %s outside %s/", name, prefix)
		}
		if i := strings.LastIndex(name, "/"); i > 0 && !slices.Contains(order[:slices.Index(order, name)], name[:i]) {
			t.Errorf("tarball entry %s comes before its directory", name)
		}
	}
	for _, w := range want {
		f, ok := tf[prefix+"/"+w.path]
		if !ok || f.hdr.Mode&0o7777 != w.mode || !bytes.Equal(f.data, w.data) {
			t.Errorf("tarball %s/%s: present %v, mode %o, want %o and the .deb's content", prefix, w.path, ok, f.hdr.Mode, w.mode)
		}
	}
	install, ok := tf[prefix+"/INSTALL"]
	if !ok || !strings.Contains(string(install.data), "meshdns-setup install") || !strings.Contains(string(install.data), "meshdns-setup remove") {
		t.Errorf("tarball INSTALL missing or without meshdns-setup install and remove")
	}

	// dpkg's own reading agrees, where dpkg is.
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Log("no dpkg-deb: the Go reading alone")
		return
	}
	info, err := exec.Command("dpkg-deb", "--info", deb).CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg-deb --info: %v\n%s", err, info)
	}
	for _, s := range []string{"Package: meshdns", "Version: 1.0.0", "conffiles", "postinst", "prerm", "postrm"} {
		if !strings.Contains(string(info), s) {
			t.Errorf("dpkg-deb --info lacks %q:\n%s", s, info)
		}
	}
	contents, err := exec.Command("dpkg-deb", "--contents", deb).CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg-deb --contents: %v\n%s", err, contents)
	}
	var dpkgFiles, goFiles []string
	for line := range strings.Lines(string(contents)) {
		f := strings.Fields(line)
		if len(f) >= 6 && strings.HasPrefix(f[0], "-") {
			dpkgFiles = append(dpkgFiles, f[0]+" "+f[1]+" "+strings.TrimPrefix(f[len(f)-1], "./"))
		}
	}
	for name, f := range p.data {
		if f.hdr.Typeflag == tar.TypeReg {
			goFiles = append(goFiles, fmt.Sprintf("%s %s/%s %s", lsMode(f.hdr.Mode), f.hdr.Uname, f.hdr.Gname, name))
		}
	}
	sort.Strings(dpkgFiles)
	sort.Strings(goFiles)
	if !slices.Equal(dpkgFiles, goFiles) {
		t.Errorf("dpkg-deb --contents files:\n%s\nthe Go reader's:\n%s", strings.Join(dpkgFiles, "\n"), strings.Join(goFiles, "\n"))
	}
}

// lsMode is a regular file's mode as ls and dpkg-deb show it.
func lsMode(mode int64) string {
	const rwx = "rwxrwxrwx"
	b := []byte("-")
	for i := 0; i < 9; i++ {
		if mode&(1<<(8-i)) != 0 {
			b = append(b, rwx[i])
		} else {
			b = append(b, '-')
		}
	}
	return string(b)
}

func TestDebVersion(t *testing.T) {
	cases := []struct {
		describe string
		commits  int
		dirty    bool
		want     string
	}{
		{"1fffc2c98f4d", 68, false, "0.0.0+git68.1fffc2c98f4d"},
		{"1fffc2c98f4d", 68, true, "0.0.0+git68.1fffc2c98f4d.dirty"},
		{"v1.2.3-0-gabcdef012345", 80, false, "1.2.3"},
		{"v1.2.3-0-gabcdef012345", 80, true, "1.2.3+dirty"},
		{"v1.2.3-4-gabcdef012345", 84, false, "1.2.3+git4.abcdef012345"},
		{"v1.2.3-4-gabcdef012345", 84, true, "1.2.3+git4.abcdef012345.dirty"},
		{"v1.3.0-rc1-0-gabcdef012345", 90, false, "1.3.0~rc1"},
		{"v1.3.0-rc1-2-gabcdef012345", 92, false, "1.3.0~rc1+git2.abcdef012345"},
		{"release_x-3-gabcdef012345", 10, false, "0.0.0+release.x.git3.abcdef012345"},
		{"1.0+build-0-gabcdef012345", 10, false, "1.0+build"},
		{"1.0+build-1-gabcdef012345", 10, false, "1.0+build.git1.abcdef012345"},
	}
	for _, tc := range cases {
		got := debVersion(tc.describe, tc.commits, tc.dirty)
		if got != tc.want {
			t.Errorf("debVersion(%q, %d, %v) = %q, want %q", tc.describe, tc.commits, tc.dirty, got, tc.want)
		}
		if !validVersion.MatchString(got) {
			t.Errorf("%q is not a valid Debian version", got)
		}
	}

	// Later commits and releases sort later, by dpkg's own rules.
	if _, err := exec.LookPath("dpkg"); err != nil {
		return
	}
	ordered := []string{
		"0.0.0+git68.1fffc2c98f4d", "0.0.0+git68.1fffc2c98f4d.dirty", "0.0.0+git69.0aaaaaaaaaaa",
		"1.3.0~rc1", "1.3.0~rc1+git2.abcdef012345", "1.3.0", "1.3.0+dirty", "1.3.0+git1.ffff00000000",
		"1.3.0+git2.000000000000", "1.3.1",
	}
	for i := 1; i < len(ordered); i++ {
		if err := exec.Command("dpkg", "--compare-versions", ordered[i-1], "lt", ordered[i]).Run(); err != nil {
			t.Errorf("dpkg: %s is not before %s", ordered[i-1], ordered[i])
		}
	}
}

// The repository's own version, as make package computes it, is valid.
func TestGitVersion(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	if _, err := os.Stat(filepath.Join(repo, ".git")); err != nil {
		t.Skip("not a git checkout")
	}
	v, err := gitVersion(repo)
	if err != nil {
		t.Fatal(err)
	}
	if !validVersion.MatchString(v) {
		t.Errorf("git gives %q, not a Debian version", v)
	}
	t.Logf("version %s", v)
	// A bad one is refused before anything is written.
	c := testConfig(t, "v1.0-beta")
	if _, _, err := build(c); err == nil || !strings.Contains(err.Error(), "not a Debian version") {
		t.Errorf("build with version v1.0-beta: %v", err)
	}
	if entries, _ := os.ReadDir(c.OutDir); len(entries) > 0 {
		t.Errorf("a refused build left %v", entries)
	}
}
