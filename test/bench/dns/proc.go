package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/meshdns/meshdns/test/harness"
)

// proc is a server process; its stop is registered with the runner.
type proc = harness.Process

// startProc runs argv with extra environment, output to logPath, and
// registers its stop with r.
func startProc(r *harness.Runner, name string, argv, env []string, logPath string) (*proc, error) {
	p, err := harness.StartProcess(name, argv, env, logPath)
	if err != nil {
		return nil, err
	}
	r.Cleanup(p.Stop)
	return p, nil
}

// pinned prefixes argv to run it on cpu with GOMAXPROCS=1.
func pinned(cpu int, argv ...string) []string {
	return append([]string{"taskset", "-c", strconv.Itoa(cpu)}, argv...)
}

// cpuTime is the user+system CPU time of pid so far (all its threads).
func cpuTime(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	// Fields after the command: state(0) ... utime(11) stime(12), in clock
	// ticks of 10 ms (USER_HZ is 100 on Linux).
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

// vmRSS is the resident set size of pid in bytes.
func vmRSS(pid int) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

// controlPlane returns the pids of this program's etcd and kube-apiserver
// children (started by the harness).
func controlPlane() []int {
	self := strconv.Itoa(os.Getpid())
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var pids []int
	for _, path := range stats {
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		s := string(data)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		comm, f := s[open+1:end], strings.Fields(s[end+1:])
		if len(f) > 1 && f[1] == self && (comm == "etcd" || comm == "kube-apiserver") {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(path)))
			pids = append(pids, pid)
		}
	}
	return pids
}

// pinHarness puts this program and the control plane on cpus.
func pinHarness(cpus ...int) error {
	for _, pid := range append(controlPlane(), os.Getpid()) {
		if err := harness.SetAffinity(pid, cpus...); err != nil {
			return err
		}
	}
	return nil
}

// freePort returns a free port on 127.0.0.1 (TCP and, checked, UDP).
func freePort() (int, error) {
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err == nil {
			u.Close()
			return port, nil
		}
	}
	return 0, errors.New("no free port on 127.0.0.1")
}

// foreignCPU is the CPU time used so far by every process outside this
// program's process tree (kernel threads left out). A process that exits
// counts in its parent's children time, so the difference over a window is
// the CPU time other work took in it.
func foreignCPU() time.Duration {
	type info struct {
		ppid  int
		ticks int64
	}
	procs := map[int]info{}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, path := range stats {
		data, err := os.ReadFile(path)
		if err != nil {
			continue // gone
		}
		s := string(data)
		// After the command: state(0) ppid(1) ... flags(6) ... utime(11)
		// stime(12) cutime(13) cstime(14).
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) < 15 {
			continue
		}
		if flags, _ := strconv.ParseUint(f[6], 10, 64); flags&0x00200000 != 0 { // PF_KTHREAD
			continue
		}
		x := info{}
		x.ppid, _ = strconv.Atoi(f[1])
		for _, v := range f[11:15] {
			n, _ := strconv.ParseInt(v, 10, 64)
			x.ticks += n
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(path)))
		procs[pid] = x
	}
	self := os.Getpid()
	var sum int64
	for pid, x := range procs {
		ours := false
		for p := pid; p > 1 && !ours; p = procs[p].ppid {
			ours = p == self
		}
		if !ours {
			sum += x.ticks
		}
	}
	return time.Duration(sum) * 10 * time.Millisecond
}

func loadavg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(data))[:3], " ")
}
