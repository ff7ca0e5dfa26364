package main

import (
	"strconv"
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
