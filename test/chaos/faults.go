package main

import (
	"fmt"
	"log"
	"syscall"
	"time"
)

// The sources a row runs. kubernetes and xds run Corefile.example (or
// -corefile) with its file line replaced by the source; file runs it as
// it is; xds-vm runs docs/vm/Corefile (or -vm-corefile) in a VM.
const (
	srcKubernetes = "kubernetes"
	srcXDS        = "xds"
	srcFile       = "file"
	srcVM         = "xds-vm"
)

// fault is one kind of failure, injected under load into a fresh server
// of each of its sources.
type fault struct {
	name    string
	sources []string
	// together: one injection for every source, their servers side by
	// side (a fault of the shared control plane).
	together bool
	doc      string // what is done, for the report
	// upstream: the upstream rows' load (one mesh name, many external
	// names); external failures are the fault's own, not meshdns's.
	upstream bool
	// meshdnsDown: meshdns itself is away for a while, so mesh names are
	// lost then; every other row must lose none.
	meshdnsDown bool
	// servfailExpected: no table and nothing to get one from, so
	// SERVFAIL for mesh names until the control plane returns, as
	// documented.
	servfailExpected bool
	// outside says, by source, what stops the row's recovery when that is
	// not meshdns, for the report's rows that miss a target.
	outside     map[string]string
	noSnapshot  bool                // xds without snapshot FILE
	snapshotDir func(l *lab) string // where the xds snapshot is kept, if not the server's own directory
	setup       func(l *lab)        // before the servers start
	inject      func(l *lab, ss []*server) injection
}

// faults are every fault, in the order of a full run: the API server
// relist last, since the 10k Services it adds stay.
func faults() []*fault {
	return []*fault{
		upstreamFault("upstream-healthy", upNormal),
		upstreamFault("upstream-dead", upDead),
		upstreamFault("upstream-slow", upSlow),
		upstreamFault("upstream-servfail", upServfail),
		{
			name: "flood", sources: []string{srcKubernetes, srcXDS}, meshdnsDown: true, inject: injectFlood,
			doc: fmt.Sprintf("mesh-name queries at %d× what the server answers on its CPU (measured first, %s at full speed) for the flood time, beside the normal load; then the normal load alone", floodFactor, capacityFor),
		},
		malformed(),
		{
			name: "istiod-kill", sources: []string{srcXDS}, inject: injectIstiodKill,
			doc: "istiod SIGKILLed; a Service created while it is down; istiod started again",
		},
		{
			name: "istiod-freeze", sources: []string{srcXDS}, inject: injectIstiodFreeze,
			doc: "istiod SIGSTOPped for the freeze time, a Service created meanwhile, then SIGCONT",
		},
		istiodNewTable(),
		{
			name: "meshdns-kill-snapshot", sources: []string{srcXDS}, meshdnsDown: true, inject: injectMeshdnsKill,
			doc: "meshdns and istiod SIGKILLed, a Service created, meshdns started again (it serves its snapshot), istiod started after the fault time",
		},
		{
			name: "meshdns-kill-no-snapshot", sources: []string{srcKubernetes, srcXDS}, meshdnsDown: true, servfailExpected: true, noSnapshot: true, inject: injectMeshdnsKill,
			doc: "meshdns and its control plane (the API server for kubernetes, istiod for xds) SIGKILLed, meshdns started again with no snapshot, the control plane started after the fault time: no table to serve, SERVFAIL for mesh names until then (documented)",
		},
		snapshotFault("snapshot-full", "the snapshot's file system (a 1 MiB tmpfs) filled", fillDir, emptyDir),
		snapshotFault("snapshot-readonly", "the snapshot's file system (a tmpfs) remounted read-only", remount("ro"), remount("rw")),
		{
			name: "apiserver-kill", sources: []string{srcKubernetes, srcXDS}, together: true, inject: injectAPIServerKill,
			outside: map[string]string{srcXDS: istiodWatchesAPIServer},
			doc:     "kube-apiserver SIGKILLed, started again after the fault time, a Service created once it is back",
		},
		{
			name: "apiserver-freeze", sources: []string{srcKubernetes, srcXDS}, together: true, inject: injectAPIServerFreeze,
			doc: "kube-apiserver SIGSTOPped for the freeze time, a Service created meanwhile (the request waits), then SIGCONT",
		},
		apiserverRelist(),
	}
}

func upstreamFault(name string, mode upstreamMode) *fault {
	doc := fmt.Sprintf("the upstream %s for the upstream time", map[upstreamMode]string{
		upNormal: "healthy (the baseline of the p99 ratio)", upDead: "never answers", upSlow: "answers after 1 s", upServfail: "answers SERVFAIL",
	}[mode])
	return &fault{
		name: name, sources: []string{srcFile, srcVM}, upstream: true, doc: doc,
		inject: func(l *lab, _ []*server) injection {
			inj := injection{began: time.Now(), freshExternal: true, noRecovery: mode == upNormal}
			l.up.set(mode)
			l.sleep(l.prof.UpstreamFor)
			l.up.set(upNormal)
			inj.returned = time.Now()
			return inj
		},
	}
}

func signal(what string, pid int, sig syscall.Signal) {
	if err := syscall.Kill(pid, sig); err != nil {
		log.Printf("%s: kill %d %s: %v", what, pid, sig, err)
	}
}
