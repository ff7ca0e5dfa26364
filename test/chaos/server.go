package main

import (
	"context"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/meshdns/meshdns/test/harness"
)

// startLimit bounds a server's start: a source that syncs 10k Services
// takes seconds, not minutes.
const startLimit = 90 * time.Second

// server is one bin/coredns under test, alone on the server CPU with
// GOMAXPROCS=1, on this machine or inside the VM. It can be killed and
// started again with the same Corefile, on the same port.
type server struct {
	source   string // the row's source column
	corefile string
	addr     string // where it serves DNS
	readyURL string
	metrics  string // its prometheus URL; "" inside the VM
	snapshot string // the xds source's snapshot file, if it keeps one
	vm       *harness.VM
	cpu      int
	t        harness.TB
	dir      string
	p        *harness.Process
	peak     float64 // the highest VmHWM of its processes, read before each ends
}

// start runs the server and waits until it is ready (waitReady), or else
// until it answers DNS at all, SERVFAIL included: a server with no table
// yet and no source to get one from is never ready.
func (s *server) start(waitReady bool) {
	s.t.Helper()
	argv := []string{"env", "GOMAXPROCS=1", "taskset", "-c", strconv.Itoa(s.cpu), harness.CoreDNSBinary(s.t), "-conf", s.corefile}
	logPath := filepath.Join(s.dir, "coredns.log")
	var err error
	if s.vm != nil {
		s.p, err = s.vm.Start("coredns", argv, logPath)
	} else {
		s.p, err = harness.StartProcess("coredns", argv, nil, logPath)
	}
	if err != nil {
		s.t.Fatalf("%s: %v", s.source, err)
	}
	p := s.p
	s.t.Cleanup(p.Stop)
	begin := time.Now()
	for {
		if waitReady && s.ready() || !waitReady && !strings.HasPrefix(s.answer(meshServices[0].host(), typeA), "error") {
			return
		}
		if p.Exited() || time.Since(begin) > startLimit {
			s.t.Fatalf("%s: not serving after %s (exited: %v)\n%s", s.source, time.Since(begin).Round(time.Millisecond), p.Exited(), p.LogTail(30))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill ends the server with SIGKILL, as the OOM killer or a crash would.
func (s *server) kill() {
	s.notePeak()
	_ = syscall.Kill(s.p.Pid(), syscall.SIGKILL)
	if !s.p.WaitExit(10 * time.Second) {
		s.t.Fatalf("%s: still running 10 s after SIGKILL", s.source)
	}
}

// stop ends the server as a service manager would.
func (s *server) stop() {
	s.notePeak()
	s.p.Stop()
}

func (s *server) pid() int { return s.p.Pid() }

// notePeak keeps the running process's VmHWM, before it is gone.
func (s *server) notePeak() {
	if hwm, err := harness.ProcStatus(s.pid(), "VmHWM"); err == nil {
		s.peak = max(s.peak, hwm)
	}
}

func (s *server) ready() bool {
	if s.vm != nil {
		code, _, _ := s.vm.HTTPGet(s.readyURL)
		return code == http.StatusOK
	}
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get(s.readyURL)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// dial makes the load's sockets: inside the VM for a server there.
func (s *server) dial() harness.DialFunc {
	if s.vm != nil {
		return s.vm.DialContext
	}
	var d net.Dialer
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	}
}

// answer asks the server once, over UDP, as harness.Answer writes it.
func (s *server) answer(name string, qtype uint16) string {
	if s.vm != nil {
		return s.vm.Answer(s.addr, name, qtype, "udp")
	}
	return harness.Answer(s.addr, name, qtype, "udp", false, false)
}

// rejected is coredns_meshdns_rejected_total, every source and reason; 0
// before the first rejection creates a series.
func (s *server) rejected() float64 {
	if s.metrics == "" {
		return 0
	}
	v, _ := harness.Metric(s.metrics, "coredns_meshdns_rejected_total")
	return v
}
