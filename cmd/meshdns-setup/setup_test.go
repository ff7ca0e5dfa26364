package main

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The VM Corefile as shipped: its bind, ready and forward are what the
// helper reads.
const vmCorefile = "../../docs/vm/Corefile"

// fakeMeshdns is meshdns as install sees it: a ready endpoint that says OK
// when ready is set, and a DNS listener that answers every query.
type fakeMeshdns struct {
	ready    atomic.Bool
	readyURL string
	dns      string
}

func newFakeMeshdns(t *testing.T, ready bool) *fakeMeshdns {
	t.Helper()
	f := &fakeMeshdns{}
	f.ready.Store(ready)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ready" {
			http.NotFound(w, r)
			return
		}
		if !f.ready.Load() {
			http.Error(w, "meshdns", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, "OK")
	}))
	t.Cleanup(srv.Close)
	f.readyURL = srv.URL + "/ready"

	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	f.dns = pc.LocalAddr().String()
	go func() {
		buf := make([]byte, 512)
		for {
			n, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if n >= 12 {
				buf[2] |= 0x80 // QR: a reply
				pc.WriteTo(buf[:n], addr)
			}
		}
	}()
	return f
}

// silentDNS is a UDP port that never answers.
func silentDNS(t *testing.T) string {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().String()
}

// node is a file, directory or symlink in a throwaway root.
type node struct {
	mode    fs.FileMode // permission bits (and setuid etc.); 0 means 0644
	content string
	link    string // a symlink with this target when set
	dir     bool
}

// makeRoot builds a throwaway root with /etc/meshdns/Corefile (the VM one),
// /var/lib and the given entries.
func makeRoot(t *testing.T, tree map[string]node) string {
	t.Helper()
	root := t.TempDir()
	corefile, err := os.ReadFile(vmCorefile)
	if err != nil {
		t.Fatal(err)
	}
	base := map[string]node{
		"/etc/meshdns/Corefile": {content: string(corefile)},
		"/var/lib":              {dir: true},
	}
	for p, n := range tree {
		base[p] = n
	}
	for p, n := range base {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		switch {
		case n.dir:
			err = os.MkdirAll(full, 0o755)
		case n.link != "":
			err = os.Symlink(n.link, full)
		default:
			mode := n.mode
			if mode == 0 {
				mode = 0o644
			}
			if err = os.WriteFile(full, []byte(n.content), 0o600); err == nil {
				err = os.Chmod(full, mode)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	// An old, distinctive time, so a restore that loses it shows.
	old := time.Date(2020, 2, 2, 2, 2, 2, 0, time.UTC)
	if err := os.Chtimes(filepath.Join(root, "/etc/resolv.conf"), old, old); err != nil && !os.IsNotExist(err) {
		// A symlink's time is its target's: set when the target exists.
		t.Logf("chtimes: %v", err)
	}
	return root
}

// snapshot records every entry of a tree exactly (type, mode, owner,
// content or target, and a file's modification time), for comparisons
// byte for byte.
func snapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		desc := fmt.Sprintf("%v %o %d:%d", fi.Mode().Type(), st.Mode&0o7777, st.Uid, st.Gid)
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			desc += " -> " + target
		case fi.Mode().IsRegular():
			b, _ := os.ReadFile(p)
			desc += fmt.Sprintf(" %s %q", fi.ModTime().UTC().Format(time.RFC3339Nano), b)
		}
		m["/"+rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func diffSnapshots(before, after map[string]string) []string {
	var d []string
	for p, b := range before {
		if a, ok := after[p]; !ok {
			d = append(d, "gone: "+p+" ("+b+")")
		} else if a != b {
			d = append(d, fmt.Sprintf("changed: %s\n\tbefore %s\n\tafter  %s", p, b, a))
		}
	}
	for p, a := range after {
		if _, ok := before[p]; !ok {
			d = append(d, "new: "+p+" ("+a+")")
		}
	}
	return d
}

// setupCmd runs meshdns-setup on root, as the command line would.
func setupCmd(t *testing.T, root string, f *fakeMeshdns, args ...string) (int, string) {
	t.Helper()
	all := []string{"-root", root, "-timeout", "2s"}
	if f != nil {
		all = append(all, "-ready", f.readyURL, "-probe", f.dns)
	}
	var out, errb bytes.Buffer
	code := run(context.Background(), append(all, args...), &out, &errb)
	t.Logf("meshdns-setup %s: exit %d\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
	return code, out.String() + errb.String()
}

func readFile(t *testing.T, root, p string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, p))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func nameservers(s string) []string { return parseResolvConf([]byte(s)).nameservers }

const (
	plainResolv = "# from DHCP\nnameserver 10.0.0.1\nnameserver 2001:db8::53\nsearch corp.example lab.example\noptions ndots:2 timeout:1\n"
	stubResolv  = "# This is /run/systemd/resolve/stub-resolv.conf managed by man:systemd-resolved(8).\n" +
		"nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan.example\n"
	stubLink = "../run/systemd/resolve/stub-resolv.conf"
)

// The whole cycle on each kind of resolver: upstreams names the real
// resolvers and never meshdns, install points resolv.conf at meshdns and
// keeps its search list and options, remove puts back exactly what was
// there (bytes, mode, owner, time, or the symlink and its target), and a
// second remove is a no-op.
func TestInstallRemove(t *testing.T) {
	resolved := map[string]node{
		"/run/systemd/resolve/stub-resolv.conf": {content: stubResolv},
		"/run/systemd/resolve/resolv.conf":      {content: "nameserver 192.0.2.1\nsearch lan.example\n"},
	}
	with := func(m map[string]node, p string, n node) map[string]node {
		c := map[string]node{p: n}
		for k, v := range m {
			c[k] = v
		}
		return c
	}
	cases := []struct {
		name          string
		tree          map[string]node
		wantUpstreams []string
		wantKeep      []string // lines the new resolv.conf keeps
		wantFile      bool     // resolv.conf was a file (else a symlink)
	}{
		{
			name:          "plain resolv.conf",
			tree:          map[string]node{"/etc/resolv.conf": {content: plainResolv}},
			wantUpstreams: []string{"10.0.0.1", "2001:db8::53"},
			wantKeep:      []string{"search corp.example lab.example", "options ndots:2 timeout:1"},
			wantFile:      true,
		},
		{
			name:          "plain resolv.conf, mode 0600, no final newline",
			tree:          map[string]node{"/etc/resolv.conf": {content: "domain corp.example\nnameserver 10.0.0.9", mode: 0o600}},
			wantUpstreams: []string{"10.0.0.9"},
			wantKeep:      []string{"domain corp.example"},
			wantFile:      true,
		},
		{
			name:          "systemd-resolved stub, relative link",
			tree:          with(resolved, "/etc/resolv.conf", node{link: stubLink}),
			wantUpstreams: []string{"127.0.0.53"},
			wantKeep:      []string{"options edns0 trust-ad", "search lan.example"},
		},
		{
			// An absolute target is read under the root, never the host's.
			name:          "systemd-resolved stub, absolute link",
			tree:          with(resolved, "/etc/resolv.conf", node{link: "/run/systemd/resolve/stub-resolv.conf"}),
			wantUpstreams: []string{"127.0.0.53"},
			wantKeep:      []string{"options edns0 trust-ad", "search lan.example"},
		},
		{
			// Not a loop: install replaces the link, not resolved's file.
			name: "Corefile forwards to resolved's stub file",
			tree: with(with(resolved, "/etc/resolv.conf", node{link: stubLink}), "/etc/meshdns/Corefile",
				node{content: ".:53 {\n    bind 127.0.0.2\n    forward . /run/systemd/resolve/stub-resolv.conf\n}\n"}),
			wantUpstreams: []string{"127.0.0.53"},
			wantKeep:      []string{"options edns0 trust-ad", "search lan.example"},
		},
		{
			name: "symlink to another manager's file",
			tree: map[string]node{
				"/etc/resolv.conf":            {link: "/run/resolvconf/resolv.conf"},
				"/run/resolvconf/resolv.conf": {content: "nameserver 198.51.100.7\nsearch example.net\n"},
			},
			wantUpstreams: []string{"198.51.100.7"},
			wantKeep:      []string{"search example.net"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			root := makeRoot(t, tc.tree)
			if os.Geteuid() == 0 && tc.wantFile {
				// An owner other than the writer's, so a restore that loses it shows.
				if err := os.Lchown(filepath.Join(root, "/etc/resolv.conf"), 1234, 5678); err != nil {
					t.Fatal(err)
				}
			}
			f := newFakeMeshdns(t, true)
			orig := snapshot(t, root)

			if code, out := setupCmd(t, root, f, "upstreams"); code != 0 {
				t.Fatalf("upstreams: exit %d: %s", code, out)
			}
			up := readFile(t, root, upstreamPath)
			if got := nameservers(up); strings.Join(got, " ") != strings.Join(tc.wantUpstreams, " ") {
				t.Errorf("upstream.conf names %v, want %v:\n%s", got, tc.wantUpstreams, up)
			}
			afterUpstreams := snapshot(t, root)

			if code, out := setupCmd(t, root, f, "install"); code != 0 {
				t.Fatalf("install: exit %d: %s", code, out)
			}
			fi, err := os.Lstat(filepath.Join(root, resolvPath))
			if err != nil || !fi.Mode().IsRegular() {
				t.Fatalf("after install %s is %v (%v), want a regular file", resolvPath, fi.Mode(), err)
			}
			rc := readFile(t, root, resolvPath)
			if got := nameservers(rc); len(got) != 1 || got[0] != "127.0.0.2" {
				t.Errorf("after install resolv.conf names %v, want only 127.0.0.2:\n%s", got, rc)
			}
			if got := parseResolvConf([]byte(rc)).keep; strings.Join(got, "|") != strings.Join(tc.wantKeep, "|") {
				t.Errorf("after install resolv.conf keeps %q, want %q", got, tc.wantKeep)
			}
			// Once installed, upstreams still reads the real resolvers, from the saved copy.
			if code, out := setupCmd(t, root, f, "upstreams"); code != 0 {
				t.Fatalf("upstreams after install: exit %d: %s", code, out)
			}
			if up2 := readFile(t, root, upstreamPath); up2 != up {
				t.Errorf("upstreams after install wrote\n%s\nwant, as before,\n%s", up2, up)
			}
			// A second install changes nothing.
			installed := snapshot(t, root)
			if code, out := setupCmd(t, root, f, "install"); code != 0 || !strings.Contains(out, "already") {
				t.Errorf("second install: exit %d: %s", code, out)
			}
			if d := diffSnapshots(installed, snapshot(t, root)); len(d) > 0 {
				t.Errorf("second install changed the tree:\n%s", strings.Join(d, "\n"))
			}
			if code, out := setupCmd(t, root, f, "status"); code != 0 || !strings.Contains(out, "points at meshdns: true") {
				t.Errorf("status: exit %d: %s", code, out)
			}

			if code, out := setupCmd(t, root, f, "remove"); code != 0 || !strings.Contains(out, "restored") {
				t.Fatalf("remove: exit %d: %s", code, out)
			}
			// Byte for byte what upstreams left, but for the empty state directory.
			after := snapshot(t, root)
			delete(after, stateDir)
			if d := diffSnapshots(afterUpstreams, after); len(d) > 0 {
				t.Errorf("remove did not restore the tree:\n%s", strings.Join(d, "\n"))
			}
			if d := diffSnapshots(orig, afterUpstreams); len(d) != 1 || !strings.Contains(d[0], upstreamPath) {
				t.Errorf("upstreams changed more than %s: %v", upstreamPath, d)
			}

			removed := snapshot(t, root)
			if code, out := setupCmd(t, root, f, "remove"); code != 0 || !strings.Contains(out, "nothing saved") {
				t.Errorf("second remove: exit %d: %s", code, out)
			}
			if d := diffSnapshots(removed, snapshot(t, root)); len(d) > 0 {
				t.Errorf("second remove changed the tree:\n%s", strings.Join(d, "\n"))
			}
		})
	}
}

// Every way install must refuse or fail leaves the tree exactly as it was,
// and upstreams never writes an address meshdns listens on.
func TestRefusals(t *testing.T) {
	resolvedFiles := map[string]node{
		"/etc/resolv.conf":                      {link: stubLink},
		"/run/systemd/resolve/stub-resolv.conf": {content: stubResolv},
		"/etc/meshdns/upstream.conf":            {content: "nameserver 127.0.0.53\n"},
	}
	cases := []struct {
		name string
		tree map[string]node
		// ready: the fake meshdns's ready endpoint says OK; silent: its
		// DNS port never answers.
		ready, silent bool
		args          []string // the command and its flags
		want          string   // in the output
	}{
		{
			name:  "resolv.conf already names meshdns: upstreams",
			tree:  map[string]node{"/etc/resolv.conf": {content: "nameserver 127.0.0.2\nsearch x.example\n"}},
			ready: true, args: []string{"upstreams"}, want: "127.0.0.2, an address meshdns listens on",
		},
		{
			name:  "resolv.conf names meshdns among others: upstreams",
			tree:  map[string]node{"/etc/resolv.conf": {content: "nameserver 10.0.0.1\nnameserver 127.0.0.2\n"}},
			ready: true, args: []string{"upstreams"}, want: "would be a loop",
		},
		{
			name: "resolv.conf already names meshdns: install",
			tree: map[string]node{
				"/etc/resolv.conf":           {content: "nameserver 127.0.0.2\n"},
				"/etc/meshdns/upstream.conf": {content: "nameserver 10.0.0.1\n"},
			},
			ready: true, args: []string{"install"}, want: "already names meshdns",
		},
		{
			name:  "no nameserver: upstreams",
			tree:  map[string]node{"/etc/resolv.conf": {content: "search x.example\n"}},
			ready: true, args: []string{"upstreams"}, want: "names no nameserver",
		},
		{
			name:  "no resolv.conf: upstreams",
			ready: true, args: []string{"upstreams"}, want: "does not exist",
		},
		{
			name:  "-listen makes another address meshdns's",
			tree:  map[string]node{"/etc/resolv.conf": {content: "nameserver 127.0.0.9\n"}},
			ready: true, args: []string{"upstreams", "-listen", "127.0.0.9"}, want: "127.0.0.9, an address meshdns listens on",
		},
		{
			name: "upstream.conf names meshdns: install",
			tree: map[string]node{
				"/etc/resolv.conf":           {content: plainResolv},
				"/etc/meshdns/upstream.conf": {content: "nameserver 127.0.0.2\n"},
			},
			ready: true, args: []string{"install"}, want: "every unknown name would loop",
		},
		{
			name:  "no upstream.conf: install",
			tree:  map[string]node{"/etc/resolv.conf": {content: plainResolv}},
			ready: true, args: []string{"install"}, want: "run meshdns-setup upstreams first",
		},
		{
			name: "Corefile forwards to resolv.conf: install",
			tree: map[string]node{
				"/etc/resolv.conf":      {content: plainResolv},
				"/etc/meshdns/Corefile": {content: ".:53 {\n    bind 127.0.0.2\n    forward . /etc/resolv.conf\n}\n"},
			},
			ready: true, args: []string{"install"}, want: "once it names meshdns every unknown name would loop",
		},
		{
			name: "Corefile forwards to a link to resolv.conf: install",
			tree: map[string]node{
				"/etc/resolv.conf":      {content: plainResolv},
				"/etc/meshdns/up.conf":  {link: "/etc/resolv.conf"},
				"/etc/meshdns/Corefile": {content: ".:53 {\n    bind 127.0.0.2\n    forward . /etc/meshdns/up.conf\n}\n"},
			},
			ready: true, args: []string{"install"}, want: "once it names meshdns every unknown name would loop",
		},
		{
			name: "Corefile forwards to meshdns's address: install",
			tree: map[string]node{
				"/etc/resolv.conf":      {content: plainResolv},
				"/etc/meshdns/Corefile": {content: ".:53 {\n    bind 127.0.0.2\n    forward . 10.0.0.1 dns://127.0.0.2:53\n}\n"},
			},
			ready: true, args: []string{"install"}, want: "forward to dns://127.0.0.2:53",
		},
		{
			name: "systemd-resolved forwards to meshdns: upstreams",
			tree: map[string]node{
				"/etc/resolv.conf":                      {link: stubLink},
				"/run/systemd/resolve/stub-resolv.conf": {content: stubResolv},
				"/run/systemd/resolve/resolv.conf":      {content: "nameserver 127.0.0.2\n"},
			},
			ready: true, args: []string{"upstreams"}, want: "systemd-resolved, an upstream of meshdns, forwards to 127.0.0.2",
		},
		{
			name: "systemd-resolved not running: install",
			tree: map[string]node{
				"/etc/resolv.conf":           {link: stubLink},
				"/etc/meshdns/upstream.conf": {content: "nameserver 127.0.0.53\n"},
			},
			ready: true, args: []string{"install"}, want: "is systemd-resolved running?",
		},
		{
			name:  "ready never OK: install, plain",
			tree:  map[string]node{"/etc/resolv.conf": {content: plainResolv}, "/etc/meshdns/upstream.conf": {content: "nameserver 10.0.0.1\n"}},
			ready: false, args: []string{"install", "-timeout", "300ms"}, want: "503 Service Unavailable meshdns",
		},
		{
			name:  "ready never OK: install, systemd-resolved",
			tree:  resolvedFiles,
			ready: false, args: []string{"install", "-timeout", "300ms"}, want: "not ready after 300ms",
		},
		{
			name:  "ready but no DNS on meshdns's address: install",
			tree:  resolvedFiles,
			ready: true, silent: true, args: []string{"install", "-timeout", "1500ms"}, want: "no answer",
		},
		{
			name:  "unknown command",
			tree:  map[string]node{"/etc/resolv.conf": {content: plainResolv}},
			ready: true, args: []string{"frobnicate"}, want: "unknown command",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			root := makeRoot(t, tc.tree)
			f := newFakeMeshdns(t, tc.ready)
			if tc.silent {
				f.dns = silentDNS(t)
			}
			before := snapshot(t, root)
			start := time.Now()
			code, out := setupCmd(t, root, f, tc.args...)
			if code == 0 {
				t.Errorf("exit 0, want a failure")
			}
			if !strings.Contains(out, tc.want) {
				t.Errorf("output lacks %q", tc.want)
			}
			if d := diffSnapshots(before, snapshot(t, root)); len(d) > 0 {
				t.Errorf("the tree changed:\n%s", strings.Join(d, "\n"))
			}
			if el := time.Since(start); el > 5*time.Second {
				t.Errorf("took %v: the timeout is not kept", el)
			}
			if b, err := os.ReadFile(filepath.Join(root, upstreamPath)); err == nil && tc.args[0] == "upstreams" {
				for _, ns := range nameservers(string(b)) {
					if ns == "127.0.0.2" {
						t.Errorf("upstream.conf names 127.0.0.2")
					}
				}
			}
		})
	}
}

// With nothing saved, remove says so and changes nothing; it does not even
// make its directory. When resolv.conf names meshdns by hand it fails,
// since the machine would lose its resolver with meshdns, unless -force.
func TestRemoveNothingSaved(t *testing.T) {
	cases := []struct {
		resolv string
		args   []string
		code   int
		want   string
	}{
		{plainResolv, []string{"remove"}, 0, "nothing saved"},
		{"nameserver 127.0.0.2\n", []string{"remove"}, 1, "not set up by meshdns-setup install"},
		{"nameserver 127.0.0.2\n", []string{"remove", "-force"}, 0, "warning"},
	}
	for _, tc := range cases {
		root := makeRoot(t, map[string]node{"/etc/resolv.conf": {content: tc.resolv}})
		before := snapshot(t, root)
		code, out := setupCmd(t, root, nil, tc.args...)
		if code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("%q on %q: exit %d, want %d and %q: %s", tc.args, tc.resolv, code, tc.code, tc.want, out)
		}
		if d := diffSnapshots(before, snapshot(t, root)); len(d) > 0 {
			t.Errorf("remove changed the tree:\n%s", strings.Join(d, "\n"))
		}
	}
}

// When something else rewrote resolv.conf after install (a DHCP client, an
// operator) and it no longer names meshdns, remove leaves it and keeps the
// saved copy; -force puts the saved one back.
func TestRemoveAfterResolvConfChanged(t *testing.T) {
	root := makeRoot(t, map[string]node{
		"/etc/resolv.conf":           {content: plainResolv},
		"/etc/meshdns/upstream.conf": {content: "nameserver 10.0.0.1\n"},
	})
	f := newFakeMeshdns(t, true)
	orig := snapshot(t, root)
	if code, out := setupCmd(t, root, f, "install"); code != 0 {
		t.Fatalf("install: exit %d: %s", code, out)
	}
	dhcp := "nameserver 10.9.9.9\n"
	if err := os.WriteFile(filepath.Join(root, resolvPath), []byte(dhcp), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out := setupCmd(t, root, f, "remove"); code != 0 || !strings.Contains(out, "left as it is") {
		t.Errorf("remove: exit %d: %s", code, out)
	}
	if got := readFile(t, root, resolvPath); got != dhcp {
		t.Errorf("remove overwrote a resolv.conf that no longer names meshdns: %q", got)
	}
	if code, out := setupCmd(t, root, f, "install"); code == 0 || !strings.Contains(out, "run meshdns-setup remove") {
		t.Errorf("install over a stale saved copy: exit %d: %s", code, out)
	}
	if code, out := setupCmd(t, root, f, "remove", "-force"); code != 0 || !strings.Contains(out, "restored") {
		t.Errorf("remove -force: exit %d: %s", code, out)
	}
	after := snapshot(t, root)
	delete(after, stateDir)
	if d := diffSnapshots(orig, after); len(d) > 0 {
		t.Errorf("remove -force did not restore the tree:\n%s", strings.Join(d, "\n"))
	}
}

// A machine without resolv.conf (glibc then asks 127.0.0.1) gets one from
// install and none again from remove.
func TestInstallRemoveAbsent(t *testing.T) {
	root := makeRoot(t, map[string]node{"/etc/meshdns/upstream.conf": {content: "nameserver 10.0.0.1\n"}})
	f := newFakeMeshdns(t, true)
	if code, out := setupCmd(t, root, f, "install"); code != 0 {
		t.Fatalf("install: exit %d: %s", code, out)
	}
	if got := nameservers(readFile(t, root, resolvPath)); len(got) != 1 || got[0] != "127.0.0.2" {
		t.Errorf("resolv.conf names %v", got)
	}
	if code, out := setupCmd(t, root, f, "remove"); code != 0 {
		t.Fatalf("remove: exit %d: %s", code, out)
	}
	if _, err := os.Lstat(filepath.Join(root, resolvPath)); !os.IsNotExist(err) {
		t.Errorf("after remove resolv.conf: %v, want none", err)
	}
}

// A saved copy that no longer matches its checksum is never restored.
func TestRemoveDamagedCopy(t *testing.T) {
	root := makeRoot(t, map[string]node{
		"/etc/resolv.conf":           {content: plainResolv},
		"/etc/meshdns/upstream.conf": {content: "nameserver 10.0.0.1\n"},
	})
	f := newFakeMeshdns(t, true)
	if code, out := setupCmd(t, root, f, "install"); code != 0 {
		t.Fatalf("install: exit %d: %s", code, out)
	}
	if err := os.WriteFile(filepath.Join(root, origFile), []byte("nameserver 6.6.6.6\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, root)
	if code, out := setupCmd(t, root, f, "remove"); code == 0 || !strings.Contains(out, "does not match the checksum") {
		t.Errorf("remove: exit %d: %s", code, out)
	}
	if d := diffSnapshots(before, snapshot(t, root)); len(d) > 0 {
		t.Errorf("remove changed the tree:\n%s", strings.Join(d, "\n"))
	}
}

// The Corefile's bind and ready are what the helper uses; flags come on
// either side of the command.
func TestCorefileAndFlags(t *testing.T) {
	cf := parseCorefile([]byte("# comment bind 1.1.1.1\n.:53 {\n  bind 127.0.0.7 lo ::1 # two addresses\n  ready :8282\n  forward . /etc/meshdns/upstream.conf {\n    max_fails 2\n  }\n}\n"))
	if len(cf.binds) != 2 || cf.binds[0].String() != "127.0.0.7" || cf.binds[1].String() != "::1" {
		t.Errorf("binds %v", cf.binds)
	}
	if cf.ready != ":8282" || len(cf.forwards) != 1 || cf.forwards[0] != "/etc/meshdns/upstream.conf" {
		t.Errorf("ready %q forwards %q", cf.ready, cf.forwards)
	}

	root := makeRoot(t, map[string]node{
		"/etc/meshdns/Corefile": {content: ".:53 {\n  bind 127.0.0.7\n  ready :8282\n  forward . /etc/meshdns/upstream.conf\n}\n"},
		"/etc/resolv.conf":      {content: "nameserver 127.0.0.7\n"},
	})
	code, out := setupCmd(t, root, nil, "status")
	if code != 0 || !strings.Contains(out, "meshdns: 127.0.0.7 (from /etc/meshdns/Corefile), ready at http://127.0.0.1:8282/ready") ||
		!strings.Contains(out, "points at meshdns: true") {
		t.Errorf("status: exit %d: %s", code, out)
	}
	var o, e bytes.Buffer
	if code := run(context.Background(), []string{"status", "-root", root, "-ready", "http://127.0.0.1:1/ready"}, &o, &e); code != 0 {
		t.Errorf("flags after the command: exit %d: %s", code, e.String())
	}
	if code := run(context.Background(), nil, &o, &e); code != 2 {
		t.Errorf("no command: exit %d, want 2", code)
	}
}
