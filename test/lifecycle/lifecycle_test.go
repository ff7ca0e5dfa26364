// Package lifecycle runs docs/vm/meshdns.service under a real systemd, with
// docs/vm/Corefile, and checks what an operator and a package upgrade do
// to it under load: a reload and a binary upgrade lose nothing, and a plain
// restart is measured.
package lifecycle

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/meshdns/meshdns/test/harness"
)

// The load: a stub resolver's rate on a busy VM, over several sockets.
const (
	rate    = 3000
	sockets = 4
)

// upgradedProcessReloads says whether a process started by an upgrade
// takes a reload. CoreDNS's upgrade (caddy v1.1.4) hands the new process
// the Corefile's text and not the loader that read it, so SIGUSR1 there
// logs "no Caddyfile loader" and the old configuration stays: docs/vm.md
// tells operators to restart after an upgrade to apply a changed Corefile.
// A build whose upgraded process reloads flips this, and the docs.
const upgradedProcessReloads = false

// The table: mesh names, and a wildcard whose fresh names show the TTL in
// force (the cache in front of meshdns has never seen them).
const meshJSON = `{
  "table": {
    "reviews.bookinfo.svc.cluster.local": {"ips": ["10.96.1.11"], "registry": "Kubernetes"},
    "ratings.bookinfo.svc.cluster.local": {"ips": ["10.96.1.12"], "registry": "Kubernetes"},
    "mysql.db.svc.cluster.local": {"ips": ["10.244.1.5", "10.244.2.6"], "registry": "Kubernetes"},
    "api.payments.example": {"ips": ["240.240.0.10"], "registry": "External"},
    "*.ttl.example": {"ips": ["192.0.2.200"], "registry": "External"}
  }
}
`

// The upstream's names: what forward answers.
var upstreamNames = map[string]string{
	"www.example.com.":   "192.0.2.1",
	"login.example.org.": "192.0.2.2",
}

var probes = []harness.Probe{
	{Name: "reviews.bookinfo.svc.cluster.local.", Qtype: dns.TypeA, Want: "10.96.1.11"},
	{Name: "www.example.com.", Qtype: dns.TypeA, Want: "192.0.2.1"},
	{Name: "ratings.bookinfo.svc.cluster.local.", Qtype: dns.TypeA, Want: "10.96.1.12"},
	{Name: "login.example.org.", Qtype: dns.TypeA, Want: "192.0.2.2"},
	{Name: "mysql.db.svc.cluster.local.", Qtype: dns.TypeA, Want: "10.244.1.5 10.244.2.6"},
	{Name: "api.payments.example.", Qtype: dns.TypeA, Want: "240.240.0.10"},
	{Name: "nope.bookinfo.svc.cluster.local.", Qtype: dns.TypeA, Want: "NXDOMAIN"},
	{Name: "reviews.bookinfo.svc.cluster.local.", Qtype: dns.TypeAAAA, Want: "NODATA"},
}

// units are the shipped unit and the few targets it names, as stubs. The
// drop-in sends the service's output to a file (there is no journal), and
// puts it on its own CPU with a priority above the other tests that share
// the machine: what is measured is the reload and the upgrade, not how
// long a busy machine keeps the resolver from reading its socket.
func units(t *testing.T, serverCPU int) map[string]string {
	t.Helper()
	unit, err := os.ReadFile(filepath.Join(harness.RepoRoot(t), "docs", "vm", "meshdns.service"))
	if err != nil {
		t.Fatal(err)
	}
	u := map[string]string{
		"meshdns.service":             string(unit),
		"meshdns-test.target":         "[Unit]\nDescription=meshdns under test\nWants=meshdns.service\n",
		"system.slice":                "[Unit]\nDescription=System Slice\nDefaultDependencies=no\n",
		"meshdns.service.d/test.conf": "[Service]\nStandardOutput=append:/run/meshdns.log\nStandardError=inherit\nNice=-10\n",
	}
	if serverCPU >= 0 {
		u["meshdns.service.d/test.conf"] += "CPUAffinity=" + strconv.Itoa(serverCPU) + "\n"
	}
	for _, target := range []string{"sysinit", "basic", "shutdown", "network-online", "nss-lookup", "multi-user", "local-fs", "sockets", "timers", "paths"} {
		u[target+".target"] = "[Unit]\nDescription=" + target + " (stub)\n"
	}
	return u
}

// corefile is docs/vm/Corefile with its xds block replaced by a file source
// (istiod adds nothing to what is measured here) and ttl added.
func corefile(t *testing.T, ttl int) string {
	t.Helper()
	tmpl, err := os.ReadFile(filepath.Join(harness.RepoRoot(t), "docs", "vm", "Corefile"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	depth, replaced := 0, 0
	for _, line := range strings.Split(string(tmpl), "\n") {
		code, _, _ := strings.Cut(line, "#")
		trimmed := strings.TrimSpace(code)
		switch {
		case depth > 0:
			depth += strings.Count(code, "{") - strings.Count(code, "}")
			continue
		case strings.HasPrefix(trimmed, "xds") && strings.HasSuffix(trimmed, "{"):
			indent := line[:len(line)-len(strings.TrimLeft(line, " \t"))]
			out = append(out, indent+"file /etc/meshdns/mesh.json", indent+"ttl "+strconv.Itoa(ttl))
			depth = 1
			replaced++
			continue
		}
		out = append(out, line)
	}
	rendered := strings.Join(out, "\n")
	if replaced != 1 {
		t.Fatalf("docs/vm/Corefile: %d xds blocks, want one:\n%s", replaced, tmpl)
	}
	for _, want := range []string{".:53 {\n", "bind 127.0.0.2\n", "ready 127.0.0.1:8181\n", "forward . /etc/meshdns/upstream.conf"} {
		if !strings.Contains(rendered, want) {
			t.Fatalf("docs/vm/Corefile has no %q:\n%s", want, rendered)
		}
	}
	return rendered
}

// TestReloadUpgradeRestart runs bin/meshdns as docs/vm/meshdns.service
// under systemd, serving docs/vm/Corefile in a VM, under a steady load of
// mesh and external names, through: a reload with an edited Corefile; an
// upgrade to a binary that cannot start; an upgrade to another binary
// (bin/coredns at /usr/bin/meshdns) by the package's postinst; a reload of
// the upgraded process. Nothing may be lost, SERVFAIL or wrong, and systemd
// must follow the new process. Then a plain restart is measured.
func TestReloadUpgradeRestart(t *testing.T) {
	harness.RequireVMs(t)
	requireSystemd(t)
	coredns := harness.CoreDNSBinary(t)
	lean, err := os.ReadFile(filepath.Join(filepath.Dir(coredns), "meshdns"))
	if err != nil {
		t.Fatalf("bin/meshdns, the binary the package ships, is needed (make build): %v", err)
	}

	script, err := os.ReadFile(filepath.Join(harness.RepoRoot(t), "cmd", "package", "scripts", "postinst"))
	if err != nil {
		t.Fatalf("the package's postinst, which performs the upgrade: %v", err)
	}
	postinst := string(script)

	vm := harness.StartVM(t, "vm1")
	harness.ServeDNS(t, net.JoinHostPort(vm.HostIP.String(), "53"), dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		if ip, ok := upstreamNames[strings.ToLower(r.Question[0].Name)]; ok && r.Question[0].Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: net.ParseIP(ip)})
		} else if !ok {
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	}))

	// The server on one CPU, the load (this process) on another, as the
	// benchmarks run them.
	serverCPU, loadCPU := -1, -1
	if runtime.NumCPU() >= 2 {
		serverCPU, loadCPU = 1, 0
	}
	sd := bootSystemd(t, vm, units(t, serverCPU), "meshdns-test.target",
		map[string]file{
			"meshdns/Corefile":      {data: []byte(corefile(t, 5)), mode: 0o644},
			"meshdns/mesh.json":     {data: []byte(meshJSON), mode: 0o644},
			"meshdns/upstream.conf": {data: []byte("nameserver " + vm.HostIP.String() + "\n"), mode: 0o644},
		},
		map[string]file{"meshdns": {data: lean, mode: 0o755}})
	if loadCPU >= 0 {
		if err := harness.SetAffinity(os.Getpid(), loadCPU); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			all := make([]int, runtime.NumCPU())
			for i := range all {
				all[i] = i
			}
			_ = harness.SetAffinity(os.Getpid(), all...)
		})
	}
	// The load too: a stalled sender catches up in a burst.
	if err := harness.SetNice(os.Getpid(), -10); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = harness.SetNice(os.Getpid(), 0) })

	svc := &service{t: t, sd: sd, vm: vm, postinst: postinst}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("meshdns's output, last lines:\n%s", svc.log(40))
		}
	})
	first := svc.waitServing(0)
	leanInode := svc.inode("/usr/bin/meshdns")
	if got := svc.exeInode(first); got != leanInode {
		t.Fatalf("PID %d runs inode %s, want /usr/bin/meshdns's %s", first, got, leanInode)
	}
	if ttl := svc.ttl(); ttl != 5 {
		t.Fatalf("TTL %d at start, want the Corefile's 5", ttl)
	}
	t.Logf("systemd %d (on this machine) runs meshdns.service: main PID %d, pidfile %d", sd.pid, first, svc.pidfile())

	// Reload and upgrade under one load: nothing may be lost.
	l, err := harness.StartLoad(vm.DialContext, "127.0.0.2:53", sockets, rate, probes)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Stop() })
	type window struct {
		name     string
		from, to time.Time
	}
	var windows []window
	phase := func(name string, f func()) {
		from := time.Now()
		f()
		time.Sleep(time.Second)
		windows = append(windows, window{name, from, time.Now()})
	}
	var upgraded int
	phase("steady", func() { time.Sleep(time.Second) })
	phase("reload (systemctl reload, ttl 5 → 10)", func() {
		svc.writeCorefile(corefile(t, 10))
		sd.mustSh("systemctl reload meshdns.service", nil)
		svc.waitTTL(10, 10*time.Second)
		if pid := svc.mainPID(); pid != first {
			t.Errorf("main PID %d after the reload, want %d still", pid, first)
		}
	})
	// A new binary that cannot start: the old process keeps serving, and
	// the postinst says so after waiting 10 s for a take-over.
	phase("failed upgrade (a binary that exits at once)", func() {
		svc.install(strings.NewReader("#!/bin/sh\necho 'meshdns: cannot start' >&2\nexit 1\n"))
		if out := svc.upgrade(); !strings.Contains(out, "did not take over") {
			t.Errorf("postinst after a failed upgrade said %q, want a warning that the new binary did not take over", out)
		}
		if !strings.Contains(svc.log(5), "child failed to initialize") {
			t.Errorf("no \"child failed to initialize\" in meshdns's output:\n%s", svc.log(5))
		}
		st := sd.show("meshdns.service", "MainPID", "NRestarts", "ActiveState", "SubState")
		if st["MainPID"] != strconv.Itoa(first) || st["NRestarts"] != "0" || st["ActiveState"] != "active" {
			t.Errorf("after a failed upgrade systemd says %v, want main PID %d, 0 restarts, active", st, first)
		}
	})
	phase("upgrade (the package's postinst, bin/coredns in place of bin/meshdns)", func() {
		f, err := os.Open(coredns)
		if err != nil {
			t.Fatal(err)
		}
		svc.install(f)
		f.Close()
		begin := time.Now()
		if out := svc.upgrade(); strings.Contains(out, "did not take over") {
			t.Fatalf("postinst: %s", out)
		}
		took := time.Since(begin)
		upgraded = svc.waitServing(first)
		st := sd.show("meshdns.service", "MainPID", "ExecMainPID", "NRestarts", "ActiveState", "SubState")
		pidfile := svc.pidfile()
		newInode := svc.inode("/usr/bin/meshdns")
		t.Logf("upgrade took %s: main PID %d → %d, pidfile %d, systemd says %v, exe inode %s → %s",
			took.Round(time.Millisecond), first, upgraded, pidfile, st, leanInode, svc.exeInode(upgraded))
		if pidfile != upgraded {
			t.Errorf("pidfile says %d, systemd's main PID is %d", pidfile, upgraded)
		}
		if st["NRestarts"] != "0" || st["ActiveState"] != "active" || st["SubState"] != "running" {
			t.Errorf("after the upgrade systemd says %v, want 0 restarts, active, running", st)
		}
		if svc.alive(first) {
			t.Errorf("the old process %d is still there", first)
		}
		if newInode == leanInode || svc.exeInode(upgraded) != newInode {
			t.Errorf("PID %d runs inode %s, want the new /usr/bin/meshdns's %s (the old one was %s)", upgraded, svc.exeInode(upgraded), newInode, leanInode)
		}
		t.Logf("what systemd logged about it:\n%s", sd.grepConsole(fmt.Sprintf("PID %d", first), "Main PID", "PID file"))
		if !strings.Contains(svc.log(20), "[INFO] Upgrade finished") {
			t.Errorf("no \"Upgrade finished\" in meshdns's output")
		}
		if ttl := svc.ttl(); ttl != 10 {
			t.Errorf("TTL %d after the upgrade, want 10: the upgrade keeps the configuration in force", ttl)
		}
	})
	phase("reload after the upgrade (ttl 10 → 15)", func() {
		svc.writeCorefile(corefile(t, 15))
		sd.mustSh("systemctl reload meshdns.service", nil)
		if upgradedProcessReloads {
			svc.waitTTL(15, 10*time.Second)
		} else {
			deadline := time.Now().Add(5 * time.Second)
			for !strings.Contains(svc.log(5), "no Caddyfile loader") && time.Now().Before(deadline) {
				time.Sleep(100 * time.Millisecond)
			}
			if !strings.Contains(svc.log(5), "[ERROR] SIGUSR1: no Caddyfile loader") {
				t.Errorf("reload after an upgrade: no \"no Caddyfile loader\" error in meshdns's output (does it reload now? see upgradedProcessReloads):\n%s", svc.log(10))
			}
			if ttl := svc.ttl(); ttl != 10 {
				t.Errorf("TTL %d after a reload of the upgraded process, want 10 still (see upgradedProcessReloads)", ttl)
			}
		}
		if pid := svc.mainPID(); pid != upgraded {
			t.Errorf("main PID %d, want %d", pid, upgraded)
		}
	})
	queries := l.Stop()
	all := harness.Count(queries, probes, l.Start, time.Now())
	for _, w := range windows {
		c := harness.Count(queries, probes, w.from, w.to)
		t.Logf("%s: %s%s", w.name, c, c.Span(w.from))
	}
	elapsed := windows[len(windows)-1].to.Sub(l.Start)
	t.Logf("in all: %s in %s (%.0f queries/s), %d ICMP errors; the load stalled %s at most",
		all, elapsed.Round(time.Millisecond), float64(all.Sent)/elapsed.Seconds(), l.Refused(), l.Stall().Round(time.Millisecond))
	if !all.Clean() {
		t.Errorf("through a reload and an upgrade: %s; want nothing lost, no SERVFAIL, no wrong answer", all)
	}
	if min := int(0.95 * rate * elapsed.Seconds()); all.Sent < min {
		t.Errorf("%d queries sent in %s, want at least %d: the load fell short of %d/s", all.Sent, elapsed, min, rate)
	}

	// A plain restart, measured.
	l, err = harness.StartLoad(vm.DialContext, "127.0.0.2:53", sockets, rate, probes)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Stop() })
	time.Sleep(time.Second)
	from := time.Now()
	sd.mustSh("systemctl restart meshdns.service", nil)
	took := time.Since(from)
	restarted := svc.waitServing(upgraded)
	time.Sleep(time.Second)
	to := time.Now()
	queries = l.Stop()
	r := harness.Count(queries, probes, l.Start, to)
	t.Logf("restart (systemctl restart, PID %d → %d, systemctl took %s): %s, %d ICMP errors; unanswered for %s",
		upgraded, restarted, took.Round(time.Millisecond), r, l.Refused(), r.Gap(rate).Round(time.Millisecond))
	if svc.alive(upgraded) {
		t.Errorf("the upgraded process %d survived a restart: systemd lost track of it", upgraded)
	}
	if ttl := svc.ttl(); ttl != 15 {
		t.Errorf("TTL %d after the restart, want the Corefile's 15", ttl)
	}
	if r.ServFail != 0 || r.Refused != 0 || r.Wrong != 0 {
		t.Errorf("restart: %s; want no SERVFAIL and no wrong answer", r)
	}
}

// service is meshdns.service as the test looks at it; PIDs are systemd's.
type service struct {
	t        *testing.T
	sd       *systemd
	vm       *harness.VM
	postinst string // the package's script
}

func (s *service) mainPID() int {
	s.t.Helper()
	pid, err := strconv.Atoi(s.sd.show("meshdns.service", "MainPID")["MainPID"])
	if err != nil {
		s.t.Fatalf("MainPID: %v", err)
	}
	return pid
}

// waitServing waits until systemd's main PID is not old, the old process is
// gone, and ready says OK, and returns the main PID.
func (s *service) waitServing(old int) int {
	s.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		pid := s.mainPID()
		if pid != 0 && pid != old && !s.alive(old) {
			if code, _, err := s.vm.HTTPGet("http://127.0.0.1:8181/ready"); err == nil && code == 200 {
				return pid
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("meshdns.service not serving after 15 s (main PID %d, old %d): %v\n%s", pid, old,
				s.sd.show("meshdns.service", "ActiveState", "SubState", "Result", "NRestarts"), s.log(20))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// alive reports whether pid runs (a zombie does not).
func (s *service) alive(pid int) bool {
	if pid == 0 {
		return false
	}
	out, _ := s.sd.sh(fmt.Sprintf("cat /proc/%d/stat 2>/dev/null", pid), nil)
	fields := strings.Fields(out)
	return len(fields) > 2 && fields[2] != "Z"
}

func (s *service) pidfile() int {
	s.t.Helper()
	pid, err := strconv.Atoi(strings.TrimSpace(s.sd.mustSh("cat /run/meshdns/meshdns.pid", nil)))
	if err != nil {
		s.t.Fatalf("pidfile: %v", err)
	}
	return pid
}

func (s *service) inode(path string) string {
	s.t.Helper()
	return strings.TrimSpace(s.sd.mustSh("stat -c %i "+path, nil))
}

func (s *service) exeInode(pid int) string {
	out, err := s.sd.sh(fmt.Sprintf("stat -L -c %%i /proc/%d/exe", pid), nil)
	if err != nil {
		return "(gone)"
	}
	return strings.TrimSpace(out)
}

func (s *service) log(n int) string {
	out, _ := s.sd.sh(fmt.Sprintf("tail -n %d /run/meshdns.log", n), nil)
	return out
}

// writeCorefile replaces /etc/meshdns/Corefile as an editor does.
func (s *service) writeCorefile(content string) {
	s.t.Helper()
	s.sd.mustSh("cat > /etc/meshdns/Corefile.new && mv /etc/meshdns/Corefile.new /etc/meshdns/Corefile", strings.NewReader(content))
}

// install puts bin at /usr/bin/meshdns as dpkg does: a new file renamed
// over the old one, which the running process keeps.
func (s *service) install(bin io.Reader) {
	s.t.Helper()
	s.sd.mustSh("cat > /usr/bin/meshdns.dpkg-new && chmod 0755 /usr/bin/meshdns.dpkg-new && mv /usr/bin/meshdns.dpkg-new /usr/bin/meshdns", bin)
}

// upgrade runs the package's postinst as dpkg does on an upgrade, once the
// new files are in place, and returns what it printed.
func (s *service) upgrade() string {
	s.t.Helper()
	out, err := s.sd.sh("sh -s configure 0.0.0 2>&1", strings.NewReader(s.postinst))
	if err != nil {
		s.t.Fatalf("postinst configure 0.0.0: %v\n%s", err, out)
	}
	return out
}

// ttl is the TTL of a name meshdns has never answered: the configured ttl.
func (s *service) ttl() int {
	s.t.Helper()
	name := fmt.Sprintf("x%d.ttl.example.", rand.Uint64())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	conn, err := s.vm.DialContext(ctx, "udp", "127.0.0.2:53")
	if err != nil {
		s.t.Fatal(err)
	}
	defer conn.Close()
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	c := &dns.Client{Timeout: 2 * time.Second}
	r, _, err := c.ExchangeWithConn(m, &dns.Conn{Conn: conn})
	if err != nil {
		s.t.Fatalf("%s: %v", name, err)
	}
	if len(r.Answer) != 1 {
		s.t.Fatalf("%s: %v", name, r)
	}
	return int(r.Answer[0].Header().Ttl)
}

// waitTTL waits until the configured ttl is want.
func (s *service) waitTTL(want int, timeout time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := s.ttl()
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("TTL %d after %s, want %d", got, timeout, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
