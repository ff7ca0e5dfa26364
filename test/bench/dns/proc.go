package main

import (
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
