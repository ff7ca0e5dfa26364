package main

import (
	"fmt"
	"log"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/meshdns/meshdns/test/harness"
)

// startPinned runs bin -conf conf on serverCPU with GOMAXPROCS=1, logging
// its GCs if gctrace, and returns when it started.
func startPinned(bin, conf, logPath string, gctrace bool) (*harness.Process, time.Time, error) {
	env := []string{"GOMAXPROCS=1"}
	if gctrace {
		env = append(env, "GODEBUG=gctrace=1")
	}
	begin := time.Now()
	p, err := harness.StartProcess("coredns", []string{"taskset", "-c", strconv.Itoa(serverCPU), bin, "-conf", conf}, env, logPath)
	return p, begin, err
}

// pinChildren pins every child process of this program (etcd and
// kube-apiserver, started by the harness) to cpu.
func pinChildren(cpu int) error {
	n, err := harness.PinChildren(cpu)
	if err == nil {
		log.Printf("pinned %d control-plane processes and this program to CPU %d", n, cpu)
	}
	return err
}

// procIO returns a field of /proc/PID/io (rchar: bytes the process read
// with read(2) and its kin, sockets included; the API server's lists and
// watch streams are most of a server's).
func procIO(pid int, field string) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			return strconv.ParseFloat(strings.TrimSpace(rest), 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/io", field, pid)
}

// sample is one reading of a process.
type sample struct {
	at   time.Duration // since the sampler started
	rss  float64       // VmRSS
	read float64       // rchar
}

// sampler reads VmRSS and rchar of a process every interval, to say when a
// peak happens: VmHWM says only how high.
type sampler struct {
	begin   time.Time
	stopped chan struct{}
	done    chan []sample
}

func startSampler(pid int, every time.Duration) *sampler {
	s := &sampler{begin: time.Now(), stopped: make(chan struct{}), done: make(chan []sample, 1)}
	go func() {
		var out []sample
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			rss, err1 := harness.ProcStatus(pid, "VmRSS")
			read, err2 := procIO(pid, "rchar")
			if err1 == nil && err2 == nil {
				out = append(out, sample{at: time.Since(s.begin), rss: rss, read: read})
			}
			select {
			case <-s.stopped:
				s.done <- out
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// stop ends the sampling and returns the samples.
func (s *sampler) stop() []sample {
	close(s.stopped)
	return <-s.done
}
