package main

import (
	"fmt"
	"syscall"
	"time"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"

	"github.com/meshdns/meshdns/test/harness"
)

// The faults of istiod, and of meshdns itself with its control plane away.

func injectIstiodKill(l *lab, _ []*server) injection {
	inj := injection{began: time.Now()}
	signal("istiod", l.istiod.Pid(), syscall.SIGKILL)
	inj.fresh = []harness.Probe{l.createFresh()}
	l.sleep(l.prof.Fault)
	l.istiod.Restart()
	inj.returned = time.Now()
	return inj
}

func injectIstiodFreeze(l *lab, _ []*server) injection {
	inj := injection{began: time.Now()}
	pid := l.istiod.Pid()
	signal("istiod", pid, syscall.SIGSTOP)
	inj.fresh = []harness.Probe{l.createFresh()}
	l.sleep(l.prof.Freeze)
	signal("istiod", pid, syscall.SIGCONT)
	inj.returned = time.Now()
	return inj
}

// istiodNewTable stops istiod, changes the mesh (a Service created, one
// deleted, a ServiceEntry's address moved), and starts istiod again: its
// first push is a table the server has not seen.
func istiodNewTable() *fault {
	var n int
	// The ServiceEntry is named like the Service: its host's first label.
	names := func() (doomed, moved string) { return fmt.Sprintf("doomed-%d", n), fmt.Sprintf("moved-%d", n) }
	return &fault{
		name: "istiod-new-table", sources: []string{srcXDS},
		doc: "istiod stopped; a Service created, another deleted, a ServiceEntry's address changed; istiod started again",
		setup: func(l *lab) {
			n++
			doomed, moved := names()
			l.api.Service(service(doomed, fmt.Sprintf("10.96.203.%d", n)))
			l.api.ServiceEntry(serviceEntry(moved, moved+".chaos.example", "192.0.2.10"))
		},
		inject: func(l *lab, _ []*server) injection {
			doomed, moved := names()
			inj := injection{began: time.Now()}
			l.istiod.Stop()
			inj.fresh = []harness.Probe{
				l.createFresh(),
				{Name: hostOf(doomed) + ".", Qtype: typeA, Want: "NXDOMAIN"},
				{Name: moved + ".chaos.example.", Qtype: typeA, Want: "192.0.2.11"},
			}
			l.api.DeleteService(meshNamespace, doomed)
			l.api.UpdateServiceEntry(meshNamespace, moved, func(se *networkingv1.ServiceEntry) {
				se.Spec.Addresses = []string{"192.0.2.11"}
			})
			l.sleep(l.prof.Fault)
			l.istiod.Restart()
			inj.returned = time.Now()
			return inj
		},
	}
}

// injectMeshdnsKill kills the server and its control plane (SIGKILL),
// starts the server again without it, and brings the control plane back
// after the fault time. A Service is created while istiod is down, or,
// with the API server down, as soon as it is back.
func injectMeshdnsKill(l *lab, ss []*server) injection {
	s := ss[0]
	k8s := s.source == srcKubernetes
	inj := injection{began: time.Now()}
	s.kill()
	if k8s {
		killAPIServer(l)
	} else {
		signal("istiod", l.istiod.Pid(), syscall.SIGKILL)
		inj.fresh = []harness.Probe{l.createFresh()}
	}
	// Without a snapshot nothing makes it ready: it answers SERVFAIL.
	restart := time.Now()
	s.start(s.snapshot != "")
	inj.notes = append(inj.notes, fmt.Sprintf("meshdns answering again %s after its start, %s after the kill",
		time.Since(restart).Round(time.Millisecond), time.Since(inj.began).Round(time.Millisecond)))
	l.sleep(l.prof.Fault)
	if k8s {
		l.cp.StartAPIServer()
		inj.returned = time.Now()
		inj.fresh = []harness.Probe{l.createFresh()}
	} else {
		l.istiod.Restart()
		inj.returned = time.Now()
	}
	return inj
}
