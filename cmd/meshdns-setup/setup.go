package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Paths as seen from the machine; each is taken under -root.
const (
	resolvPath   = "/etc/resolv.conf"
	upstreamPath = "/etc/meshdns/upstream.conf"
	stateDir     = "/var/lib/meshdns-setup"
	stateFile    = stateDir + "/resolv.conf.json"
	origFile     = stateDir + "/resolv.conf.orig"
	// resolvedLocal is systemd-resolved's stub listener; its resolv.conf
	// (stub-resolv.conf) names only it.
	resolvedLocal = "127.0.0.53"
	// resolvedUpstreams is where systemd-resolved lists the servers it
	// forwards to: if meshdns were among them while resolved is meshdns's
	// upstream, names would loop through both.
	resolvedUpstreams = "/run/systemd/resolve/resolv.conf"

	defaultListen = "127.0.0.2"
	defaultReady  = "127.0.0.1:8181"
)

type options struct {
	root, corefile, listen, ready, probe string
	timeout                              time.Duration
	force                                bool
}

type setup struct {
	o   options
	out io.Writer
	// listen is the address install writes into resolv.conf; mesh is every
	// address meshdns listens on, none of which may be an upstream.
	listen   netip.Addr
	mesh     []netip.Addr
	readyURL string
	probe    string // "" when off
	// forwards are the targets of the Corefile's forward directives; nil
	// when there is no Corefile (then upstream.conf is assumed, as in the
	// VM Corefile).
	forwards []string
	origin   string // where listen and readyURL came from, for messages
}

// refusal is an error found before anything was written.
type refusal struct{ msg string }

func (r *refusal) Error() string { return r.msg }

func refuse(format string, a ...any) error { return &refusal{fmt.Sprintf(format, a...)} }

func newSetup(o options, out io.Writer) (*setup, error) {
	root, err := filepath.Abs(o.root)
	if err != nil {
		return nil, fmt.Errorf("-root %s: %w", o.root, err)
	}
	if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("-root %s: not a directory", o.root)
	}
	o.root = root
	s := &setup{o: o, out: out, origin: "default"}

	var binds []netip.Addr
	ready := defaultReady
	data, err := os.ReadFile(s.path(o.corefile))
	switch {
	case err == nil:
		cf := parseCorefile(data)
		binds = cf.binds
		if cf.ready != "" {
			ready = cf.ready
		}
		s.forwards = cf.forwards
		if s.forwards == nil {
			s.forwards = []string{}
		}
		s.origin = o.corefile
	case errors.Is(err, fs.ErrNotExist):
		// Before the package has put a Corefile in place: the VM Corefile's values.
	default:
		return nil, fmt.Errorf("reading %s: %w", s.show(o.corefile), err)
	}

	switch {
	case o.listen != "":
		a, err := netip.ParseAddr(o.listen)
		if err != nil {
			return nil, fmt.Errorf("-listen %q: not an IP address", o.listen)
		}
		s.listen = a.Unmap()
	case len(binds) > 0:
		s.listen = binds[0]
	default:
		s.listen = netip.MustParseAddr(defaultListen)
	}
	s.mesh = append([]netip.Addr{s.listen}, binds...)

	s.readyURL = o.ready
	if s.readyURL == "" {
		host, port, err := net.SplitHostPort(ready)
		if err != nil {
			return nil, fmt.Errorf("%s: ready %q: %v", s.show(o.corefile), ready, err)
		}
		if host == "" {
			host = "127.0.0.1"
		}
		s.readyURL = (&url.URL{Scheme: "http", Host: net.JoinHostPort(host, port), Path: "/ready"}).String()
	}
	switch o.probe {
	case "off":
	case "":
		s.probe = net.JoinHostPort(s.listen.String(), "53")
	default:
		s.probe = o.probe
	}
	return s, nil
}

// path is p under the root, without following symlinks.
func (s *setup) path(p string) string { return filepath.Join(s.o.root, p) }

// show names p as the operator knows it, with the root when there is one.
func (s *setup) show(p string) string {
	if s.o.root == "/" {
		return p
	}
	return s.path(p)
}

// resolve follows the symlinks of p, every component of it, as the kernel
// would after chroot to the root: an absolute target starts at the root and
// ".." stops there, so a symlink in a throwaway tree never reaches the host's
// files. It returns the real path of what p names.
func (s *setup) resolve(p string) (string, error) {
	todo := splitPath(p)
	cur := "/"
	for links := 0; len(todo) > 0; {
		name := todo[0]
		todo = todo[1:]
		switch name {
		case ".":
			continue
		case "..":
			cur = filepath.Dir(cur)
			continue
		}
		next := filepath.Join(cur, name)
		fi, err := os.Lstat(s.path(next))
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		if links++; links > 40 {
			return "", fmt.Errorf("%s: too many levels of symbolic links", s.show(p))
		}
		target, err := os.Readlink(s.path(next))
		if err != nil {
			return "", err
		}
		if filepath.IsAbs(target) {
			cur = "/"
		}
		todo = append(splitPath(target), todo...)
	}
	return s.path(cur), nil
}

func splitPath(p string) []string {
	var parts []string
	for _, e := range strings.Split(p, "/") {
		if e != "" {
			parts = append(parts, e)
		}
	}
	return parts
}

// readResolved reads p through its symlinks under the root.
func (s *setup) readResolved(p string) ([]byte, error) {
	real, err := s.resolve(p)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(real)
}

// corefile is what meshdns-setup needs from a Corefile. It reads directives
// line by line: enough for the VM Corefile and edits of it, not a full parser.
type corefile struct {
	binds    []netip.Addr
	ready    string
	forwards []string
}

func parseCorefile(data []byte) corefile {
	var cf corefile
	for line := range strings.Lines(string(data)) {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		var f []string
		for _, t := range strings.Fields(line) {
			if t != "{" && t != "}" {
				f = append(f, t)
			}
		}
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "bind":
			// Interface names are left out: only addresses can go in resolv.conf.
			for _, a := range f[1:] {
				if ip, err := netip.ParseAddr(a); err == nil {
					cf.binds = append(cf.binds, ip.Unmap())
				}
			}
		case "ready":
			if len(f) > 1 && cf.ready == "" {
				cf.ready = f[1]
			}
		case "forward":
			if len(f) > 2 {
				cf.forwards = append(cf.forwards, f[2:]...)
			}
		}
	}
	return cf
}

// resolvConf is the part of a resolv.conf that matters here.
type resolvConf struct {
	nameservers []string
	// keep are the search, domain, options and sortlist lines, verbatim
	// and in order: what install carries into the resolv.conf it writes.
	keep []string
}

func parseResolvConf(data []byte) resolvConf {
	var rc resolvConf
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") || strings.HasPrefix(f[0], ";") {
			continue
		}
		switch f[0] {
		case "nameserver":
			if len(f) > 1 {
				rc.nameservers = append(rc.nameservers, f[1])
			}
		case "search", "domain", "options", "sortlist":
			rc.keep = append(rc.keep, line)
		}
	}
	return rc
}

// isMesh says whether a nameserver or forward target is one of meshdns's
// own addresses. Forward targets may carry a scheme and a port; only port
// 53 (or none) reaches meshdns's listener.
func (s *setup) isMesh(target string) bool {
	t := target
	if i := strings.Index(t, "://"); i >= 0 {
		t = t[i+3:]
	}
	host, port := t, "53"
	if h, p, err := net.SplitHostPort(t); err == nil {
		host, port = h, p
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || port != "53" {
		return false
	}
	ip = ip.Unmap().WithZone("")
	for _, m := range s.mesh {
		if ip == m {
			return true
		}
	}
	return false
}

func (s *setup) meshIn(nameservers []string) string {
	for _, ns := range nameservers {
		if s.isMesh(ns) {
			return ns
		}
	}
	return ""
}

// entry is what a path is: a file with its bytes and attributes, a symlink
// with its target, or nothing.
type entry struct {
	Kind   string    `json:"kind"` // "file", "symlink" or "absent"
	Target string    `json:"target,omitempty"`
	Mode   uint32    `json:"mode"` // permission bits, setuid, setgid and sticky, as chmod takes them
	UID    int       `json:"uid"`
	GID    int       `json:"gid"`
	MTime  time.Time `json:"mtime"`
	SHA256 string    `json:"sha256,omitempty"` // of a file's content
	// content is a file's bytes; for a symlink, those of what it points
	// at under the root (nil when that cannot be read: err says why).
	content []byte
	err     error
}

func (s *setup) lstat(p string) (*entry, error) {
	full := s.path(p)
	fi, err := os.Lstat(full)
	if errors.Is(err, fs.ErrNotExist) {
		return &entry{Kind: "absent"}, nil
	}
	if err != nil {
		return nil, err
	}
	e := &entry{MTime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		e.Mode = st.Mode & 0o7777
		e.UID, e.GID = int(st.Uid), int(st.Gid)
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		e.Kind = "symlink"
		if e.Target, err = os.Readlink(full); err != nil {
			return nil, err
		}
		e.content, e.err = s.readResolved(p)
	case fi.Mode().IsRegular():
		e.Kind = "file"
		if e.content, err = os.ReadFile(full); err != nil {
			return nil, err
		}
		e.SHA256 = hash(e.content)
	default:
		return nil, fmt.Errorf("%s is a %v, neither a file nor a symlink", s.show(p), fi.Mode().Type())
	}
	return e, nil
}

// resolvedStub says whether e is the symlink systemd-resolved installs
// (to /run/systemd/resolve/stub-resolv.conf, relative or absolute).
func (e *entry) resolvedStub() bool {
	return e.Kind == "symlink" && strings.HasSuffix(filepath.Clean("/"+e.Target), "/systemd/resolve/stub-resolv.conf")
}

func (e *entry) describe() string {
	switch e.Kind {
	case "symlink":
		d := "a symlink to " + e.Target
		if e.resolvedStub() {
			d += " (systemd-resolved's stub)"
		}
		return d
	case "file":
		return fmt.Sprintf("a file of %d bytes, mode %04o, owner %d:%d", len(e.content), e.Mode, e.UID, e.GID)
	}
	return "absent"
}

// nameservers are those e names; for resolved's stub, 127.0.0.53 even when
// the stub file cannot be read (resolved stopped, or a tree being built).
func (e *entry) nameservers() []string {
	if e.resolvedStub() {
		return []string{resolvedLocal}
	}
	return parseResolvConf(e.content).nameservers
}

func hash(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// saved is what install keeps: the original entry and what it wrote in its
// place, so remove can tell whether resolv.conf is still install's.
type saved struct {
	Path    string    `json:"path"`
	Orig    entry     `json:"original"`
	Written string    `json:"written_sha256"`
	SavedAt time.Time `json:"saved_at"`
}

// loadSaved returns nil when nothing is saved.
func (s *setup) loadSaved() (*saved, error) {
	data, err := os.ReadFile(s.path(stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", s.show(stateFile), err)
	}
	var sv saved
	if err := json.Unmarshal(data, &sv); err != nil {
		return nil, fmt.Errorf("%s: %v (not written by meshdns-setup?)", s.show(stateFile), err)
	}
	switch sv.Orig.Kind {
	case "file":
		content, err := os.ReadFile(s.path(origFile))
		if err != nil {
			return nil, fmt.Errorf("the saved resolv.conf: %w", err)
		}
		if hash(content) != sv.Orig.SHA256 {
			return nil, fmt.Errorf("%s does not match the checksum in %s: not restoring a damaged copy", s.show(origFile), s.show(stateFile))
		}
		sv.Orig.content = content
	case "symlink":
		// Relative to the link's directory; resolve, not Join, takes the "..".
		target := sv.Orig.Target
		if !filepath.IsAbs(target) {
			target = filepath.Dir(resolvPath) + "/" + target
		}
		sv.Orig.content, sv.Orig.err = s.readResolved(target)
	case "absent":
	default:
		return nil, fmt.Errorf("%s: unknown kind %q", s.show(stateFile), sv.Orig.Kind)
	}
	return &sv, nil
}

// lock holds an exclusive lock on the state directory until unlock is
// called. It makes the directory if missing; unlock(true) takes it away
// again if it made it and it is still empty, so a refused install leaves
// no trace.
func (s *setup) lock() (unlock func(undo bool), err error) {
	dir := s.path(stateDir)
	_, statErr := os.Stat(dir)
	made := errors.Is(statErr, fs.ErrNotExist)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", s.show(stateDir), err)
	}
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", s.show(stateDir), err)
	}
	return func(undo bool) {
		if undo && made {
			os.Remove(dir)
		}
		f.Close()
	}, nil
}

// replace puts a new entry at p atomically: it is made beside p under a
// temporary name, set up by build, then renamed over p, so p is at every
// moment either the old entry or the new one.
func (s *setup) replace(p string, build func(tmp string) error) error {
	full := s.path(p)
	dir := filepath.Dir(full)
	tmp := filepath.Join(dir, fmt.Sprintf(".%s.meshdns-setup.%d", filepath.Base(full), os.Getpid()))
	os.Remove(tmp)
	if err := build(tmp); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", s.show(p), err)
	}
	if err := os.Rename(tmp, full); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("replacing %s: %w", s.show(p), err)
	}
	return syncDir(dir)
}

// writeFile is a build for replace: a regular file with this content.
func writeFile(content []byte, mode fs.FileMode) func(string) error {
	return func(tmp string) error {
		f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		_, err = f.Write(content)
		if err == nil {
			err = f.Chmod(mode)
		}
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// fileMode turns chmod bits into the os package's mode.
func fileMode(bits uint32) fs.FileMode {
	m := fs.FileMode(bits & 0o777)
	if bits&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if bits&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if bits&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m
}

// upstreams writes upstream.conf from the real resolver.
func (s *setup) upstreams() error {
	src, from, err := s.realResolver()
	if err != nil {
		return err
	}
	ns := src.nameservers()
	if src.Kind == "absent" {
		return refuse("%s does not exist: write %s by hand with the real resolvers", s.show(from), s.show(upstreamPath))
	}
	if src.Kind == "symlink" && !src.resolvedStub() && src.err != nil {
		return refuse("%s is a symlink to %s, which cannot be read: %v", s.show(from), src.Target, src.err)
	}
	if len(ns) == 0 {
		return refuse("%s names no nameserver: write %s by hand with the real resolvers", s.show(from), s.show(upstreamPath))
	}
	if m := s.meshIn(ns); m != "" {
		return refuse("%s names %s, an address meshdns listens on: as meshdns's upstream that would be a loop; "+
			"write %s by hand with the real resolvers", s.show(from), m, s.show(upstreamPath))
	}
	if err := s.checkResolved(ns); err != nil {
		return err
	}

	var b strings.Builder
	fmt.Fprintf(&b, "# meshdns's upstreams, the servers forward sends the names meshdns does not answer to.\n")
	// The original's name, also when read from the saved copy: the file is the same either way.
	fmt.Fprintf(&b, "# Written by meshdns-setup upstreams from %s (%s).\n", resolvPath, src.describe())
	fmt.Fprintf(&b, "# Never name an address meshdns listens on (%s): every unknown name would loop.\n", s.listen)
	for _, n := range ns {
		fmt.Fprintf(&b, "nameserver %s\n", n)
	}
	content := []byte(b.String())
	if old, err := os.ReadFile(s.path(upstreamPath)); err == nil && bytes.Equal(old, content) {
		fmt.Fprintf(s.out, "%s is up to date: %s\n", s.show(upstreamPath), strings.Join(ns, " "))
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(s.path(upstreamPath)), 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Dir(s.show(upstreamPath)), err)
	}
	if err := s.replace(upstreamPath, writeFile(content, 0o644)); err != nil {
		return err
	}
	fmt.Fprintf(s.out, "wrote %s: %s (meshdns reads it when it starts)\n", s.show(upstreamPath), strings.Join(ns, " "))
	return nil
}

// realResolver is the resolv.conf that names the real resolvers: the one
// install saved when it has run, else the current one.
func (s *setup) realResolver() (*entry, string, error) {
	sv, err := s.loadSaved()
	if err != nil {
		return nil, "", err
	}
	if sv != nil {
		return &sv.Orig, origFile, nil
	}
	cur, err := s.lstat(resolvPath)
	if err != nil {
		return nil, "", fmt.Errorf("reading %s: %w", s.show(resolvPath), err)
	}
	return cur, resolvPath, nil
}

// checkResolved refuses upstreams that go through systemd-resolved when
// resolved itself forwards to meshdns.
func (s *setup) checkResolved(upstreams []string) error {
	for _, u := range upstreams {
		if ip, err := netip.ParseAddr(u); err != nil || ip != netip.MustParseAddr(resolvedLocal) {
			continue
		}
		data, err := s.readResolved(resolvedUpstreams)
		if err != nil {
			return nil // resolved not running here: nothing to compare
		}
		if m := s.meshIn(parseResolvConf(data).nameservers); m != "" {
			return refuse("systemd-resolved, an upstream of meshdns, forwards to %s, an address meshdns listens on (%s): "+
				"names would loop through both; take it out of resolved's DNS= settings", m, s.show(resolvedUpstreams))
		}
	}
	return nil
}

// checkForwards refuses when a forward target of meshdns is meshdns itself,
// directly or through a resolv.conf-style file, or is /etc/resolv.conf,
// which install is about to point at meshdns.
func (s *setup) checkForwards() error {
	targets := s.forwards
	if targets == nil {
		targets = []string{upstreamPath}
	}
	// The path install is about to rewrite: /etc/resolv.conf itself, and
	// a file a forward target reaches by links only if resolv.conf is that
	// file (when resolv.conf is a link, install replaces the link, not its
	// target, so a target that reaches the target is no loop).
	resolvFile := ""
	if fi, err := os.Lstat(s.path(resolvPath)); err == nil && fi.Mode().IsRegular() {
		resolvFile = s.path(resolvPath)
	}
	for _, t := range targets {
		if !strings.HasPrefix(t, "/") {
			if s.isMesh(t) {
				return refuse("%s: forward to %s, an address meshdns listens on: every unknown name would loop", s.show(s.o.corefile), t)
			}
			continue
		}
		real, err := s.resolve(t)
		if filepath.Clean(t) == resolvPath || (err == nil && real == resolvFile) {
			return refuse("meshdns forwards to the servers in %s, which is %s: once it names meshdns every unknown name would loop; "+
				"point forward at %s (meshdns-setup upstreams writes it)", s.show(t), s.show(resolvPath), upstreamPath)
		}
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && t == upstreamPath {
				return refuse("%s does not exist: run meshdns-setup upstreams first (meshdns forwards to the servers it lists)", s.show(t))
			}
			return refuse("meshdns forwards to the servers in %s, which cannot be read: %v", s.show(t), err)
		}
		data, err := os.ReadFile(real)
		if err != nil {
			return refuse("reading %s: %v", s.show(t), err)
		}
		ns := parseResolvConf(data).nameservers
		if len(ns) == 0 {
			return refuse("%s names no nameserver: meshdns could answer only mesh names", s.show(t))
		}
		if m := s.meshIn(ns); m != "" {
			return refuse("%s names %s, an address meshdns listens on: every unknown name would loop", s.show(t), m)
		}
		if err := s.checkResolved(ns); err != nil {
			return err
		}
	}
	return nil
}

// install points resolv.conf at meshdns once meshdns answers.
func (s *setup) install(ctx context.Context) (err error) {
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer func() { unlock(err != nil) }()

	cur, err := s.lstat(resolvPath)
	if err != nil {
		return refuse("reading %s: %v", s.show(resolvPath), err)
	}
	sv, err := s.loadSaved()
	if err != nil {
		return err
	}
	if sv != nil {
		if cur.SHA256 == sv.Written || s.meshIn(cur.nameservers()) != "" {
			fmt.Fprintf(s.out, "%s already points at meshdns (%s); the previous one is saved in %s\n",
				s.show(resolvPath), s.listen, s.show(stateDir))
			return nil
		}
		return refuse("%s holds a resolv.conf saved by an earlier install, but %s no longer names meshdns: "+
			"run meshdns-setup remove (-force to put the saved one back) before installing again", s.show(stateDir), s.show(resolvPath))
	}

	switch {
	case cur.Kind == "symlink" && cur.err != nil && cur.resolvedStub():
		return refuse("%s is systemd-resolved's stub, but %s cannot be read (%v): is systemd-resolved running? "+
			"meshdns would forward to it", s.show(resolvPath), cur.Target, cur.err)
	case cur.Kind == "symlink" && cur.err != nil:
		return refuse("%s is a symlink to %s, which cannot be read: %v", s.show(resolvPath), cur.Target, cur.err)
	}
	if m := s.meshIn(cur.nameservers()); m != "" {
		return refuse("%s already names meshdns (%s), and nothing is saved in %s: it was changed by hand, so the "+
			"original is unknown and remove could not restore it; put the real resolv.conf back first", s.show(resolvPath), m, s.show(stateDir))
	}
	if err := s.checkForwards(); err != nil {
		return err
	}

	timeout := s.o.timeout
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	fmt.Fprintf(s.out, "waiting up to %v for meshdns: %s says OK", timeout, s.readyURL)
	if s.probe != "" {
		fmt.Fprintf(s.out, " and %s answers DNS", s.probe)
	}
	fmt.Fprintln(s.out)
	if err := waitReady(wctx, s.readyURL, s.probe); err != nil {
		return refuse("meshdns is not ready after %v: %v", timeout, err)
	}

	var b strings.Builder
	b.WriteString("# Written by meshdns-setup install: this machine resolves through meshdns, which forwards\n")
	b.WriteString("# what it does not answer to the servers in " + upstreamPath + ".\n")
	b.WriteString("# `meshdns-setup remove` puts back the previous resolv.conf, saved in " + stateDir + ".\n")
	fmt.Fprintf(&b, "nameserver %s\n", s.listen)
	for _, l := range parseResolvConf(cur.content).keep {
		b.WriteString(l + "\n")
	}
	content := []byte(b.String())

	// The saved copy first, its description last: once the description is
	// there, the copy is complete, and remove can always undo what follows.
	// A failure on the way takes the partial copy away again.
	desc, err := json.MarshalIndent(saved{Path: resolvPath, Orig: *cur, Written: hash(content), SavedAt: time.Now().UTC()}, "", "  ")
	if err != nil {
		return err
	}
	if cur.Kind == "file" {
		err = s.replace(origFile, writeFile(cur.content, 0o600))
	}
	if err == nil {
		err = s.replace(stateFile, writeFile(append(desc, '\n'), 0o600))
	}
	if err == nil {
		err = s.replace(resolvPath, writeFile(content, 0o644))
	}
	if err != nil {
		s.forget()
		return err
	}
	fmt.Fprintf(s.out, "saved %s (%s) in %s\n", s.show(resolvPath), cur.describe(), s.show(stateDir))
	fmt.Fprintf(s.out, "%s now names meshdns (%s)", s.show(resolvPath), s.listen)
	if cur.resolvedStub() {
		fmt.Fprintf(s.out, "; systemd-resolved keeps running as its upstream")
	}
	fmt.Fprintln(s.out)
	return nil
}

// forget deletes the saved copy.
func (s *setup) forget() {
	os.Remove(s.path(stateFile))
	os.Remove(s.path(origFile))
	syncDir(s.path(stateDir))
}

// remove restores what install saved.
func (s *setup) remove() error {
	if _, err := os.Stat(s.path(stateDir)); errors.Is(err, fs.ErrNotExist) {
		// Nothing was ever installed: say so without making the directory.
		return s.nothingSaved()
	}
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock(false)
	sv, err := s.loadSaved()
	if err != nil {
		return err
	}
	if sv == nil {
		return s.nothingSaved()
	}
	cur, err := s.lstat(resolvPath)
	if err != nil {
		return fmt.Errorf("reading %s: %w", s.show(resolvPath), err)
	}
	ours := cur.SHA256 == sv.Written || s.meshIn(cur.nameservers()) != ""
	if !ours && !s.o.force {
		fmt.Fprintf(s.out, "%s was changed after install and no longer names meshdns: left as it is; "+
			"the resolv.conf saved by install is kept in %s (remove -force puts it back)\n", s.show(resolvPath), s.show(stateDir))
		return nil
	}

	o := sv.Orig
	switch o.Kind {
	case "file":
		err = s.replace(resolvPath, func(tmp string) error {
			if err := writeFile(o.content, fileMode(o.Mode))(tmp); err != nil {
				return err
			}
			if err := os.Lchown(tmp, o.UID, o.GID); err != nil {
				return err
			}
			// chown may clear setuid and setgid bits: set the mode again.
			if err := os.Chmod(tmp, fileMode(o.Mode)); err != nil {
				return err
			}
			return os.Chtimes(tmp, o.MTime, o.MTime)
		})
	case "symlink":
		err = s.replace(resolvPath, func(tmp string) error {
			if err := os.Symlink(o.Target, tmp); err != nil {
				return err
			}
			return os.Lchown(tmp, o.UID, o.GID)
		})
	case "absent":
		if err = os.Remove(s.path(resolvPath)); errors.Is(err, fs.ErrNotExist) {
			err = nil
		}
	}
	if err != nil {
		return err
	}
	s.forget()
	fmt.Fprintf(s.out, "restored %s: %s, as before install\n", s.show(resolvPath), o.describe())
	return nil
}

// nothingSaved is remove with nothing to restore: a no-op, unless
// resolv.conf names meshdns all the same (pointed at it by hand): then the
// machine would lose its resolver with meshdns, so remove fails, and the
// package's removal with it, until -force.
func (s *setup) nothingSaved() error {
	fmt.Fprintf(s.out, "nothing saved in %s: %s left as it is\n", s.show(stateDir), s.show(resolvPath))
	cur, err := s.lstat(resolvPath)
	if err != nil {
		return nil
	}
	m := s.meshIn(cur.nameservers())
	switch {
	case m == "":
		return nil
	case s.o.force:
		fmt.Fprintf(s.out, "warning: %s names meshdns (%s), and this machine will not resolve names without it\n", s.show(resolvPath), m)
		return nil
	}
	return fmt.Errorf("%s names meshdns (%s) but was not set up by meshdns-setup install, so there is nothing to restore: "+
		"put the real resolvers back in it before meshdns goes away (-force: go on regardless)", s.show(resolvPath), m)
}

// status tells where resolv.conf points, what is saved and whether meshdns
// is ready; it changes nothing.
func (s *setup) status() error {
	cur, err := s.lstat(resolvPath)
	if err != nil {
		return fmt.Errorf("reading %s: %w", s.show(resolvPath), err)
	}
	fmt.Fprintf(s.out, "%s: %s", s.show(resolvPath), cur.describe())
	if ns := cur.nameservers(); len(ns) > 0 {
		fmt.Fprintf(s.out, ", nameservers %s", strings.Join(ns, " "))
	}
	fmt.Fprintln(s.out)
	fmt.Fprintf(s.out, "meshdns: %s (from %s), ready at %s\n", s.listen, s.origin, s.readyURL)
	points := s.meshIn(cur.nameservers()) != ""
	fmt.Fprintf(s.out, "points at meshdns: %v\n", points)

	sv, err := s.loadSaved()
	switch {
	case err != nil:
		fmt.Fprintf(s.out, "saved by install: unreadable: %v\n", err)
	case sv == nil:
		fmt.Fprintf(s.out, "saved by install: nothing\n")
	default:
		fmt.Fprintf(s.out, "saved by install: %s, at %s, in %s\n", sv.Orig.describe(), sv.SavedAt.Format(time.RFC3339), s.show(stateDir))
	}

	if data, err := os.ReadFile(s.path(upstreamPath)); err != nil {
		fmt.Fprintf(s.out, "%s: %v\n", s.show(upstreamPath), errors.Unwrap(err))
	} else {
		fmt.Fprintf(s.out, "%s: nameservers %s\n", s.show(upstreamPath), strings.Join(parseResolvConf(data).nameservers, " "))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := checkReady(ctx, s.readyURL); err != nil {
		fmt.Fprintf(s.out, "ready: no (%v)\n", err)
	} else {
		fmt.Fprintf(s.out, "ready: OK\n")
	}
	return nil
}
