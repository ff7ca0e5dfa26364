// Command package builds meshdns's packages for a VM or node from the lean
// binary and the VM files: bin/meshdns_<version>_<arch>.deb and a .tar.gz
// holding the same files, in pure Go (nfpm for the .deb, archive/tar for the
// tarball), so `make package` needs neither dpkg nor a container.
//
//	/usr/bin/meshdns                          bin/meshdns, the lean build
//	/usr/bin/meshdns-setup                    bin/meshdns-setup
//	/usr/lib/systemd/system/meshdns.service   docs/vm/meshdns.service
//	/etc/meshdns/Corefile                     docs/vm/Corefile, a conffile
//
// The unit goes in /usr/lib/systemd/system: the system unit directory of
// Debian (since merged /usr, where /lib is a link to it) and Ubuntu, which
// systemd reads on unmerged systems too; shipping in /lib would risk dpkg's
// aliasing problems on merged ones. The maintainer scripts are in scripts/.
//
// The version comes from the repository, made a Debian version that sorts
// as releases should: tag v1.2.3 is 1.2.3, 4 commits after it
// 1.2.3+git4.<hash>, a tag v1.3.0-rc1 is 1.3.0~rc1 (before 1.3.0); with no
// tag, 0.0.0+git<commits>.<hash>; uncommitted changes add .dirty. Files
// carry the time of the last commit (or SOURCE_DATE_EPOCH), so the same
// commit gives the same packages.
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"debug/elf"
	_ "embed"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	"github.com/goreleaser/nfpm/v2/files"
)

var (
	//go:embed scripts/postinst
	postinst []byte
	//go:embed scripts/prerm
	prerm []byte
	//go:embed scripts/postrm
	postrm []byte
)

// Paths in the packages.
const (
	binPath      = "/usr/bin/meshdns"
	setupPath    = "/usr/bin/meshdns-setup"
	unitPath     = "/usr/lib/systemd/system/meshdns.service"
	corefilePath = "/etc/meshdns/Corefile"
)

// config says where the inputs are and what to call the result.
type config struct {
	Meshdns, Setup, Unit, Corefile string // input files
	OutDir                         string
	Version                        string // a Debian version
	MTime                          time.Time
	Maintainer                     string
	// Fast trades size for speed (gzip level 1): for tests that build
	// several packages only to install them.
	Fast bool
}

func main() {
	repo := flag.String("repo", ".", "the meshdns repository: inputs are its bin/ and docs/vm/, and its git history gives the version")
	out := flag.String("out", "", "where the packages go (default: the repository's bin/)")
	version := flag.String("version", "", "the package version, a Debian version (default: from git describe)")
	maintainer := flag.String("maintainer", "meshdns maintainers <meshdns@users.noreply.github.com>", "the Maintainer field")
	flag.Parse()

	c := config{
		Meshdns:    filepath.Join(*repo, "bin/meshdns"),
		Setup:      filepath.Join(*repo, "bin/meshdns-setup"),
		Unit:       filepath.Join(*repo, "docs/vm/meshdns.service"),
		Corefile:   filepath.Join(*repo, "docs/vm/Corefile"),
		OutDir:     *out,
		Version:    *version,
		Maintainer: *maintainer,
	}
	if c.OutDir == "" {
		c.OutDir = filepath.Join(*repo, "bin")
	}
	if c.Version == "" {
		v, err := gitVersion(*repo)
		if err != nil {
			fatal(err)
		}
		c.Version = v
	}
	c.MTime = sourceTime(*repo)
	deb, tgz, err := build(c)
	if err != nil {
		fatal(err)
	}
	for _, f := range []string{deb, tgz} {
		if rel, err := filepath.Rel(*repo, f); err == nil && !strings.HasPrefix(rel, "..") {
			f = rel
		}
		fmt.Println("wrote", f)
	}
}

func fatal(err error) {
	fmt.Fprintf(os.Stderr, "package: %v\n", err)
	os.Exit(1)
}

// build writes the .deb and the .tar.gz and returns their paths.
func build(c config) (deb, tgz string, err error) {
	if !validVersion.MatchString(c.Version) {
		return "", "", fmt.Errorf("version %q is not a Debian version (digits first, then [A-Za-z0-9.+~])", c.Version)
	}
	arch, dynamic, err := debArch(c.Meshdns)
	if err != nil {
		return "", "", err
	}
	if setupArch, _, err := debArch(c.Setup); err != nil {
		return "", "", err
	} else if setupArch != arch {
		return "", "", fmt.Errorf("%s is for %s but %s for %s", c.Meshdns, arch, c.Setup, setupArch)
	}
	for _, f := range []string{c.Unit, c.Corefile} {
		if _, err := os.Stat(f); err != nil {
			return "", "", err
		}
	}
	if c.MTime.IsZero() {
		c.MTime = time.Now()
	}
	c.MTime = c.MTime.UTC().Truncate(time.Second)
	if err := os.MkdirAll(c.OutDir, 0o755); err != nil {
		return "", "", err
	}
	base := fmt.Sprintf("meshdns_%s_%s", c.Version, arch)
	deb = filepath.Join(c.OutDir, base+".deb")
	tgz = filepath.Join(c.OutDir, base+".tar.gz")
	if err := buildDeb(c, arch, dynamic, deb); err != nil {
		return "", "", fmt.Errorf("%s: %w", deb, err)
	}
	if err := buildTarball(c, base, tgz); err != nil {
		return "", "", fmt.Errorf("%s: %w", tgz, err)
	}
	return deb, tgz, nil
}

func buildDeb(c config, arch string, dynamic bool, out string) error {
	// nfpm reads the maintainer scripts from files.
	tmp, err := os.MkdirTemp("", "meshdns-package-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	scripts := map[string][]byte{"postinst": postinst, "prerm": prerm, "postrm": postrm}
	for name, body := range scripts {
		if err := os.WriteFile(filepath.Join(tmp, name), body, 0o755); err != nil {
			return err
		}
	}

	// useradd is in passwd; libc6 only when the binary is linked against it.
	depends := []string{"passwd"}
	if dynamic {
		depends = append(depends, "libc6")
	}
	file := func(src, dst string, mode os.FileMode, typ string) *files.Content {
		return &files.Content{Source: src, Destination: dst, Type: typ,
			FileInfo: &files.ContentFileInfo{Owner: "root", Group: "root", Mode: mode, MTime: c.MTime}}
	}
	info := &nfpm.Info{
		Name:          "meshdns",
		Arch:          arch,
		Platform:      "linux",
		Version:       c.Version,
		VersionSchema: "none", // already a Debian version: nfpm's semver reading would reorder it
		Section:       "net",
		Priority:      "optional",
		Maintainer:    c.Maintainer,
		Homepage:      "https://github.com/meshdns/meshdns",
		License:       "Apache-2.0",
		Description: "service-mesh DNS for a VM or node, in CoreDNS\n" +
			"meshdns answers the names of Kubernetes Services and Istio ServiceEntry hosts from a table it gets\n" +
			"from istiod over xDS, and forwards every other name to the machine's real resolvers.\n" +
			"meshdns-setup points /etc/resolv.conf at it once it is ready, and back.",
		MTime: c.MTime,
		Overridables: nfpm.Overridables{
			Depends:    depends,
			Recommends: []string{"systemd"},
			Contents: files.Contents{
				file(c.Meshdns, binPath, 0o755, files.TypeFile),
				file(c.Setup, setupPath, 0o755, files.TypeFile),
				file(c.Unit, unitPath, 0o644, files.TypeFile),
				// Listed in conffiles: dpkg never overwrites the operator's edits on upgrade.
				file(c.Corefile, corefilePath, 0o644, files.TypeConfigNoReplace),
			},
			Scripts: nfpm.Scripts{
				PostInstall: filepath.Join(tmp, "postinst"),
				PreRemove:   filepath.Join(tmp, "prerm"),
				PostRemove:  filepath.Join(tmp, "postrm"),
			},
			// gzip: read by every dpkg, and by the standard library, as the package test does.
			Deb: nfpm.Deb{Compression: "gzip:" + strconv.Itoa(level(c.Fast))},
		},
	}
	info = nfpm.WithDefaults(info)
	if err := nfpm.PrepareForPackager(info, "deb"); err != nil {
		return err
	}
	pkg, err := nfpm.Get("deb")
	if err != nil {
		return err
	}
	return writeAtomic(out, func(w io.Writer) error { return pkg.Package(info, w) })
}

// tarEntry is one file of the tarball.
type tarEntry struct {
	name string
	mode int64
	src  string // a file to copy, or
	body []byte // this content
}

// buildTarball writes the same files as the .deb under a directory named
// like the package, with INSTALL saying what the .deb's scripts would do.
func buildTarball(c config, base, out string) error {
	entries := []tarEntry{
		{name: "INSTALL", mode: 0o644, body: []byte(installNote(c.Version))},
		{name: strings.TrimPrefix(binPath, "/"), mode: 0o755, src: c.Meshdns},
		{name: strings.TrimPrefix(setupPath, "/"), mode: 0o755, src: c.Setup},
		{name: strings.TrimPrefix(unitPath, "/"), mode: 0o644, src: c.Unit},
		{name: strings.TrimPrefix(corefilePath, "/"), mode: 0o644, src: c.Corefile},
	}
	return writeAtomic(out, func(w io.Writer) error {
		gz, err := gzip.NewWriterLevel(w, level(c.Fast))
		if err != nil {
			return err
		}
		tw := tar.NewWriter(gz)
		dirs := map[string]bool{}
		hdr := func(name string, mode int64, typ byte, size int64) *tar.Header {
			return &tar.Header{Name: name, Mode: mode, Typeflag: typ, Size: size, ModTime: c.MTime,
				Uname: "root", Gname: "root", Format: tar.FormatPAX}
		}
		for _, e := range entries {
			name := path.Join(base, e.name)
			// Each directory once, before what it holds.
			var parents []string
			for d := path.Dir(name); d != "."; d = path.Dir(d) {
				parents = append([]string{d}, parents...)
			}
			for _, d := range parents {
				if !dirs[d] {
					dirs[d] = true
					if err := tw.WriteHeader(hdr(d+"/", 0o755, tar.TypeDir, 0)); err != nil {
						return err
					}
				}
			}
			body := e.body
			if e.src != "" {
				var err error
				if body, err = os.ReadFile(e.src); err != nil {
					return err
				}
			}
			if err := tw.WriteHeader(hdr(name, e.mode, tar.TypeReg, int64(len(body)))); err != nil {
				return err
			}
			if _, err := tw.Write(body); err != nil {
				return err
			}
		}
		if err := tw.Close(); err != nil {
			return err
		}
		return gz.Close()
	})
}

// level is the gzip level: the default one, as nfpm's 9 takes twice as long
// for a package about 1% smaller.
func level(fast bool) int {
	if fast {
		return gzip.BestSpeed
	}
	return 6
}

func installNote(version string) string {
	return `meshdns ` + version + ` for a VM or node: the files of the .deb package of the same name.
See docs/vm.md in the meshdns repository for the whole setup (onboarding files, loops, metrics).

Install, as root, from this directory (what the .deb's scripts do):

  install -m 0755 usr/bin/meshdns usr/bin/meshdns-setup /usr/bin/
  install -m 0644 usr/lib/systemd/system/meshdns.service /usr/lib/systemd/system/
  install -d -m 0755 /etc/meshdns
  [ -e /etc/meshdns/Corefile ] || install -m 0644 etc/meshdns/Corefile /etc/meshdns/
  getent passwd meshdns >/dev/null || useradd --system --user-group --no-create-home \
      --home-dir /var/lib/meshdns --shell /usr/sbin/nologin meshdns
  install -d -o meshdns -g meshdns -m 0750 /var/lib/meshdns
  install -d -o root -g meshdns -m 0750 /etc/meshdns/istio
  [ -e /etc/meshdns/upstream.conf ] || meshdns-setup upstreams   # the real resolvers, for forward

Put the VM's onboarding files (istioctl x workload entry configure) in /etc/meshdns/istio,
mode 0640, group meshdns; then:

  systemctl daemon-reload
  systemctl enable --now meshdns
  meshdns-setup install     # waits until meshdns is ready, then points /etc/resolv.conf at it
  meshdns-setup status

Uninstall:

  meshdns-setup remove      # puts back the saved /etc/resolv.conf, exactly
  systemctl disable --now meshdns
  rm /usr/bin/meshdns /usr/bin/meshdns-setup /usr/lib/systemd/system/meshdns.service
  systemctl daemon-reload
`
}

// writeAtomic writes a file through a temporary name, so a failed build
// leaves no truncated package behind.
func writeAtomic(dst string, write func(io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), dst)
}

// debArch is the Debian architecture of an ELF binary, and whether it is
// linked dynamically (then the package depends on libc6). Reading the
// binary, not the host, keeps a cross-built bin/meshdns right.
func debArch(bin string) (arch string, dynamic bool, err error) {
	f, err := elf.Open(bin)
	if err != nil {
		return "", false, fmt.Errorf("%s: %w (make bin/meshdns bin/meshdns-setup builds it)", bin, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			dynamic = true
		}
	}
	switch {
	case f.Machine == elf.EM_X86_64:
		arch = "amd64"
	case f.Machine == elf.EM_AARCH64:
		arch = "arm64"
	case f.Machine == elf.EM_386:
		arch = "i386"
	case f.Machine == elf.EM_ARM:
		arch = "armhf"
	case f.Machine == elf.EM_RISCV && f.Class == elf.ELFCLASS64:
		arch = "riscv64"
	case f.Machine == elf.EM_PPC64 && f.Data == elf.ELFDATA2LSB:
		arch = "ppc64el"
	case f.Machine == elf.EM_S390:
		arch = "s390x"
	case f.Machine == elf.EM_LOONGARCH:
		arch = "loong64"
	default:
		return "", false, fmt.Errorf("%s: no Debian architecture for %v", bin, f.Machine)
	}
	return arch, dynamic, nil
}

var (
	// validVersion is a Debian upstream version without an epoch or revision.
	validVersion = regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*$`)
	// describeRe splits `git describe --tags --long`: tag, commits since, hash.
	describeRe = regexp.MustCompile(`^(.*)-([0-9]+)-g([0-9a-f]+)$`)
	notVersion = regexp.MustCompile(`[^A-Za-z0-9.+~]+`)
)

// gitVersion asks git for the version of the working tree. It reads only:
// GIT_OPTIONAL_LOCKS=0 keeps `git status` from refreshing the index, which
// other work in the same tree may be using.
func gitVersion(repo string) (string, error) {
	git := func(args ...string) (string, error) {
		cmd := exec.Command("git", append([]string{"-C", repo}, args...)...)
		cmd.Env = append(os.Environ(), "GIT_OPTIONAL_LOCKS=0")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("git %s: %v: %s (give -version when building outside a git checkout)",
				strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
		}
		return strings.TrimSpace(string(out)), nil
	}
	desc, err := git("describe", "--tags", "--long", "--always", "--abbrev=12")
	if err != nil {
		return "", err
	}
	count, err := git("rev-list", "--count", "HEAD")
	if err != nil {
		return "", err
	}
	// What --dirty would say, without the index write that comes with it.
	status, err := git("status", "--porcelain", "--untracked-files=no")
	if err != nil {
		return "", err
	}
	n, _ := strconv.Atoi(count)
	return debVersion(desc, n, status != ""), nil
}

// debVersion turns `git describe --tags --long --always` into a Debian
// version that sorts like the history: commits is the number of commits
// (used when there is no tag, so later commits still sort higher).
func debVersion(describe string, commits int, dirty bool) string {
	var v string
	if m := describeRe.FindStringSubmatch(describe); m != nil {
		tag, since, hash := m[1], m[2], m[3]
		tag = strings.TrimPrefix(tag, "v")
		if tag == "" || tag[0] < '0' || tag[0] > '9' {
			// A tag that is no version: keep its name after the zero version.
			tag = "0.0.0+" + strings.Trim(notVersion.ReplaceAllString(tag, "."), ".")
		} else {
			// v1.3.0-rc1 comes before v1.3.0: Debian's ~.
			tag = notVersion.ReplaceAllString(strings.ReplaceAll(tag, "-", "~"), ".")
		}
		v = tag
		if since != "0" {
			sep := "+"
			if strings.Contains(tag, "+") {
				sep = "."
			}
			v += sep + "git" + since + "." + hash
		}
	} else {
		// No tag: --always gave the abbreviated hash.
		v = fmt.Sprintf("0.0.0+git%d.%s", commits, notVersion.ReplaceAllString(describe, "."))
	}
	if dirty {
		if strings.Contains(v, "+") {
			v += ".dirty"
		} else {
			v += "+dirty"
		}
	}
	return v
}

// sourceTime is SOURCE_DATE_EPOCH when set, else the last commit's time.
func sourceTime(repo string) time.Time {
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return time.Unix(n, 0)
		}
	}
	out, err := exec.Command("git", "-C", repo, "log", "-1", "--format=%ct").Output()
	if err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); err == nil {
			return time.Unix(n, 0)
		}
	}
	return time.Now()
}
