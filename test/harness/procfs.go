package harness

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// What the benchmark programs read of a process and of the machine, from
// /proc, and of a server's Prometheus metrics and profiles.

// ProcStatus returns a field of /proc/PID/status; fields in kB (VmRSS,
// VmHWM, RssAnon...) in bytes.
func ProcStatus(pid int, field string) (float64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), field+":"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// CPUTime is the user and system time pid has used.
func CPUTime(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]) // state is f[0], utime f[11], stime f[12]
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too short", pid)
	}
	utime, err1 := strconv.Atoi(f[11])
	stime, err2 := strconv.Atoi(f[12])
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

// SettledRSS samples VmRSS every second until it moved less than 1 MiB in
// window, or limit passed, and returns the last sample.
func SettledRSS(pid int, window, limit time.Duration) (float64, error) {
	var seen []float64
	for begin := time.Now(); ; time.Sleep(time.Second) {
		rss, err := ProcStatus(pid, "VmRSS")
		if err != nil {
			return 0, err
		}
		seen = append(seen, rss)
		last := seen[max(0, len(seen)-int(window/time.Second)):]
		if len(seen) > len(last) && slices.Max(last)-slices.Min(last) < 1<<20 || time.Since(begin) > limit {
			return rss, nil
		}
	}
}

// ResetPeakRSS sets pid's VmHWM to its VmRSS, and fails if the kernel did
// not.
func ResetPeakRSS(pid int) error {
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		return fmt.Errorf("reset the peak RSS: %w", err)
	}
	hwm, err1 := ProcStatus(pid, "VmHWM")
	rss, err2 := ProcStatus(pid, "VmRSS")
	if err := errors.Join(err1, err2); err != nil {
		return err
	}
	if hwm > rss+1<<20 {
		return fmt.Errorf("writing 5 to /proc/%d/clear_refs left VmHWM at %.1f MiB with VmRSS %.1f MiB: this kernel does not reset the peak",
			pid, hwm/(1<<20), rss/(1<<20))
	}
	return nil
}

// PinChildren pins every child process of this one (etcd and
// kube-apiserver, started by the harness) to cpu, and returns how many.
func PinChildren(cpu int) (int, error) {
	self := strconv.Itoa(os.Getpid())
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		return 0, err
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
		if err := SetAffinity(pid, cpu); err != nil {
			return n, err
		}
		n++
	}
	if n == 0 {
		return 0, errors.New("no child process found")
	}
	return n, nil
}

// LoadAvg is the machine's load averages over 1, 5 and 15 minutes.
func LoadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(data))
	return strings.Join(f[:min(3, len(f))], " ")
}

// CPUModel is the model name of the machine's CPUs.
func CPUModel() string {
	data, _ := os.ReadFile("/proc/cpuinfo")
	for line := range strings.SplitSeq(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

// Metric scrapes a Prometheus endpoint and returns the sum of every series
// of the metric name (one for a metric without labels).
func Metric(url, name string) (float64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	s := bufio.NewScanner(resp.Body)
	s.Buffer(nil, 1<<20)
	sum, found := 0.0, false
	for s.Scan() {
		line := s.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		f := strings.Fields(rest[strings.LastIndexByte(rest, '}')+1:])
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %q: %v", url, line, err)
		}
		sum, found = sum+v, true
	}
	if err := s.Err(); err != nil {
		return 0, err
	}
	if !found {
		return 0, fmt.Errorf("%s: no metric %s", url, name)
	}
	return sum, nil
}

// ProcIO returns a field of /proc/PID/io (rchar: bytes the process read
// with read(2) and its kin, sockets included).
func ProcIO(pid int, field string) (float64, error) {
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

// Sample is one reading of a process.
type Sample struct {
	At   time.Duration // since the sampler started
	RSS  float64       // VmRSS
	Read float64       // rchar
}

// Sampler reads VmRSS and rchar of a process at an interval, to say when a
// peak happens: VmHWM says only how high.
type Sampler struct {
	Begin   time.Time
	stopped chan struct{}
	done    chan []Sample
}

// StartSampler samples pid every interval until Stop.
func StartSampler(pid int, every time.Duration) *Sampler {
	s := &Sampler{Begin: time.Now(), stopped: make(chan struct{}), done: make(chan []Sample, 1)}
	go func() {
		var out []Sample
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			rss, err1 := ProcStatus(pid, "VmRSS")
			read, err2 := ProcIO(pid, "rchar")
			if err1 == nil && err2 == nil {
				out = append(out, Sample{At: time.Since(s.Begin), RSS: rss, Read: read})
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

// Stop ends the sampling and returns the samples.
func (s *Sampler) Stop() []Sample {
	close(s.stopped)
	return <-s.done
}

// Download saves what url answers (a server's pprof profile) in path, or
// reads and discards it if path is "" (asking for a GC with ?gc=1).
func Download(url, path string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	if path == "" {
		_, err := io.Copy(io.Discard, resp.Body)
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// PinControlPlane pins the harness's children (etcd, kube-apiserver) and
// this program to cpu, as PinChildren does, and logs how many it pinned.
func PinControlPlane(cpu int) error {
	n, err := PinChildren(cpu)
	if err == nil {
		log.Printf("pinned %d control-plane processes and this program to CPU %d", n, cpu)
	}
	return err
}
