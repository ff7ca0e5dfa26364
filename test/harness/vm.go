package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// vmNetnsPrefix names the network namespaces of VMs. The rest of the name
// is the VM's /30, so creating the namespace claims the addresses: two test
// processes on one machine never pick the same ones.
const vmNetnsPrefix = "meshdns-vm-"

// VM is a network namespace standing in for a VM: its own loopback, one
// interface eth0 with IP (10.X.Y.2/30) whose other end, HostIP
// (10.X.Y.1/30), is on this machine, and a default route through it. What
// runs inside also gets its own mount and UTS namespaces: Hostname, and the
// VM's /etc/resolv.conf, /etc/hosts and /etc/nsswitch.conf bind-mounted
// from files of the test, so glibc resolves as on a VM and the machine's
// own files are never touched. It is removed when the test ends.
type VM struct {
	// Netns is the name of the network namespace (ip netns).
	Netns string
	// Hostname is the VM's host name.
	Hostname string
	// IP is the VM's address; HostIP the machine's end of the link, where
	// servers the VM should reach (istiod, the upstream resolver) listen.
	IP, HostIP netip.Addr

	t    TB
	dir  string
	veth string // the machine's end
}

// RequireVMs skips the test unless VMs can be made here: root and ip
// (iproute2). With MESHDNS_REQUIRE_VMS set, as .ci/run sets it, it fails
// instead, so CI never passes without them. The other tools a VM uses
// (unshare, mount, hostname, getent) are on every Debian; a missing one
// fails the test.
func RequireVMs(t TB) {
	t.Helper()
	skip := func(format string, args ...any) {
		t.Helper()
		if s, ok := t.(interface{ Skipf(string, ...any) }); ok && os.Getenv("MESHDNS_REQUIRE_VMS") == "" {
			s.Skipf(format, args...)
		}
		t.Fatalf(format, args...)
	}
	if os.Geteuid() != 0 {
		skip("harness: a VM is a network namespace: needs root (uid %d)", os.Geteuid())
	}
	if _, err := exec.LookPath("ip"); err != nil {
		skip("harness: a VM needs ip (Debian: iproute2): %v", err)
	}
	for _, cmd := range []string{"unshare", "mount", "hostname", "getent", "sleep"} {
		if _, err := exec.LookPath(cmd); err != nil {
			t.Fatalf("harness: a VM needs %s (Debian: util-linux, mount, hostname, libc-bin, coreutils): %v", cmd, err)
		}
	}
}

// StartVM makes a VM named hostname. Resolvers are the VM's business: its
// resolv.conf is empty until WriteResolvConf.
func StartVM(t TB, hostname string) *VM {
	t.Helper()
	RequireVMs(t)
	removeStaleVMs(t)
	v := &VM{Hostname: hostname, t: t, dir: t.TempDir()}
	begin := time.Now()
	for attempt := 1; ; attempt++ {
		// A /30 at the start of a /24 of 10.200.0.0/13: the machine's end
		// .1, the VM .2.
		x, y := 200+rand.IntN(8), rand.IntN(256)
		v.Netns = fmt.Sprintf("%s%d-%d", vmNetnsPrefix, x, y)
		v.HostIP = netip.AddrFrom4([4]byte{10, byte(x), byte(y), 1})
		v.IP = netip.AddrFrom4([4]byte{10, byte(x), byte(y), 2})
		err := errors.New("the machine has a route or an address there")
		var out []byte
		if !inUse(v.HostIP) {
			if out, err = exec.Command("ip", "netns", "add", v.Netns).CombinedOutput(); err == nil {
				break
			}
		}
		if attempt == 50 {
			t.Fatalf("harness: no free /30 for a VM, last %s: %v: %s", v.Netns, err, out)
		}
	}
	t.Cleanup(v.remove)
	host, peer := fmt.Sprintf("mdh-%d-%d", v.HostIP.As4()[1], v.HostIP.As4()[2]), fmt.Sprintf("mdv-%d-%d", v.HostIP.As4()[1], v.HostIP.As4()[2])
	v.veth = host
	steps := [][]string{
		{"link", "add", host, "type", "veth", "peer", "name", peer},
		{"link", "set", peer, "netns", v.Netns},
		{"addr", "add", v.HostIP.String() + "/30", "dev", host},
		{"link", "set", host, "up"},
		{"-n", v.Netns, "link", "set", peer, "name", "eth0"},
		{"-n", v.Netns, "addr", "add", v.IP.String() + "/30", "dev", "eth0"},
		{"-n", v.Netns, "link", "set", "eth0", "up"},
		{"-n", v.Netns, "link", "set", "lo", "up"},
		{"-n", v.Netns, "route", "add", "default", "via", v.HostIP.String()},
	}
	for _, args := range steps {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("harness: ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	files := map[string]string{
		"resolv.conf":   "",
		"hosts":         fmt.Sprintf("127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n%s %s\n", v.IP, hostname),
		"nsswitch.conf": "hosts: files dns\n",
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(v.dir, name), []byte(data), 0o644); err != nil {
			t.Fatalf("harness: %v", err)
		}
	}
	// A process that lives as long as the VM: a namespace without one was
	// left by a test that died without its cleanups (removeStaleVMs).
	if _, err := v.Start("init", []string{"sleep", "infinity"}, filepath.Join(v.dir, "init.log")); err != nil {
		t.Fatalf("harness: %v", err)
	}
	t.Logf("harness: VM %s (%s) at %s, this machine at %s, up in %s", hostname, v.Netns, v.IP, v.HostIP,
		time.Since(begin).Round(time.Millisecond))
	return v
}

// inUse reports whether an address of this machine is in ip's /30, or a
// route other than the default one leads there.
func inUse(ip netip.Addr) bool {
	prefix := netip.PrefixFrom(ip, 30).Masked()
	out, err := exec.Command("ip", "-4", "route", "show", "to", "match", ip.String()).Output()
	if err != nil {
		return true
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line != "" && !strings.HasPrefix(line, "default ") {
			return true
		}
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return true
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if p, err := netip.ParsePrefix(n.String()); err == nil && p.Overlaps(prefix) {
				return true
			}
		}
	}
	return false
}

// remove deletes the veth pair and the namespace. (The kernel removes the
// pair with the namespace too, but later, in the background.)
func (v *VM) remove() {
	// What still runs inside (a test that stopped early) goes first.
	if out, err := exec.Command("ip", "netns", "pids", v.Netns).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	if v.veth != "" {
		_ = exec.Command("ip", "link", "del", v.veth).Run()
	}
	if out, err := exec.Command("ip", "netns", "del", v.Netns).CombinedOutput(); err != nil {
		v.t.Logf("harness: ip netns del %s: %v: %s", v.Netns, err, out)
	}
}

// removeStaleVMs deletes VM namespaces that nothing runs in any more and
// that are over a minute old: left by a test process that was killed.
func removeStaleVMs(t TB) {
	t.Helper()
	entries, err := os.ReadDir("/run/netns")
	if err != nil {
		return
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), vmNetnsPrefix) {
			continue
		}
		info, err := e.Info()
		if err != nil || time.Since(info.ModTime()) < time.Minute {
			continue
		}
		out, err := exec.Command("ip", "netns", "pids", e.Name()).Output()
		if err != nil || len(bytes.TrimSpace(out)) > 0 {
			continue
		}
		if err := exec.Command("ip", "netns", "del", e.Name()).Run(); err == nil {
			t.Logf("harness: removed %s, a VM left by an earlier test", e.Name())
		}
	}
}

// WriteResolvConf sets the VM's /etc/resolv.conf. Processes started
// afterwards see it; so do running ones, as the file is the same inode.
func (v *VM) WriteResolvConf(content string) {
	v.t.Helper()
	if err := os.WriteFile(filepath.Join(v.dir, "resolv.conf"), []byte(content), 0o644); err != nil {
		v.t.Fatalf("harness: %v", err)
	}
}

// command is argv run inside the VM: its network namespace, and new mount
// and UTS namespaces with the VM's host name and files in /etc.
func (v *VM) command(argv []string) []string {
	script := "set -e\nhostname " + shellQuote(v.Hostname) + "\n"
	for _, f := range []string{"resolv.conf", "hosts", "nsswitch.conf"} {
		script += "mount --bind " + shellQuote(filepath.Join(v.dir, f)) + " /etc/" + f + "\n"
	}
	script += `exec "$@"`
	// ip netns exec and unshare exec, without forking: the process started
	// is argv itself, so signals reach it.
	return append([]string{"ip", "netns", "exec", v.Netns, "unshare", "--mount", "--uts", "sh", "-c", script, "sh"}, argv...)
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// Start runs argv inside the VM, its output appended to logPath, as
// StartProcess does. The caller stops it (or the VM's removal kills it).
func (v *VM) Start(name string, argv []string, logPath string) (*Process, error) {
	return StartProcess(name, v.command(argv), nil, logPath)
}

// Run runs argv inside the VM and returns its output.
func (v *VM) Run(ctx context.Context, argv ...string) (stdout, stderr string, err error) {
	full := v.command(argv)
	cmd := exec.CommandContext(ctx, full[0], full[1:]...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// Lookup is the VM's glibc resolving name: `getent ahosts NAME`, which
// calls getaddrinfo as applications do (search list, ndots, /etc/hosts).
// It returns the addresses, sorted and space-separated, or "NOTFOUND" when
// getent finds nothing (exit status 2); the canonical name is the first
// line's.
func (v *VM) Lookup(name string) (addrs, canonical string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, stderr, err := v.Run(ctx, "getent", "ahosts", name)
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 2 {
		return "NOTFOUND", "", nil
	}
	if err != nil {
		return "", "", fmt.Errorf("getent ahosts %s in VM %s: %v: %s", name, v.Hostname, err, stderr)
	}
	seen := map[string]bool{}
	var list []string
	for i, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if i == 0 && len(f) >= 3 {
			canonical = f[2]
		}
		if !seen[f[0]] {
			seen[f[0]] = true
			list = append(list, f[0])
		}
	}
	slices.Sort(list)
	return strings.Join(list, " "), canonical, nil
}

// DialContext dials addr from inside the VM's network namespace: a thread
// enters the namespace, makes the socket, and goes back. The socket stays in
// the VM's namespace whichever thread uses it later.
func (v *VM) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		// Back in this machine's namespace the thread is unlocked. A locked
		// thread would end with its goroutine, and with it every child
		// process it forked (Pdeathsig follows the thread, not the process):
		// one that cannot go back stays locked all the same.
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{nil, err}
			return
		}
		defer self.Close()
		target, err := os.Open("/run/netns/" + v.Netns)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{nil, err}
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- result{nil, fmt.Errorf("enter network namespace %s: %w", v.Netns, err)}
			return
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		ch <- result{c, err}
		if unix.Setns(int(self.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
	}()
	r := <-ch
	return r.c, r.err
}

// HTTPGet fetches url from inside the VM (e.g. the ready plugin on its
// 127.0.0.1:8181) and returns the status code and body.
func (v *VM) HTTPGet(url string) (int, string, error) {
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{DialContext: v.DialContext, DisableKeepAlives: true},
	}
	resp, err := client.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	return resp.StatusCode, string(body), err
}

// Answer is harness.Answer asked from inside the VM.
func (v *VM) Answer(addr, name string, qtype uint16, network string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	conn, err := v.DialContext(ctx, network, addr)
	if err != nil {
		return "error: " + err.Error()
	}
	defer conn.Close()
	c := &dns.Client{Net: network, Timeout: 2 * time.Second}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.SetEdns0(4096, false)
	r, _, err := c.ExchangeWithConn(m, &dns.Conn{Conn: conn})
	if err != nil {
		return "error: " + err.Error()
	}
	return formatAnswer(r)
}

// WaitExit waits up to timeout for the process to exit and reports whether
// it did.
func (p *Process) WaitExit(timeout time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(timeout):
		return false
	}
}
