package main

import (
	"errors"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

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
		if err := harness.SetAffinity(pid, cpu); err != nil {
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
