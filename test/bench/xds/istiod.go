package main

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshdns/meshdns/test/harness"
)

// latency is one create: from the return of the Create call to the first
// push carrying the host (seen by a raw NDS client of its own), and to the
// first correct answer of bin/coredns (polled every millisecond).
type latency struct{ push, answer time.Duration }

// answerResult is the push-to-answer measurement.
type answerResult struct {
	lats     []latency
	debounce []time.Duration // istiod's "since last change" of each push during the creates
	hosts    int             // hosts in the table during the creates
}

// watcher is a raw NDS client recording when each host first appeared.
type watcher struct {
	mu    sync.Mutex
	first map[string]time.Time
	size  int
}

func (w *watcher) seen(host string) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	t, ok := w.first[host]
	return t, ok
}

// pushToAnswer runs a real istiod against a real API server with background
// Services, bin/coredns with an xds source, and creates Services one at a
// time.
func pushToAnswer(r *harness.Runner, background, creates int) answerResult {
	cp := harness.Start(r)
	istiod := harness.StartIstiod(r, cp)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const namespaces = 20
	for i := range namespaces + 1 {
		ns := fmt.Sprintf("bench-%02d", i) // bench-20 holds the measured creates
		if _, err := cp.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			r.Fatalf("create namespace %s: %v", ns, err)
		}
	}
	service := func(ns, name string) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
	}
	begin := time.Now()
	if err := harness.Parallel(background, 8, func(i int) error {
		ns := fmt.Sprintf("bench-%02d", i%namespaces)
		_, err := cp.Client.CoreV1().Services(ns).Create(ctx, service(ns, fmt.Sprintf("bg-%05d", i)), metav1.CreateOptions{})
		return err
	}); err != nil {
		r.Fatalf("create services: %v", err)
	}
	r.Logf("%d background services created in %s", background, time.Since(begin).Round(time.Millisecond))

	const nodeIP, workload, nodeNS = "10.0.0.5", "bench", "bench-20"
	w := &watcher{first: map[string]time.Time{}}
	go harness.FetchNameTable(ctx, istiod.PlaintextAddr, harness.SidecarNode(nodeIP, workload, nodeNS, nil), func(nt harness.NameTable) bool {
		now := time.Now()
		w.mu.Lock()
		defer w.mu.Unlock()
		w.size = len(nt)
		for h := range nt {
			if _, ok := w.first[h]; !ok {
				w.first[h] = now
			}
		}
		return false
	})
	c := harness.StartCoreDNS(r, fmt.Sprintf("xds %s {\n insecure\n node_ip %s\n workload %s\n namespace %s\n}",
		istiod.PlaintextAddr, nodeIP, workload, nodeNS))
	last := fmt.Sprintf("bg-%05d.bench-%02d.svc.cluster.local.", background-1, (background-1)%namespaces)
	for deadline := time.Now().Add(time.Minute); lookupA(c.Addr, last) == "NXDOMAIN"; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			r.Fatalf("bin/coredns does not answer %s after a minute", last)
		}
	}
	time.Sleep(2 * time.Second) // let istiod and the API server quiet down
	logBefore := len(istiod.Log(1 << 20))

	var res answerResult
	for i := range creates {
		ns, name := fmt.Sprintf("bench-%02d", namespaces), fmt.Sprintf("lat-%04d", i)
		svc, err := cp.Client.CoreV1().Services(ns).Create(ctx, service(ns, name), metav1.CreateOptions{})
		created := time.Now()
		if err != nil {
			r.Fatalf("create service: %v", err)
		}
		host := name + "." + ns + ".svc.cluster.local"
		ip := svc.Spec.ClusterIPs[0]
		for lookupA(c.Addr, host+".") != ip {
			if time.Since(created) > 30*time.Second {
				r.Fatalf("bin/coredns does not answer %s with %s after 30s", host, ip)
			}
			time.Sleep(time.Millisecond)
		}
		answered := time.Now()
		var pushed time.Time
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Millisecond) {
			var ok bool
			if pushed, ok = w.seen(host); ok {
				break
			}
			if time.Now().After(deadline) {
				r.Fatalf("the raw NDS client never saw %s", host)
			}
		}
		res.lats = append(res.lats, latency{push: pushed.Sub(created), answer: answered.Sub(created)})
	}
	w.mu.Lock()
	res.hosts = w.size
	w.mu.Unlock()
	// istiod logs, for each push, how long its debounce waited.
	logs := istiod.Log(1 << 20)
	if logBefore < len(logs) {
		logs = logs[logBefore:]
	}
	for _, m := range regexp.MustCompile(`Push debounce stable\[\d+\] \d+ for config [^:]*: (\S+) since last change`).FindAllStringSubmatch(logs, -1) {
		if d, err := time.ParseDuration(m[1]); err == nil {
			res.debounce = append(res.debounce, d)
		}
	}
	return res
}

// percentiles of a sample: p50, p99, max.
func percentiles(ds []time.Duration) (p50, p99, maxd time.Duration) {
	s := slices.Clone(ds)
	slices.Sort(s)
	return harness.Percentile(s, 50), harness.Percentile(s, 99), s[len(s)-1]
}
