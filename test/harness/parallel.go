package harness

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// Parallel runs f(0..n-1) on workers goroutines and returns the first error,
// naming its index; after an error no new index is started.
func Parallel(n, workers int, f func(i int) error) error {
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	next := make(chan int)
	for range workers {
		wg.Go(func() {
			for i := range next {
				if err := f(i); err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("item %d: %w", i, err)
					}
					mu.Unlock()
				}
			}
		})
	}
	for i := range n {
		mu.Lock()
		failed := first != nil
		mu.Unlock()
		if failed {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}

// SetAffinity sets the CPU affinity of every thread of pid.
func SetAffinity(pid int, cpus ...int) error {
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	return eachThread(pid, "affinity", func(tid int) error { return unix.SchedSetaffinity(tid, &set) })
}

// SetNice sets the nice value of every thread of pid.
func SetNice(pid, nice int) error {
	return eachThread(pid, "nice", func(tid int) error { return unix.Setpriority(unix.PRIO_PROCESS, tid, nice) })
}

// eachThread calls set for every thread of pid. Threads created later
// inherit what set set from their creator; the thread list is read again
// until no new thread shows up.
func eachThread(pid int, what string, set func(tid int) error) error {
	done := map[int]bool{}
	for {
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			return err
		}
		found := false
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil || done[tid] {
				continue
			}
			found = true
			if err := set(tid); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("%s of thread %d of %d: %w", what, tid, pid, err)
			}
			done[tid] = true
		}
		if !found {
			return nil
		}
	}
}
