package harness

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/miekg/dns"
)

// CoreDNSConfig runs bin/coredns with a whole Corefile of the caller's, for
// Corefiles that StartCoreDNS's fixed server block cannot express (a
// shipped template, another bind address, plugins besides meshdns).
type CoreDNSConfig struct {
	// Corefile is the path of the Corefile; it is run as it is, so the same
	// file can be run again after Stop.
	Corefile string
	// Addr is the HOST:PORT the Corefile serves DNS on.
	Addr string
	// ReadyAddr is the HOST:PORT of its ready plugin, if any.
	ReadyAddr string
	// MetricsAddr is the HOST:PORT of its prometheus plugin, if any.
	MetricsAddr string
	// WaitReady waits until the ready plugin reports every source loaded;
	// otherwise StartCoreDNSWith returns once Addr answers DNS at all (any
	// rcode, SERVFAIL included), for a server that is expected never to be
	// ready.
	WaitReady bool
}

// StartCoreDNSWith runs bin/coredns -conf cfg.Corefile and waits as cfg
// says. It is stopped when the test ends.
func StartCoreDNSWith(t TB, cfg CoreDNSConfig) *CoreDNS {
	t.Helper()
	bin := requireBinary(t, binaryDir(t), "coredns")
	if cfg.WaitReady && cfg.ReadyAddr == "" {
		t.Fatalf("harness: StartCoreDNSWith: WaitReady needs ReadyAddr")
	}
	p, err := startProcess("coredns", bin, []string{"-conf", cfg.Corefile}, filepath.Join(t.TempDir(), "coredns.log"))
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	c := &CoreDNS{Addr: cfg.Addr, p: p}
	if cfg.MetricsAddr != "" {
		c.MetricsURL = "http://" + cfg.MetricsAddr + "/metrics"
	}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("harness: last lines of the coredns log (%s):\n%s", cfg.Corefile, p.LogTail(40))
		}
	})
	begin := time.Now()
	if cfg.WaitReady {
		err = waitReady(p, "http://"+cfg.ReadyAddr+"/ready", "")
	} else {
		err = waitAnswers(p, cfg.Addr)
	}
	if err != nil {
		t.Logf("harness: last lines of the coredns log:\n%s", p.LogTail(40))
		t.Fatalf("harness: %s: %v", cfg.Corefile, err)
	}
	t.Logf("harness: coredns up in %s on %s (%s)", time.Since(begin).Round(time.Millisecond), cfg.Addr, cfg.Corefile)
	return c
}

// waitAnswers polls addr over UDP until it answers a query with any rcode.
func waitAnswers(p *Process, addr string) error {
	c := &dns.Client{Timeout: 500 * time.Millisecond}
	m := new(dns.Msg)
	m.SetQuestion("harness.probe.invalid.", dns.TypeA)
	deadline := time.Now().Add(readyTimeout)
	for {
		if _, _, err := c.Exchange(m, addr); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			return fmt.Errorf("no DNS answer on %s after %s: %v", addr, readyTimeout, err)
		}
		select {
		case <-p.done:
			return fmt.Errorf("coredns exited: %v", p.err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Stop stops this CoreDNS (SIGTERM, then SIGKILL) and waits until it is
// gone; its ports are free again when Stop returns.
func (c *CoreDNS) Stop() { c.p.Stop() }

// Exited reports whether the process has exited.
func (c *CoreDNS) Exited() bool { return c.p.Exited() }

// FreePorts returns n distinct TCP ports that are free on 127.0.0.1.
func FreePorts(t TB, n int) []int {
	t.Helper()
	ports, err := freePorts(n)
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	return ports
}

// FreeDNSPort returns a port free for both UDP and TCP on ip (e.g. a
// loopback address other than 127.0.0.1).
func FreeDNSPort(t TB, ip string) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			t.Fatalf("harness: find a free port on %s: %v", ip, err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort(ip, strconv.Itoa(port)))
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatalf("harness: no port free for both UDP and TCP on %s", ip)
	return 0
}

// CoreDNSBinary returns the path of bin/coredns, failing when it is missing.
func CoreDNSBinary(t TB) string {
	t.Helper()
	return requireBinary(t, binaryDir(t), "coredns")
}

// RepoRoot returns the root directory of the meshdns repository.
func RepoRoot(t TB) string {
	t.Helper()
	dir, err := findModuleDir(rootModule)
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	return dir
}
