package main

import (
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/meshdns/meshdns/test/harness"
)

// startPinned runs bin -conf conf on serverCPU with GOMAXPROCS=1 and
// returns when it started.
func startPinned(bin, conf, logPath string) (*harness.Process, time.Time, error) {
	begin := time.Now()
	p, err := harness.StartProcess("coredns", []string{"taskset", "-c", strconv.Itoa(serverCPU), bin, "-conf", conf},
		[]string{"GOMAXPROCS=1"}, logPath)
	return p, begin, err
}

// pinTasks sets the CPU affinity of every thread of pid to cpu. Threads
// created later inherit it from their creator. The thread list is read
// again until no new thread shows up.
func pinTasks(pid, cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	pinned := map[int]bool{}
	for {
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			return err
		}
		found := false
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil || pinned[tid] {
				continue
			}
			found = true
			if err := unix.SchedSetaffinity(tid, &set); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("pin thread %d of %d: %w", tid, pid, err)
			}
			pinned[tid] = true
		}
		if !found {
			return nil
		}
	}
}

// pinChildren pins every child process of this program (etcd and
// kube-apiserver, started by the harness) to cpu.
func pinChildren(cpu int) error {
	self := strconv.Itoa(os.Getpid())
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		return err
	}
	n := 0
	for _, path := range stats {
		data, err := os.ReadFile(path)
		if err != nil {
			continue // gone
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		s := string(data)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) < 2 || fields[1] != self {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(path)))
		if err := pinTasks(pid, cpu); err != nil {
			return err
		}
		n++
	}
	if n == 0 {
		return errors.New("no child process found")
	}
	log.Printf("pinned %d control-plane processes and this program to CPU %d", n, cpu)
	return nil
}
