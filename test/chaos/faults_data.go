package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/meshdns/meshdns/test/harness"
)

// metricWait bounds the wait for a rejection to be counted.
const metricWait = 15 * time.Second

// malformedHost is a ServiceEntry host the API server and istiod take (no
// webhook checks ServiceEntries here) but DNS cannot serve: a label of 64
// characters.
var malformedHost = strings.Repeat("a", 64) + ".chaos.example"

// malformed creates a ServiceEntry whose host no DNS server can answer:
// each source must reject it, count it, and keep serving, and a valid
// Service created right after must be served.
func malformed() *fault {
	n := 0
	return &fault{
		name: "malformed", sources: []string{srcKubernetes, srcXDS}, together: true,
		doc: "a ServiceEntry with a 64-character label in its host (kubernetes: the source reads it; xds: istiod passes it on in its push), then a valid Service; recovery is the valid Service's create-to-answer time",
		inject: func(l *lab, ss []*server) injection {
			n++
			inj := injection{began: time.Now(), perServer: map[string][]string{}}
			before := map[*server]float64{}
			for _, s := range ss {
				before[s] = s.rejected()
			}
			l.api.ServiceEntry(serviceEntry(fmt.Sprintf("malformed-%d", n), fmt.Sprintf("m%d-%s", n, malformedHost), "192.0.2.66"))
			for _, s := range ss {
				d, ok := waitMetric(func() bool { return s.rejected() > before[s] })
				note := fmt.Sprintf("rejected and counted in coredns_meshdns_rejected_total %s after its creation", d.Round(time.Millisecond))
				if !ok {
					note = fmt.Sprintf("nothing counted in coredns_meshdns_rejected_total within %s", metricWait)
				}
				inj.perServer[s.source] = append(inj.perServer[s.source], note)
			}
			inj.fresh = []harness.Probe{l.createFresh()}
			inj.returned = time.Now()
			return inj
		},
	}
}

// waitMetric polls cond until it holds or metricWait passes, and says how
// long it took.
func waitMetric(cond func() bool) (time.Duration, bool) {
	begin := time.Now()
	for !cond() {
		if time.Since(begin) > metricWait {
			return time.Since(begin), false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(begin), true
}

// snapshotFault breaks the file system of the xds snapshot while a push
// must be written, then repairs it: the push must be served all the same,
// the failed write counted, and the next push written.
func snapshotFault(name, what string, breakFS, repairFS func(dir string) error) *fault {
	dir := ""
	return &fault{
		name: name, sources: []string{srcXDS},
		doc: what + " and a Service created; after the fault time repaired and another Service created; recovery is the later of the two answering, from the repair",
		snapshotDir: func(l *lab) string {
			if dir == "" {
				dir = mountTmpfs(l)
			}
			return dir
		},
		inject: func(l *lab, ss []*server) injection {
			s := ss[0]
			inj := injection{began: time.Now()}
			before := s.rejected()
			if err := breakFS(dir); err != nil {
				l.t.Fatalf("%s: %v", name, err)
			}
			inj.fresh = []harness.Probe{l.createFresh()}
			if d, ok := waitMetric(func() bool { return s.rejected() > before }); ok {
				inj.notes = append(inj.notes, fmt.Sprintf("the failed write counted %s after the push's Service was created", d.Round(time.Millisecond)))
			} else {
				inj.notes = append(inj.notes, fmt.Sprintf("no failed write counted within %s", metricWait))
			}
			l.sleep(l.prof.Fault)
			if err := repairFS(dir); err != nil {
				l.t.Fatalf("%s: %v", name, err)
			}
			inj.returned = time.Now()
			p := l.createFresh()
			inj.fresh = append(inj.fresh, p)
			host := strings.TrimSuffix(p.Name, ".")
			if d, ok := waitMetric(func() bool { data, _ := os.ReadFile(s.snapshot); return strings.Contains(string(data), host) }); ok {
				inj.notes = append(inj.notes, fmt.Sprintf("snapshot written again %s after the repair", d.Round(time.Millisecond)))
			} else {
				inj.notes = append(inj.notes, fmt.Sprintf("snapshot not written again within %s of the repair", metricWait))
			}
			return inj
		},
	}
}

// mountTmpfs mounts a 1 MiB tmpfs for the snapshot: a file system that can
// be filled or made read-only, which neither a directory's mode (root
// ignores it) nor this machine's own disk allows.
func mountTmpfs(l *lab) string {
	dir := filepath.Join(l.t.TempDir(), "state")
	if err := os.Mkdir(dir, 0o755); err != nil {
		l.t.Fatalf("%v", err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "chaos-snapshot", dir).CombinedOutput(); err != nil {
		l.t.Fatalf("mount a tmpfs for the snapshot (needs root): %v: %s", err, out)
	}
	l.t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}

const filler = "filler"

// fillDir writes into dir until its file system is full.
func fillDir(dir string) error {
	f, err := os.Create(filepath.Join(dir, filler))
	if err != nil {
		return err
	}
	defer f.Close()
	block := make([]byte, 64<<10)
	for {
		if _, err := f.Write(block); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return nil
			}
			return err
		}
	}
}

func emptyDir(dir string) error { return os.Remove(filepath.Join(dir, filler)) }

func remount(opt string) func(dir string) error {
	return func(dir string) error {
		if out, err := exec.Command("mount", "-o", "remount,"+opt, dir).CombinedOutput(); err != nil {
			return fmt.Errorf("remount %s %s: %v: %s", dir, opt, err, out)
		}
		return nil
	}
}
