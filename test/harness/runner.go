package harness

import (
	"log"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// Runner is the TB of a program rather than a test (the benchmarks, the
// demo): cleanups run at Teardown, last in first out, once; Fatalf and
// Interrupt tear down and exit.
type Runner struct {
	// Prefix names the temporary directories, e.g. "meshdns-demo-".
	Prefix string

	mu       sync.Mutex
	cleanups []func()
	dirs     []string
	failed   bool
	stopping bool // interrupted: Teardown is under way and exits
}

func (r *Runner) Helper()                 {}
func (r *Runner) Logf(f string, a ...any) { log.Printf(f, a...) }

func (r *Runner) Cleanup(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cleanups = append(r.cleanups, f)
}

func (r *Runner) Failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed
}

func (r *Runner) TempDir() string {
	dir, err := os.MkdirTemp("", r.Prefix)
	if err != nil {
		r.Fatalf("temp dir: %v", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dirs = append(r.dirs, dir)
	return dir
}

// Fatalf logs, tears down and exits 1. During an interrupt it waits for the
// interrupt to exit: errors then are the teardown's doing.
func (r *Runner) Fatalf(f string, a ...any) {
	r.mu.Lock()
	r.failed = true
	stopping := r.stopping
	r.mu.Unlock()
	if stopping {
		select {}
	}
	log.Printf(f, a...)
	r.Teardown()
	os.Exit(1)
}

// Interrupt tears down and exits 130, on a signal.
func (r *Runner) Interrupt() {
	r.mu.Lock()
	r.stopping = true
	r.mu.Unlock()
	r.Teardown()
	os.Exit(130)
}

// Teardown runs the cleanups, then removes the temporary directories. The
// lock is not held while they run: a cleanup may use the Runner.
func (r *Runner) Teardown() {
	r.mu.Lock()
	cleanups, dirs := r.cleanups, r.dirs
	r.cleanups, r.dirs = nil, nil
	r.mu.Unlock()
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	for _, d := range dirs {
		os.RemoveAll(d)
	}
}

// InterruptOnSignal calls cancel (if not nil) and Interrupt on SIGINT or
// SIGTERM.
func (r *Runner) InterruptOnSignal(cancel func()) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sigs
		log.Printf("%s: tearing down", s)
		if cancel != nil {
			cancel()
		}
		r.Interrupt()
	}()
}
