package main

import (
	"context"
	"fmt"
	"log"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshdns/meshdns/test/harness"
)

// The faults of kube-apiserver, which both sources depend on: the
// kubernetes source directly, the xds source through istiod.

// killAPIServer SIGKILLs the API server and waits until the harness has
// seen it exit.
func killAPIServer(l *lab) {
	pid := l.cp.APIServerPid()
	signal("kube-apiserver", pid, syscall.SIGKILL)
	for syscall.Kill(pid, 0) == nil {
		time.Sleep(10 * time.Millisecond)
	}
	// Reaped: the harness's wait returns at the same moment.
	time.Sleep(100 * time.Millisecond)
}

func injectAPIServerKill(l *lab, _ []*server) injection {
	inj := injection{began: time.Now()}
	killAPIServer(l)
	l.sleep(l.prof.Fault)
	l.cp.StartAPIServer()
	inj.returned = time.Now()
	inj.fresh = []harness.Probe{l.createFresh()}
	return inj
}

func injectAPIServerFreeze(l *lab, _ []*server) injection {
	inj := injection{began: time.Now()}
	pid := l.cp.APIServerPid()
	signal("kube-apiserver", pid, syscall.SIGSTOP)
	svc, p := l.freshService()
	created := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(l.ctx, l.prof.Freeze+time.Minute)
		defer cancel()
		_, err := l.cp.Client.CoreV1().Services(svc.Namespace).Create(ctx, svc, metav1.CreateOptions{})
		created <- err
	}()
	inj.fresh = []harness.Probe{p}
	l.sleep(l.prof.Freeze)
	signal("kube-apiserver", pid, syscall.SIGCONT)
	inj.returned = time.Now()
	if err := <-created; err != nil {
		l.t.Fatalf("apiserver-freeze: the Service created during the freeze: %v", err)
	}
	return inj
}

// apiserverRelist seeds the API server with RelistServices Services (once),
// then restarts it with every resource version outdated, so that each
// watcher (the kubernetes source, istiod) lists everything again. A Service
// deleted in etcd during the outage proves the relist: only a new list
// tells a watcher it is gone.
// istiodWatchesAPIServer is why the xds rows of the API server's faults
// recover late.
const istiodWatchesAPIServer = "Outside meshdns: its stream to istiod stays up throughout (source_up 1); istiod's own " +
	"watches of the API server retry on client-go's default backoff, doubling up to 30 s, and after a relist istiod " +
	"lists every Service again before it pushes. What recovers late is istiod's view of the API server, not meshdns's " +
	"of istiod (the istiod rows meet the target); the kubernetes source, which watches the API server itself, meets it too."

func apiserverRelist() *fault {
	var gone *corev1.Service
	return &fault{
		name: "apiserver-relist", sources: []string{srcKubernetes, srcXDS}, together: true,
		outside: map[string]string{srcXDS: istiodWatchesAPIServer},
		doc:     "the API server, holding the seeded Services, stopped; etcd's revision moved on and compacted and a Service deleted in etcd meanwhile; started again: every watch lists again",
		setup: func(l *lab) {
			if gone != nil {
				return
			}
			gone = l.api.Service(service("gone", "10.96.202.1"))
			seed(l, l.prof.RelistServices)
		},
		inject: func(l *lab, _ []*server) injection {
			inj := injection{began: time.Now()}
			l.cp.StopAPIServer()
			if err := l.cp.DeleteServiceInEtcd(l.ctx, gone); err != nil {
				l.t.Fatalf("%v", err)
			}
			if _, err := l.cp.OutdateResourceVersions(l.ctx); err != nil {
				l.t.Fatalf("%v", err)
			}
			l.sleep(l.prof.Fault)
			l.cp.StartAPIServer()
			inj.returned = time.Now()
			inj.fresh = []harness.Probe{l.createFresh(), {Name: hostOf("gone") + ".", Qtype: typeA, Want: "NXDOMAIN"}}
			return inj
		},
	}
}

// seed writes n Services into etcd, spread over 10 namespaces, with
// addresses in 10.104.0.0/16.
func seed(l *lab, n int) {
	begin := time.Now()
	svcs := make([]*corev1.Service, n)
	for i := range svcs {
		ns := fmt.Sprintf("seed-%d", i%10)
		if i < 10 {
			l.api.Namespace(ns)
		}
		s := service(fmt.Sprintf("s%d", i), fmt.Sprintf("10.104.%d.%d", i/250, i%250+1))
		s.Namespace = ns
		svcs[i] = s
	}
	if err := l.cp.SeedServices(l.ctx, svcs); err != nil {
		l.t.Fatalf("seed: %v", err)
	}
	log.Printf("seeded %d Services in %s", n, time.Since(begin).Round(time.Millisecond))
}
