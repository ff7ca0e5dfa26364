package main

import (
	"fmt"
	"log"
	"sync"
	"time"

	"github.com/meshdns/meshdns/test/harness"
)

// injection is what a fault did and when, as its inject function reports it.
type injection struct {
	began    time.Time // the fault started
	returned time.Time // the component came back (or the fault ended)
	// fresh are answers that did not exist before the fault: names created
	// (or deleted, or moved) during it. Recovery is how long after returned
	// the last of them is first answered right.
	fresh []harness.Probe
	// freshExternal: an upstream fault; recovery is the first right answer
	// for an external name never asked before, a new one at each poll so
	// that no cache answers.
	freshExternal bool
	noRecovery    bool      // nothing to recover: the healthy baseline
	cleanFrom     time.Time // if set, the normal load must be clean from then on
	// flood waits for the flood's tally; floodRate is what it asked for,
	// capacity what the server answers on its CPU.
	flood     func() blastResult
	floodRate int
	capacity  float64
	notes     []string
	perServer map[string][]string // notes for one source's row
}

// measured is one server's part of a row.
type measured struct {
	srv                 *server
	loads               *loads
	rssBefore, rssAfter float64
	cpu                 float64 // the server's CPU share over the row; -1 if its process changed
	recovery            time.Duration
	recovered           bool
	notes               []string
}

// runFault runs f with each of its sources, all at once when f.together.
func (l *lab) runFault(f *fault) []row {
	sources := l.opt.sourcesOf(f)
	if len(sources) == 0 {
		return nil
	}
	if f.together {
		return l.runRow(f, sources)
	}
	var rows []row
	for _, src := range sources {
		rows = append(rows, l.runRow(f, []string{src})...)
	}
	return rows
}

// runRow measures one injection of f against a fresh server of each
// source: idle RSS, then the load, the fault, recovery, more load, and the
// idle RSS again.
func (l *lab) runRow(f *fault, sources []string) []row {
	l.t.Helper()
	log.Printf("%s %v: starting", f.name, sources)
	if f.setup != nil {
		f.setup(l)
	}
	meshRate, extRate, probes := l.prof.MeshQPS, l.prof.ExternalQPS, meshProbes()
	if f.upstream {
		meshRate, extRate, probes = l.prof.UpstreamMeshQPS, l.prof.UpstreamExternalQPS, oneMeshProbe()
	}
	ms := make([]*measured, len(sources))
	for i, src := range sources {
		s := l.newServer(f, src)
		s.start(true)
		for _, p := range probes {
			if _, ok := pollAnswer(s, p.Qtype, fixedName(p.Name), p.Want, startLimit); !ok {
				l.t.Fatalf("%s: before the fault, %s does not answer %s %q within %s", f.name, s.source, p.Name, p.Want, startLimit)
			}
		}
		ms[i] = &measured{srv: s}
	}
	each(ms, func(m *measured) { m.rssBefore = l.settledRSS(m.srv) })
	cpuBefore := map[*measured]time.Duration{}
	pids := map[*measured]int{}
	for _, m := range ms {
		if err := harness.ResetPeakRSS(m.srv.pid()); err != nil {
			l.t.Logf("%s: %v; the peak is the process's since its start", m.srv.source, err)
		}
		pids[m], cpuBefore[m] = m.srv.pid(), cpuTime(m.srv.pid())
	}
	planned := l.prof.Before + l.prof.After + max(l.prof.Fault, l.prof.Freeze, l.prof.UpstreamFor, l.prof.FloodFor)
	for i, m := range ms {
		var err error
		m.loads, err = startLoads(m.srv, fmt.Sprintf("%s-%d", f.name, i), probes, meshRate, extRate, planned)
		if err != nil {
			l.t.Fatalf("%s: load: %v", f.name, err)
		}
	}
	l.sleep(l.prof.Before)
	inj := f.inject(l, servers(ms))
	log.Printf("%s %v: fault injected at +%s, component back at +%s", f.name, sources,
		inj.began.Sub(ms[0].loads.mesh.Start).Round(time.Millisecond), inj.returned.Sub(ms[0].loads.mesh.Start).Round(time.Millisecond))
	if !inj.noRecovery {
		each(ms, func(m *measured) { m.recovery, m.recovered, m.notes = l.recover(m.srv, inj) })
	}
	l.sleep(l.prof.After)
	each(ms, func(m *measured) { m.loads.stop() })
	for _, m := range ms {
		m.srv.notePeak()
		m.cpu = -1
		if m.srv.pid() == pids[m] {
			m.cpu = (cpuTime(pids[m]) - cpuBefore[m]).Seconds() / m.loads.stopped.Sub(m.loads.mesh.Start).Seconds()
		}
	}
	each(ms, func(m *measured) { m.rssAfter = l.settledRSS(m.srv) })
	var rows []row
	for _, m := range ms {
		m.srv.stop()
		rows = append(rows, newRow(f, m, inj))
		log.Printf("%s %s: %s", f.name, m.srv.source, rows[len(rows)-1].summary())
	}
	return rows
}

func servers(ms []*measured) []*server {
	ss := make([]*server, len(ms))
	for i, m := range ms {
		ss[i] = m.srv
	}
	return ss
}

// each runs f for every m at once: the servers of a row are measured side
// by side.
func each(ms []*measured, f func(*measured)) {
	var wg sync.WaitGroup
	for _, m := range ms {
		wg.Go(func() { f(m) })
	}
	wg.Wait()
}

// settledRSS is the server's RSS once it moved less than 1 MiB in the
// profile's window, at rest between loads.
func (l *lab) settledRSS(s *server) float64 {
	rss, err := harness.SettledRSS(s.pid(), l.prof.SettleWindow, l.prof.SettleLimit)
	if err != nil {
		l.t.Fatalf("%s: RSS: %v", s.source, err)
	}
	return rss
}

func cpuTime(pid int) time.Duration {
	d, _ := harness.CPUTime(pid)
	return d
}
