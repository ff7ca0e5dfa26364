// Command fleet benchmarks meshdns's kubernetes source serving a VM fleet
// against a real kube-apiserver (test/harness): ServiceEntries that select
// WorkloadEntries, and WorkloadEntries created, moved, deleted and (with
// -health) marked healthy or not as fast as the API server takes them,
// while a client asks every ServiceEntry host over UDP at a fixed rate and
// judges every answer.
//
//  1. -serviceentries ServiceEntries in one namespace, svc-<i> with the one
//     host svc-<i>.fleet.example, resolution STATIC, workloadSelector
//     app=app-<i>, one port and no addresses, so the host answers the
//     addresses of the WorkloadEntries it selects. Then bin/coredns starts
//     and syncs.
//  2. create: -workloadentries WorkloadEntries, we-<j> with labels
//     app=app-<j % serviceentries> and version=v1 and the address
//     10.128.0.0 + j (unique, never reused), created by -writers concurrent
//     clients in the order of j.
//  3. steady: the load alone for -steady, nothing changing: what a query
//     costs meshdns, subtracted from the CPU per write.
//  4. churn: -churn operations on distinct WorkloadEntries, in turn a move
//     to another host (its app label), a delete, and with -health a health
//     change.
//
// With -health, a WorkloadEntry annotated proxy.istio.io/health-checks-
// enabled: "true" is served only while its status has the condition
// Healthy "True"; one without the annotation always is. Of the created
// WorkloadEntries, some are annotated and then given Healthy True or False
// by a status write, or nothing (healthOf).
//
// A phase with writes ends when every host answers its final set, the
// addresses the phase's writes left it (converge). What it reports:
//
//   - last write → every host final: from the last operation of the phase
//     returning to the arrival of the first answer with its final set of the
//     touched host that was last to give one. The poll asks a touched host
//     from the moment its last operation returned, so this is exact to the
//     poll's round over the hosts not final yet (at most -poll-qps a
//     second); hosts the phase does not touch are asked when no touched
//     host waits, and every host once more at the end.
//   - per host: its last operation returning → its first answer with its
//     final set, p50, p99 and max over the hosts the phase touched.
//   - meshdns's CPU (user+system) from the first write until every host
//     answered its final set twice, per API write (each a watch event), and
//     net of queries: less the steady phase's CPU per query times the
//     phase's queries.
//   - every answer, of the load and of the poll, judged by model.judge:
//     current, lagging (with how far behind), wrong; SERVFAIL; timeouts.
//
// A ServiceEntry host without an address is left to upstream DNS by
// meshdns: forward sends it to a DNS server in this program that answers
// NXDOMAIN for every name, which is judged as an answer with no address.
// meshdns runs pinned to CPU 0 with GOMAXPROCS=1; this program, etcd and
// kube-apiserver run on CPU 1, as in test/bench/kubernetes. The result is
// Markdown on stdout, the progress on stderr; the exit status is 1 if any
// answer was wrong or SERVFAIL, or a phase did not converge.
//
// Run it from test/ (after make bin/coredns test-binaries):
//
//	go run ./bench/fleet [-serviceentries N] [-workloadentries N] [-churn N] [-health] [-qps N] [-bin PATH]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	apinetworking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	"github.com/meshdns/meshdns/test/harness"
)

var (
	nSEs      = flag.Int("serviceentries", 2000, "ServiceEntries (hosts), each selecting app=app-<i>")
	nWEs      = flag.Int("workloadentries", 20000, "WorkloadEntries created in the create phase")
	nChurn    = flag.Int("churn", 1000, "operations of the churn phase (moves, deletes, with -health health changes); 0 skips it")
	health    = flag.Bool("health", false, "also health: some WorkloadEntries annotated "+healthAnnotation+", served only while Healthy is True")
	qps       = flag.Int("qps", 500, "queries a second of the fixed-rate load")
	pollQPS   = flag.Int("poll-qps", 1000, "at most this many queries a second of the convergence poll")
	writers   = flag.Int("writers", 16, "concurrent API writers")
	steadyFor = flag.Duration("steady", 10*time.Second, "how long the load runs alone after the creates (measures what queries cost)")
	qTimeout  = flag.Duration("query-timeout", 2*time.Second, "a load query not answered in this time counts as a timeout")
	convLimit = flag.Duration("converge-timeout", 30*time.Minute, "how long after its last write a phase may take until every host answers its final set")
	binPath   = flag.String("bin", "../bin/coredns", "the coredns binary (relative to the working directory, test/)")
	maxLoad   = flag.Float64("maxload", 1.0, "before starting meshdns, wait (up to 10 min) until the 1-minute load average is below this")
	seed      = flag.Uint64("seed", 1, "seed of the health classes and of the churn's choices")
)

const (
	serverCPU = 0 // meshdns
	clientCPU = 1 // this program, etcd, kube-apiserver

	namespace        = "fleet"
	domain           = "fleet.example"
	healthAnnotation = "proxy.istio.io/health-checks-enabled"
	callTimeout      = 30 * time.Second
	syncLimit        = 5 * time.Minute
)

func hostName(i int) string { return fmt.Sprintf("svc-%d.%s.", i, domain) }
func appLabel(i int) string { return fmt.Sprintf("app-%d", i) }
func weName(j int) string   { return fmt.Sprintf("we-%d", j) }

// weHealth is a WorkloadEntry's health annotation and Healthy condition
// ("", "True" or "False"), as this program last wrote them.
type weHealth struct {
	annotated bool
	healthy   string
}

func (h weHealth) servable() bool { return !h.annotated || h.healthy == "True" }

type bench struct {
	r       *harness.Runner
	ctx     context.Context
	cp      *harness.ControlPlane
	istio   istioclient.Interface
	m       *model
	health  []weHealth // by WorkloadEntry; written by the one goroutine writing that WorkloadEntry
	p       *harness.Process
	addr    string // meshdns's DNS address
	metrics string // its /metrics URL
	up      *nxdomain
	writes  atomic.Int64 // successful API writes of WorkloadEntries
	retries atomic.Int64
}

// op is one operation of a phase: the writes of one WorkloadEntry, which
// change the sets of hosts only.
type op struct {
	hosts []int
	do    func() error
}

// phase is the outcome of one phase.
type phase struct {
	name      string
	writes    int
	writeTime time.Duration   // first write issued → last operation returned
	converged bool            // every host answered its final set in time
	converge  time.Duration   // last operation returned → the last host's first final answer
	perHost   []time.Duration // by host the phase touched: its last operation returned → its first final answer
	cpu       time.Duration   // meshdns's CPU from the first write to the end of converge
	updates   float64         // meshdns's table updates (entries changed) in the phase
	load      string          // load average at the start
	st        *stats
}

func main() {
	flag.Parse()
	log.SetFlags(log.Ltime)
	r := &harness.Runner{Prefix: "meshdns-bench-fleet-"}
	defer r.Teardown()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r.InterruptOnSignal(cancel)

	switch {
	case *nSEs < 1 || *nWEs < 1 || *nChurn < 0 || *qps < 1 || *pollQPS < 1 || *writers < 1:
		r.Fatalf("-serviceentries, -workloadentries, -qps, -poll-qps and -writers must be positive, -churn not negative")
	case *nWEs >= 1<<23:
		r.Fatalf("-workloadentries: at most %d (addresses 10.128.0.0/9)", 1<<23-1)
	case *nChurn > *nWEs:
		r.Fatalf("-churn: at most -workloadentries (each churn operation is on a different WorkloadEntry)")
	case *nChurn > 0 && *nSEs < 2:
		r.Fatalf("-churn needs at least 2 ServiceEntries to move WorkloadEntries between")
	}
	if runtime.NumCPU() < 2 {
		r.Fatalf("need 2 CPUs, have %d", runtime.NumCPU())
	}
	if _, err := exec.LookPath("taskset"); err != nil {
		r.Fatalf("taskset: %v", err)
	}
	// A private copy, so a rebuild of bin/coredns during the run changes nothing.
	binInfo, err := os.Stat(*binPath)
	if err != nil {
		r.Fatalf("coredns binary: %v (make bin/coredns)", err)
	}
	bin := filepath.Join(r.TempDir(), "coredns")
	if err := harness.CopyBinary(*binPath, bin); err != nil {
		r.Fatalf("copy %s: %v", *binPath, err)
	}
	start, startLoad := time.Now(), harness.LoadAvg()
	log.Printf("load average at start: %s", startLoad)

	b := &bench{r: r, ctx: ctx, m: newModel(*nSEs, *nWEs), health: make([]weHealth, *nWEs)}
	log.Print("starting etcd and kube-apiserver...")
	b.cp = harness.Start(r)
	// The harness's clients are limited to 500 QPS; the writers must never
	// wait for the client, only for the API server.
	cfg := rest.CopyConfig(b.cp.RESTConfig)
	cfg.QPS, cfg.Burst = 1e5, 1e5
	if b.istio, err = istioclient.NewForConfig(cfg); err != nil {
		r.Fatalf("istio client: %v", err)
	}
	if err := harness.PinControlPlane(clientCPU); err != nil {
		r.Fatalf("pin the control plane: %v", err)
	}
	if err := harness.SetAffinity(os.Getpid(), clientCPU); err != nil {
		r.Fatalf("pin this program: %v", err)
	}
	b.createServiceEntries()

	upAddr := fmt.Sprintf("127.0.0.1:%d", harness.FreeDNSPort(r, "127.0.0.1"))
	b.up = &nxdomain{}
	harness.ServeDNS(r, upAddr, b.up)

	syncLoad := b.waitQuiet()
	rssSync := b.startMeshDNS(bin, upAddr)

	var phases []phase
	finish := func() {
		fmt.Print(b.report(phases))
		fmt.Printf("- command: `%s` (effective: -serviceentries %d -workloadentries %d -churn %d -health=%v -qps %d -poll-qps %d -writers %d -steady %s -converge-timeout %s -bin %s -seed %d)\n",
			strings.Join(append([]string{"cd test && go run ./bench/fleet"}, os.Args[1:]...), " "),
			*nSEs, *nWEs, *nChurn, *health, *qps, *pollQPS, *writers, *steadyFor, *convLimit, *binPath, *seed)
		fmt.Printf("- date: %s; %s built %s (a copy of it runs); %d × %s; runtime %s\n", start.UTC().Format(time.RFC3339), *binPath,
			binInfo.ModTime().UTC().Format(time.RFC3339), runtime.NumCPU(), harness.CPUModel(), time.Since(start).Round(time.Second))
		fmt.Printf("- load average at start: %s; before meshdns started (after waiting up to 10 min for < %.2f): %s; at the start of each phase: %s\n",
			startLoad, *maxLoad, syncLoad, phaseLoads(phases))
		fmt.Printf("- meshdns alone on CPU %d with GOMAXPROCS=1; this program (writers, load, poll, the NXDOMAIN upstream), etcd and kube-apiserver on CPU %d\n", serverCPU, clientCPU)
		rejected, _ := harness.Metric(b.metrics, "coredns_meshdns_rejected_total")
		fmt.Printf("- meshdns counted %.0f rejections; the upstream got %d queries; %d API writes were retried\n",
			rejected, b.up.queries.Load(), b.retries.Load())
		fmt.Print(definitions)
	}
	// fatal reports the phases so far, the failing one included, and exits.
	fatal := func(ph phase, f string, a ...any) {
		phases = append(phases, ph)
		finish()
		b.fail(f, a...)
	}

	ph, err := b.run("create", b.createOps())
	if err != nil {
		fatal(ph, "create: %v", err)
	}
	phases = append(phases, ph)
	rssCreate, _ := harness.ProcStatus(b.p.Pid(), "VmRSS")
	peakCreate, _ := harness.ProcStatus(b.p.Pid(), "VmHWM")
	phases = append(phases, b.steady())
	if *nChurn > 0 {
		ph, err := b.run("churn", b.churnOps())
		if err != nil {
			fatal(ph, "churn: %v", err)
		}
		phases = append(phases, ph)
	}
	peak, err1 := harness.ProcStatus(b.p.Pid(), "VmHWM")
	final, err2 := harness.ProcStatus(b.p.Pid(), "VmRSS")
	if err := errors.Join(err1, err2); err != nil {
		r.Fatalf("meshdns memory: %v", err)
	}
	finish()
	fmt.Printf("\n| meshdns RSS after sync | after the creates | peak (VmHWM) after the creates | peak at the end | RSS at the end |\n| ---: | ---: | ---: | ---: | ---: |\n")
	fmt.Printf("| %s | %s | %s | %s | %s |\n", harness.MiB(rssSync), harness.MiB(rssCreate), harness.MiB(peakCreate), harness.MiB(peak), harness.MiB(final))

	bad := 0
	for _, p := range phases {
		bad += p.st.wrong + p.st.servfail
	}
	if bad > 0 {
		log.Printf("FAIL: %d wrong or SERVFAIL answers", bad)
		r.Teardown()
		os.Exit(1)
	}
}

// createServiceEntries creates the namespace and the ServiceEntries, before
// meshdns starts: its initial list has them all.
func (b *bench) createServiceEntries() {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}
	if _, err := b.cp.Client.CoreV1().Namespaces().Create(b.ctx, ns, metav1.CreateOptions{}); err != nil {
		b.r.Fatalf("create namespace %s: %v", namespace, err)
	}
	begin := time.Now()
	err := harness.Parallel(*nSEs, *writers, func(i int) error {
		se := &networkingv1.ServiceEntry{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: fmt.Sprintf("svc-%d", i)},
			Spec: apinetworking.ServiceEntry{
				Hosts:            []string{strings.TrimSuffix(hostName(i), ".")},
				Ports:            []*apinetworking.ServicePort{{Number: 80, Name: "http", Protocol: "HTTP"}},
				Location:         apinetworking.ServiceEntry_MESH_INTERNAL,
				Resolution:       apinetworking.ServiceEntry_STATIC,
				WorkloadSelector: &apinetworking.WorkloadSelector{Labels: map[string]string{"app": appLabel(i)}},
			},
		}
		return b.retry("create ServiceEntry "+se.Name, func(ctx context.Context) error {
			_, err := b.istio.NetworkingV1().ServiceEntries(namespace).Create(ctx, se, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				return nil // an earlier attempt went through
			}
			return err
		})
	})
	if err != nil {
		b.r.Fatalf("%v", err)
	}
	d := time.Since(begin)
	log.Printf("created %d ServiceEntries in %s (%.0f/s)", *nSEs, d.Round(time.Millisecond), float64(*nSEs)/d.Seconds())
}

// startMeshDNS starts bin/coredns with meshdns's kubernetes source on CPU 0,
// waits until it has synced, and returns its RSS then.
func (b *bench) startMeshDNS(bin, upstream string) float64 {
	ports := harness.FreePorts(b.r, 2)
	b.addr = fmt.Sprintf("127.0.0.1:%d", harness.FreeDNSPort(b.r, "127.0.0.1"))
	ready := fmt.Sprintf("127.0.0.1:%d", ports[0])
	b.metrics = fmt.Sprintf("http://127.0.0.1:%d/metrics", ports[1])
	// As Corefile.example: unknown names under the cluster domain are
	// NXDOMAIN here, every other name meshdns does not serve (a host
	// without addresses) goes on to forward.
	corefile := fmt.Sprintf(`.:%s {
	bind 127.0.0.1
	ready %s
	prometheus 127.0.0.1:%d
	meshdns {
		kubernetes %s {
			startup_timeout 1m
		}
		authoritative cluster.local
		fallthrough
	}
	forward . %s
}
`, strings.TrimPrefix(b.addr, "127.0.0.1:"), ready, ports[1], b.cp.Kubeconfig, upstream)
	dir := b.r.TempDir()
	conf := filepath.Join(dir, "Corefile")
	if err := os.WriteFile(conf, []byte(corefile), 0o644); err != nil {
		b.r.Fatalf("%v", err)
	}
	begin := time.Now()
	p, err := startPinned(bin, conf, filepath.Join(dir, "coredns.log"))
	if err != nil {
		b.r.Fatalf("%v", err)
	}
	b.p = p
	b.r.Cleanup(p.Stop)
	if err := waitReady(p, "http://"+ready+"/ready", syncLimit); err != nil {
		b.fail("sync: %v", err)
	}
	rss, err := harness.ProcStatus(p.Pid(), "VmRSS")
	if err != nil {
		b.fail("%v", err)
	}
	log.Printf("meshdns synced %d ServiceEntries in %s (ready), RSS %s", *nSEs, time.Since(begin).Round(time.Millisecond), harness.MiB(rss))
	return rss
}

// fail stops the run with the end of meshdns's log.
func (b *bench) fail(f string, a ...any) {
	if b.ctx.Err() != nil {
		b.r.Fatalf("interrupted") // blocks until the interrupt exits
	}
	if b.p != nil {
		b.r.Logf("last lines of the coredns log:\n%s", b.p.LogTail(30))
	}
	b.r.Fatalf(f, a...)
}

func (b *bench) exited() error {
	if b.p.Exited() {
		return fmt.Errorf("coredns exited: %v", b.p.Err())
	}
	return nil
}

// run runs one phase: ops by -writers goroutines (each op issues and
// records its own writes in the model) under the fixed-rate load, while
// converge polls each host whose ops have all returned until every host
// answers its final set. The phase is returned with what was measured also
// when it fails.
func (b *bench) run(name string, ops []op) (phase, error) {
	ph := phase{name: name, load: harness.LoadAvg(), st: &stats{}}
	log.Printf("%s: %d operations by %d writers, load %d queries/s (load average %s)", name, len(ops), *writers, *qps, ph.load)
	touches := make([][]int, len(ops))
	touched := make([]bool, *nSEs)
	for i, o := range ops {
		touches[i] = o.hosts
		for _, h := range o.hosts {
			touched[h] = true
		}
	}
	ready := b.m.beginPhase(touches)
	stopLoad, err := startLoad(b.m, ph.st, *nSEs, b.addr, *qps, *qTimeout)
	if err != nil {
		return ph, fmt.Errorf("load: %w", err)
	}
	cpu0, err := harness.CPUTime(b.p.Pid())
	if err != nil {
		return ph, err
	}
	updates0, _ := harness.Metric(b.metrics, "coredns_meshdns_updates_total")
	w0 := b.writes.Load()
	var returned atomic.Int64

	ctx, cancel := context.WithCancel(b.ctx)
	defer cancel()
	type result struct {
		okAt []time.Time
		err  error
	}
	conv := make(chan result, 1)
	go func() {
		okAt, err := converge(ctx, b.m, ph.st, b.addr, *nSEs, ready, *pollQPS, *convLimit, b.exited)
		conv <- result{okAt, err}
	}()
	logDone := make(chan struct{})
	go b.progress(name, len(ops), &returned, w0, cpu0, updates0, ph.st, logDone)
	defer close(logDone)

	begin := time.Now()
	err = harness.Parallel(len(ops), *writers, func(i int) error {
		if err := ops[i].do(); err != nil {
			return err
		}
		b.m.opDone(ops[i].hosts)
		returned.Add(1)
		return nil
	})
	var lastDone time.Time
	for h := range *nSEs {
		if t := b.m.settledAt(h); t.After(lastDone) {
			lastDone = t
		}
	}
	ph.writes, ph.writeTime = int(b.writes.Load()-w0), lastDone.Sub(begin)
	if err != nil {
		cancel()
		<-conv
		stopLoad()
		return ph, err
	}
	log.Printf("%s: %d writes in %s: %.0f/s; polling until every host answers its final set", name, ph.writes,
		ph.writeTime.Round(time.Millisecond), float64(ph.writes)/ph.writeTime.Seconds())

	res := <-conv
	cpu1, cerr := harness.CPUTime(b.p.Pid())
	updates1, _ := harness.Metric(b.metrics, "coredns_meshdns_updates_total")
	stopLoad()
	ph.cpu, ph.updates = cpu1-cpu0, updates1-updates0
	var last time.Time
	for h, at := range res.okAt {
		if touched[h] && at.After(last) {
			last = at
		}
		if touched[h] && !at.IsZero() {
			ph.perHost = append(ph.perHost, at.Sub(b.m.settledAt(h)))
		}
	}
	slices.Sort(ph.perHost)
	if err := errors.Join(res.err, cerr); err != nil {
		return ph, err
	}
	ph.converged, ph.converge = true, last.Sub(lastDone)
	s := ph.st
	log.Printf("%s: every host answers its final set %s after the last write; meshdns CPU %s; answers: %d load, %d poll; wrong %d, SERVFAIL %d, timeouts %d",
		name, ph.converge.Round(time.Millisecond), ph.cpu, s.answered, s.polled, s.wrong, s.servfail, s.timeouts)
	return ph, nil
}

// progress logs, every 10 s until done is closed, the operations returned,
// the hosts answering their final set, meshdns's CPU and table updates, and
// the verdicts of the answers since the last line.
func (b *bench) progress(name string, ops int, returned *atomic.Int64, w0 int64, cpu0 time.Duration, updates0 float64, st *stats, done <-chan struct{}) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	begin := time.Now()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			cpu, _ := harness.CPUTime(b.p.Pid())
			updates, _ := harness.Metric(b.metrics, "coredns_meshdns_updates_total")
			var final int
			st.count(func(s *stats) { final = s.hostsFinal })
			log.Printf("%s +%s: %d of %d operations returned (%d writes), %d of %d hosts final; meshdns CPU %s, %.0f table updates; answers: %s",
				name, time.Since(begin).Round(time.Second), returned.Load(), ops, b.writes.Load()-w0, final, *nSEs,
				(cpu - cpu0).Round(10*time.Millisecond), updates-updates0, st.window())
		}
	}
}

// steady runs the load alone, nothing changing, and returns that phase;
// its CPU per query is what report subtracts from the other phases.
func (b *bench) steady() phase {
	ph := phase{name: "steady (no writes)", load: harness.LoadAvg(), st: &stats{}, converged: true}
	log.Printf("steady: load alone for %s", *steadyFor)
	cpu0, err := harness.CPUTime(b.p.Pid())
	if err != nil {
		b.fail("%v", err)
	}
	stop, err := startLoad(b.m, ph.st, *nSEs, b.addr, *qps, *qTimeout)
	if err != nil {
		b.fail("load: %v", err)
	}
	select {
	case <-b.ctx.Done():
	case <-time.After(*steadyFor):
	}
	stop()
	cpu1, err := harness.CPUTime(b.p.Pid())
	if err != nil {
		b.fail("%v", err)
	}
	ph.cpu = cpu1 - cpu0
	log.Printf("steady: %d answers, meshdns CPU %s", ph.st.answered, ph.cpu)
	return ph
}

// healthOf says how WorkloadEntry j is created with -health: 70% without
// the annotation, 15% annotated and then marked Healthy True, 8% annotated
// and marked Healthy False, 7% annotated with no condition. Drawn from the
// seed, not from j's host, so every kind lands on every kind of host.
func healthOf(j int) (annotated bool, condition string) {
	if !*health {
		return false, ""
	}
	switch r := rand.New(rand.NewPCG(*seed, uint64(j))).IntN(100); {
	case r < 70:
		return false, ""
	case r < 85:
		return true, "True"
	case r < 93:
		return true, "False"
	default:
		return true, ""
	}
}

// createOps are the create phase's operations: WorkloadEntry j in host
// j % -serviceentries.
func (b *bench) createOps() []op {
	ops := make([]op, *nWEs)
	for j := range ops {
		ops[j] = op{hosts: []int{j % *nSEs}, do: func() error { return b.createWE(j) }}
	}
	return ops
}

// createWE creates WorkloadEntry j and, if it is to have a Healthy
// condition, writes its status then: the API server ignores the status of
// a create (status is a subresource).
func (b *bench) createWE(j int) error {
	host := j % *nSEs
	annotated, condition := healthOf(j)
	h := weHealth{annotated: annotated}
	we := &networkingv1.WorkloadEntry{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: weName(j)},
		Spec: apinetworking.WorkloadEntry{
			Address: weAddr(j).String(),
			Labels:  map[string]string{"app": appLabel(host), "version": "v1"},
		},
	}
	if annotated {
		we.Annotations = map[string]string{healthAnnotation: "true"}
	}
	b.m.issue(j, weState{host: host, servable: h.servable()})
	err := b.retry("create WorkloadEntry "+we.Name, func(ctx context.Context) error {
		_, err := b.istio.NetworkingV1().WorkloadEntries(namespace).Create(ctx, we, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return nil // an earlier attempt went through
		}
		return err
	})
	if err != nil {
		return err
	}
	b.m.done(j)
	b.writes.Add(1)
	b.health[j] = h
	if condition != "" {
		h.healthy = condition
		return b.writeHealth(j, host, h)
	}
	return nil
}

// churnOps picks -churn distinct WorkloadEntries, one operation each: in
// turn a move to another host, a delete, and with -health a health change.
func (b *bench) churnOps() []op {
	rng := rand.New(rand.NewPCG(*seed, math.MaxUint64))
	perm := rng.Perm(*nWEs)
	ops := make([]op, *nChurn)
	for e := range ops {
		j := perm[e]
		from := b.m.current(j).host
		kinds := 2
		if *health {
			kinds = 3
		}
		switch e % kinds {
		case 0:
			to := (from + 1 + rng.IntN(*nSEs-1)) % *nSEs
			ops[e] = op{hosts: []int{from, to}, do: func() error { return b.move(j, to) }}
		case 1:
			ops[e] = op{hosts: []int{from}, do: func() error { return b.delete(j) }}
		case 2:
			ops[e] = op{hosts: []int{from}, do: func() error { return b.changeHealth(j) }}
		}
	}
	return ops
}

// move moves WorkloadEntry j to host to, by its app label.
func (b *bench) move(j, to int) error {
	b.m.issue(j, weState{host: to, servable: b.m.current(j).servable})
	if err := b.patch(j, fmt.Appendf(nil, `{"spec":{"labels":{"app":%q}}}`, appLabel(to))); err != nil {
		return err
	}
	b.m.done(j)
	b.writes.Add(1)
	return nil
}

func (b *bench) delete(j int) error {
	b.m.issue(j, absent)
	err := b.retry("delete WorkloadEntry "+weName(j), func(ctx context.Context) error {
		err := b.istio.NetworkingV1().WorkloadEntries(namespace).Delete(ctx, weName(j), metav1.DeleteOptions{})
		if apierrors.IsNotFound(err) {
			return nil // an earlier attempt went through
		}
		return err
	})
	if err != nil {
		return err
	}
	b.m.done(j)
	b.writes.Add(1)
	return nil
}

// changeHealth flips the Healthy condition of an annotated WorkloadEntry
// (True becomes False; False or none becomes True), or annotates one that
// is not, which then has no condition and is no longer served.
func (b *bench) changeHealth(j int) error {
	h, host := b.health[j], b.m.current(j).host
	if h.annotated {
		h.healthy = "True"
		if b.health[j].healthy == "True" {
			h.healthy = "False"
		}
		return b.writeHealth(j, host, h)
	}
	h.annotated = true
	b.m.issue(j, weState{host: host, servable: h.servable()})
	if err := b.patch(j, fmt.Appendf(nil, `{"metadata":{"annotations":{%q:"true"}}}`, healthAnnotation)); err != nil {
		return err
	}
	b.m.done(j)
	b.writes.Add(1)
	b.health[j] = h
	return nil
}

// writeHealth writes h.healthy as the Healthy condition of WorkloadEntry j,
// in host, as Istio's health checker does.
func (b *bench) writeHealth(j, host int, h weHealth) error {
	b.m.issue(j, weState{host: host, servable: h.servable()})
	now := time.Now().UTC().Format(time.RFC3339)
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": []map[string]string{
		{"type": "Healthy", "status": h.healthy, "lastProbeTime": now, "lastTransitionTime": now},
	}}})
	if err != nil {
		return err
	}
	if err := b.patch(j, patch, "status"); err != nil {
		return err
	}
	b.m.done(j)
	b.writes.Add(1)
	b.health[j] = h
	return nil
}

// patch merge-patches WorkloadEntry j (or its subresource).
func (b *bench) patch(j int, data []byte, subresource ...string) error {
	return b.retry("patch WorkloadEntry "+weName(j)+" "+string(data), func(ctx context.Context) error {
		_, err := b.istio.NetworkingV1().WorkloadEntries(namespace).Patch(ctx, weName(j), types.MergePatchType, data, metav1.PatchOptions{}, subresource...)
		return err
	})
}

// retry calls f with a deadline of callTimeout until it succeeds, up to 6
// times with growing pauses: a busy API server may time a request out or
// ask to retry. Every write here is idempotent (creates and deletes accept
// the "already" errors), so a retry after a lost answer is safe, and the
// model's interval from the first issue to the last return covers the
// instant the API server applied it.
func (b *bench) retry(what string, f func(ctx context.Context) error) error {
	var err error
	for attempt := range 6 {
		ctx, cancel := context.WithTimeout(b.ctx, callTimeout)
		err = f(ctx)
		cancel()
		if err == nil || b.ctx.Err() != nil {
			return err
		}
		if n := b.retries.Add(1); n <= 20 {
			log.Printf("%s: %v; retrying", what, err)
		}
		time.Sleep(time.Duration(100<<attempt) * time.Millisecond)
	}
	return fmt.Errorf("%s: %w (6 attempts)", what, err)
}

// waitQuiet waits until the 1-minute load average is below -maxload, for
// at most 10 minutes, and returns the load average.
func (b *bench) waitQuiet() string {
	deadline := time.Now().Add(10 * time.Minute)
	for {
		load := harness.LoadAvg()
		l, err := strconv.ParseFloat(strings.Fields(load + " x")[0], 64)
		if err != nil || l < *maxLoad {
			return load
		}
		if time.Now().After(deadline) {
			log.Printf("load average %s still not below %.2f after 10 min; going on", load, *maxLoad)
			return load
		}
		log.Printf("load average %s, waiting until below %.2f", load, *maxLoad)
		select {
		case <-b.ctx.Done():
			b.r.Fatalf("interrupted")
		case <-time.After(30 * time.Second):
		}
	}
}

const definitions = `- last write → every host final: from the last operation of the phase returning to the first answer with its final set (the addresses the phase's writes left it) of the touched host last to give one (every host, touched or not, is asked once more at the end and must still answer its final set); per host: from the return of the last operation touching it to its first answer with its final set, over the hosts the phase touched. A touched host is polled from the return of its last operation, one query at a time, at most -poll-qps a second, among the hosts not final yet; a host the phase does not touch only when no touched host waits (converge)
- CPU: meshdns's user+system time from the first write until every host answered its final set twice, ÷ API writes (each a watch event); net of queries: less the steady phase's CPU per answered query × the phase's queries (load and poll); a phase that did not converge: its CPU until it gave up ÷ its table updates
- table updates: meshdns's coredns_meshdns_updates_total over the phase (entries added, changed or deleted); in the create phase without -health each write changes one entry, so this is the number of writes meshdns has applied
- verdicts (model.judge), of every answer of the load and the poll: a host's possible sets at an instant are those its WorkloadEntries give it with each write in flight then taken as applied or not; current: a possible set at some instant while the query was out; lagging: not current, but a possible set at some earlier instant of the run (behind: from the last such instant to the query's sending, a lower bound on how far meshdns was behind); wrong: a possible set at no instant up to the answer's arrival, or an rcode other than NOERROR/NXDOMAIN/SERVFAIL, or truncated; SERVFAIL counted apart; NXDOMAIN and NODATA are the empty set
`

func (b *bench) report(phases []phase) string {
	var perQuery time.Duration
	for _, p := range phases {
		if p.writes == 0 && p.st.answered > 0 {
			perQuery = p.cpu / time.Duration(p.st.answered+p.st.timeouts)
		}
	}
	var sb strings.Builder
	sb.WriteString("| phase | writes | writes/s | last write → every host final | per host p50 | p99 | max | meshdns CPU | CPU per write | net of queries | table updates |\n")
	sb.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, p := range phases {
		s := p.st
		rate, conv, per, net, upd := "", "", "", "", ""
		p50, p99, pmax := "", "", ""
		if p.writes > 0 {
			rate = fmt.Sprintf("%.0f", float64(p.writes)/p.writeTime.Seconds())
			per = ms(p.cpu / time.Duration(p.writes))
			if !p.converged {
				// Only some of the writes were applied: per write would understate.
				per = "not converged"
				if p.updates > 0 {
					per = fmt.Sprintf("not converged; %s per table update", ms(time.Duration(float64(p.cpu)/p.updates)))
				}
			}
			if perQuery > 0 && p.converged {
				queries := s.answered + s.polled + s.timeouts
				net = ms(max(p.cpu-perQuery*time.Duration(queries), 0) / time.Duration(p.writes))
			}
			upd = fmt.Sprintf("%.0f", p.updates)
			if p.converged {
				conv = dur(p.converge)
			} else {
				conv = fmt.Sprintf("**not within %s**: %d of %d hosts final", *convLimit, s.hostsFinal, *nSEs)
			}
			if len(p.perHost) > 0 {
				p50, p99, pmax = dur(harness.Percentile(p.perHost, 50)), dur(harness.Percentile(p.perHost, 99)), dur(harness.Percentile(p.perHost, 100))
			}
		} else if perQuery > 0 {
			per = fmt.Sprintf("%s a query", us(perQuery))
		}
		fmt.Fprintf(&sb, "| %s | %d | %s | %s | %s | %s | %s | %.2f s | %s | %s | %s |\n", p.name, p.writes, rate, conv,
			p50, p99, pmax, p.cpu.Seconds(), per, net, upd)
	}
	wrongHead, wrongSep := "", ""
	if *health {
		wrongHead, wrongSep = " of them only with health |", " ---: |"
	}
	fmt.Fprintf(&sb, "\n| phase | load answers | poll answers | current | lagging | behind p50 | p99 | max | wrong |%s SERVFAIL | timeouts | empty | load RTT p50 | p99 | max | load not sent (behind) | late |\n", wrongHead)
	fmt.Fprintf(&sb, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |%s ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n", wrongSep)
	for _, p := range phases {
		s := p.st
		s.mu.Lock()
		slices.Sort(s.rtts)
		slices.Sort(s.behind)
		healthCol := ""
		if *health {
			healthCol = fmt.Sprintf(" %d |", s.healthOnly)
		}
		fmt.Fprintf(&sb, "| %s | %d | %d | %d | %d | %s | %s | %s | %d |%s %d | %d | %d | %s | %s | %s | %d | %d |\n", p.name,
			s.answered, s.polled, s.current, s.lagging, dur(harness.Percentile(s.behind, 50)), dur(harness.Percentile(s.behind, 99)), dur(harness.Percentile(s.behind, 100)),
			s.wrong, healthCol, s.servfail, s.timeouts, s.empty, ms(harness.Percentile(s.rtts, 50)), ms(harness.Percentile(s.rtts, 99)), ms(harness.Percentile(s.rtts, 100)),
			s.skipped, s.late)
		s.mu.Unlock()
	}
	sb.WriteString("\n")
	for _, p := range phases {
		for _, e := range p.st.examples {
			fmt.Fprintf(&sb, "- wrong answer (%s): %s\n", p.name, e)
		}
	}
	return sb.String()
}

func phaseLoads(phases []phase) string {
	var out []string
	for _, p := range phases {
		out = append(out, p.name+" "+p.load)
	}
	return strings.Join(out, ", ")
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", d.Seconds()*1000) }
func us(d time.Duration) string { return fmt.Sprintf("%.1f µs", d.Seconds()*1e6) }

// dur formats d in milliseconds below a second, else in seconds.
func dur(d time.Duration) string {
	if d < time.Second {
		return ms(d)
	}
	return fmt.Sprintf("%.3f s", d.Seconds())
}
