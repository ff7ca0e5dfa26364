// Command kubernetes benchmarks meshdns's kubernetes source against CoreDNS's
// own kubernetes plugin, both in the same bin/coredns, against one real
// etcd and kube-apiserver (test/harness):
//
//   - sync time: from the start of the process until the last of -services
//     ClusterIP services answers its ClusterIP over UDP;
//   - memory: VmRSS of the process after the sync and a 2 s settle, its peak
//     (VmHWM), then the live Go heap (allocated bytes right after a forced
//     GC), and, after the create-to-answer runs, VmRSS once it stopped
//     falling;
//   - create-to-answer latency: -creates services created one at a time, each
//     timed from the return of its Create call to its first correct A answer
//     (polled every 1 ms);
//   - memory through a relist (-relist): once the RSS settled, the peak RSS
//     (VmHWM) is reset (5 > /proc/PID/clear_refs) and kube-apiserver
//     restarted with etcd's revision moved on and compacted, so that every
//     watch's resource version is too old and the server must list
//     everything again; a service deleted from etcd during the outage
//     proves the relist (only a new list can tell the server it is gone:
//     it must answer NXDOMAIN), and so does what the server reads
//     (/proc/PID/io rchar: at least half of what its initial sync read), or
//     the program fails. A service created then answers once the list was
//     processed. Then the peak (VmHWM), when it happened (VmRSS sampled
//     every 50 ms), every service's answer again, and the RSS settled
//     after.
//
// Each server runs alone, pinned to CPU 0 with GOMAXPROCS=1; this program,
// etcd and kube-apiserver are pinned to CPU 1 for the measurements. Every
// answer is checked against the service's ClusterIP. The result is a
// Markdown table on stdout, and a second one for the relist.
//
// The -services services are written straight into etcd
// (harness.SeedServices), all but the last, which is created through the
// API; the -creates services go through the API, whose watch path they
// measure.
//
// Run it from test/: go run ./bench/kubernetes [-services N] [-creates N] [-bin PATH] [-profiles DIR] [-relist=false]
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshdns/meshdns/test/harness"
)

var (
	nServices   = flag.Int("services", 10000, "services created before the servers start")
	nCreates    = flag.Int("creates", 200, "services created one at a time for the create-to-answer latency, per server")
	nNamespaces = flag.Int("namespaces", 100, "namespaces the services are spread over")
	binPath     = flag.String("bin", "../bin/coredns", "the coredns binary (relative to the working directory, test/)")
	profileDir  = flag.String("profiles", "", "if set, save in this directory each server's heap profile (pprof), taken with the live heap, and its heap profiles and RSS samples through the relist; the servers then log their GCs (GODEBUG=gctrace=1), shown through the relist")
	maxLoad     = flag.Float64("maxload", 0.6, "before each server, wait (up to 15 min) until the 1-minute load average is below this")
	doRelist    = flag.Bool("relist", true, "after the creates, restart kube-apiserver so that the server relists, and measure its peak RSS through that")
)

const (
	serverCPU    = 0 // the server under test
	clientCPU    = 1 // this program, etcd, kube-apiserver
	settle       = 2 * time.Second
	settleWindow = 15 * time.Second
	settleMax    = 2 * time.Minute
	syncLimit    = 5 * time.Minute
	answerLimit  = 30 * time.Second
	pollInterval = time.Millisecond
)

// A server is one Corefile plugin block answering cluster.local; %s is the
// kubeconfig.
type server struct{ name, block string }

var servers = []server{
	{"meshdns", "meshdns cluster.local {\n\t\tkubernetes %s\n\t}"},
	{"CoreDNS kubernetes", "kubernetes cluster.local {\n\t\tkubeconfig %s\n\t}"},
}

type result struct {
	load      string
	sync, cpu time.Duration // cpu: the server's CPU time (user+system) at sync
	rss, heap float64       // bytes
	peak      float64       // VmHWM: the most RSS the process ever had
	settled   float64       // RSS once it stopped falling (settledRSS)
	lat       []time.Duration
	syncRead  float64 // bytes the process read until the sync (rchar)
	relist    relistResult
}

type bench struct {
	r      *harness.Runner
	ctx    context.Context
	cp     *harness.ControlPlane
	client kubernetes.Interface
	bin    string
	ips    []string // ClusterIP of svc(i)
}

func main() {
	flag.Parse()
	log.SetFlags(log.Ltime)
	r := &harness.Runner{Prefix: "meshdns-bench-"}
	defer r.Teardown()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r.InterruptOnSignal(cancel)

	if *nServices < 1 || *nCreates < 1 || *nNamespaces < 1 {
		r.Fatalf("-services, -creates and -namespaces must be positive")
	}
	if runtime.NumCPU() < 2 {
		r.Fatalf("need 2 CPUs, have %d", runtime.NumCPU())
	}
	if _, err := exec.LookPath("taskset"); err != nil {
		r.Fatalf("taskset: %v", err)
	}
	// Both servers run a private copy, so a rebuild of bin/coredns during
	// the run changes nothing.
	binInfo, err := os.Stat(*binPath)
	if err != nil {
		r.Fatalf("coredns binary: %v (make build)", err)
	}
	bin := filepath.Join(r.TempDir(), "coredns")
	if err := harness.CopyBinary(*binPath, bin); err != nil {
		r.Fatalf("copy %s: %v", *binPath, err)
	}
	start, startLoad := time.Now(), harness.LoadAvg()
	log.Printf("load average at start: %s", startLoad)

	b := &bench{r: r, ctx: ctx, bin: bin}
	log.Print("starting etcd and kube-apiserver...")
	b.cp = harness.Start(r)
	cfg := rest.CopyConfig(b.cp.RESTConfig)
	cfg.QPS, cfg.Burst = 1e5, 1e5
	if b.client, err = kubernetes.NewForConfig(cfg); err != nil {
		r.Fatalf("client: %v", err)
	}
	b.createAll()

	// From here on CPU 0 is the server's alone: the control plane and this
	// program move to CPU 1.
	if err := harness.PinControlPlane(clientCPU); err != nil {
		r.Fatalf("pin the control plane: %v", err)
	}
	if err := harness.SetAffinity(os.Getpid(), clientCPU); err != nil {
		r.Fatalf("pin this program: %v", err)
	}
	time.Sleep(5 * time.Second) // let the API server and etcd quiet down

	results := make([]result, len(servers))
	for k, s := range servers {
		results[k] = b.run(k, s)
	}

	fmt.Print(table(results))
	if *doRelist {
		fmt.Printf("\nThrough a relist (kube-apiserver stopped, etcd compacted, kube-apiserver started again):\n\n")
		fmt.Print(relistTable(results))
	}
	fmt.Printf("\n- command: `%s` (effective: -services %d -creates %d -namespaces %d -bin %s -maxload %.2f)\n",
		strings.Join(append([]string{"cd test && go run ./bench/kubernetes"}, os.Args[1:]...), " "),
		*nServices, *nCreates, *nNamespaces, *binPath, *maxLoad)
	fmt.Printf("- N = %d ClusterIP services (one port each; all but the last seeded straight into etcd) in %d namespaces; %d creates per server\n", *nServices, *nNamespaces, *nCreates)
	fmt.Printf("- date: %s; %s built %s (a copy of it runs); %d × %s\n", start.UTC().Format(time.RFC3339), *binPath,
		binInfo.ModTime().UTC().Format(time.RFC3339), runtime.NumCPU(), harness.CPUModel())
	fmt.Printf("- load average at start: %s; before each server (after waiting for < %.2f): %s %s, %s %s\n", startLoad, *maxLoad,
		servers[0].name, results[0].load, servers[1].name, results[1].load)
	fmt.Printf("- each server alone on CPU %d with GOMAXPROCS=1; this program, etcd and kube-apiserver on CPU %d; all answers checked against the ClusterIP\n", serverCPU, clientCPU)
	fmt.Printf("- sync: process start to the last service's correct A answer (1 ms polling); CPU to sync: user+system time of the process then; RSS: VmRSS %s after the sync; peak RSS: VmHWM then; live heap: go_memstats_heap_alloc_bytes right after a forced GC, taken after the RSS; RSS settled: VmRSS after the creates, once it moved less than 1 MiB in %s (at most %s)\n", settle, settleWindow, settleMax)
	if *doRelist {
		fmt.Printf("- relist: after the RSS settled, a service created and answered, VmHWM reset (5 > /proc/PID/clear_refs), kube-apiserver stopped, that service deleted from etcd, a key written into etcd and etcd compacted at its revision (every watch's resource version too old), kube-apiserver started again (at least %s after it was stopped); API server down: stopped to ready again; from its restart (it serves lists before it reports ready): when it reported ready, when the server had read 64 KiB and 99%% of the relist's bytes (rchar, sampled every %s), when the deleted service answered NXDOMAIN (list received: a reflector hands a list over once it has all of it; asked every %s), when VmRSS was highest; the relist must be received and read at least half the bytes of the initial sync; once the API server is ready and the reading stopped (< 64 KiB in %s), a service is created, which answers once the list was processed (its event is queued after the list); peak RSS: the higher of VmHWM %s after that and the highest VmRSS sample; then all %d services answer their ClusterIP again and the deleted one NXDOMAIN; RSS settled after: as above\n",
			outage, sampleEvery, sampleEvery, quietFor, settle, *nServices)
		fmt.Printf("- load average at end: %s\n", harness.LoadAvg())
	}
	fmt.Printf("- runtime: %s\n", time.Since(start).Round(time.Second))
}

// relistTable is the second table: each server's RSS through a relist, and
// the targets.
func relistTable(rs []result) string {
	var sb strings.Builder
	sb.WriteString("| server | RSS settled before | peak RSS through the relist | peak / settled before | RSS settled after | read by the relist | API server down | from its restart: ready | relist read | list received | RSS peak |\n")
	sb.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for k, r := range rs {
		l := r.relist
		fmt.Fprintf(&sb, "| %s | %s | %s | %.3f× | %s | %s | %s | %s | %s – %s | %s | %s |\n", servers[k].name, harness.MiB(l.before), harness.MiB(l.peak),
			l.peak/l.before, harness.MiB(l.after), harness.MiB(l.read), secs(l.down), secs(l.readyAt), secs(l.readFrom), secs(l.readTo), secs(l.received), secs(l.peakAt))
	}
	a, b := rs[0].relist, rs[1].relist
	fmt.Fprintf(&sb, "| ratio meshdns / kubernetes | %.3f× | %.3f× | | %.3f× | %.3f× | | | | | |\n", a.before/b.before, a.peak/b.peak, a.after/b.after, a.read/b.read)
	met := func(ok bool) string {
		if ok {
			return "met"
		}
		return "**missed**"
	}
	fmt.Fprintf(&sb, "\nTargets: meshdns peak ≤ 1.3× its settled RSS: %.3f×, %s; meshdns peak ≤ 0.5× CoreDNS kubernetes's peak: %.3f×, %s.\n",
		a.peak/a.before, met(a.peak <= 1.3*a.before), a.peak/b.peak, met(a.peak <= 0.5*b.peak))
	return sb.String()
}

func svcName(i int) (ns, name string) {
	return fmt.Sprintf("bench-%02d", i%*nNamespaces), fmt.Sprintf("svc-%05d", i)
}

func fqdn(ns, name string) string { return name + "." + ns + ".svc.cluster.local." }

func newService(ns, name string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{
			Type:  corev1.ServiceTypeClusterIP,
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}},
		},
	}
}

// svcIP is the ClusterIP of svc(i): IPv4 from 10.96.1.0 on, past the API
// server's 10.96.0.1 and the DNS service's customary 10.96.0.10.
func svcIP(i int) string {
	var a [4]byte
	binary.BigEndian.PutUint32(a[:], 0x0a600100+uint32(i))
	return netip.AddrFrom4(a).String()
}

// createAll creates the namespaces and the services, the last one alone
// after all the others: the sync is timed to its answer, so it must be the
// newest. The others are seeded straight into etcd, since creating them
// through the API takes hours at 100k (see harness.SeedServices).
func (b *bench) createAll() {
	for i := range *nNamespaces {
		ns, _ := svcName(i)
		_, err := b.client.CoreV1().Namespaces().Create(b.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		if err != nil {
			b.r.Fatalf("create namespace %s: %v", ns, err)
		}
	}
	n := *nServices
	b.ips = make([]string, n)
	svcs := make([]*corev1.Service, n)
	for i := range n {
		ns, name := svcName(i)
		b.ips[i] = svcIP(i)
		svcs[i] = newService(ns, name)
		svcs[i].Spec.ClusterIP = b.ips[i]
	}
	begin := time.Now()
	if err := b.cp.SeedServices(b.ctx, svcs[:n-1]); err != nil {
		b.r.Fatalf("%v", err)
	}
	log.Printf("seeded %d services in %s", n-1, time.Since(begin).Round(time.Millisecond))
	last := svcs[n-1]
	if _, err := b.client.CoreV1().Services(last.Namespace).Create(b.ctx, last, metav1.CreateOptions{}); err != nil {
		b.r.Fatalf("create service %s/%s: %v", last.Namespace, last.Name, err)
	}
	log.Printf("created %d services in %d namespaces in %s", n, *nNamespaces, time.Since(begin).Round(time.Millisecond))
}

// run measures server s: sync, memory, a check of every answer, then the
// create-to-answer latency. It stops the server and deletes the services it
// created, so the next server syncs the same N services.
func (b *bench) run(k int, s server) result {
	res := result{load: b.waitQuiet(s.name)}
	log.Printf("%s: load average %s; starting on CPU %d", s.name, res.load, serverCPU)
	ports, err := freePorts(3)
	if err != nil {
		b.r.Fatalf("%v", err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	metrics := fmt.Sprintf("127.0.0.1:%d", ports[1])
	pprof := fmt.Sprintf("127.0.0.1:%d", ports[2])
	dir := b.r.TempDir()
	corefile := fmt.Sprintf(".:%d {\n\tbind 127.0.0.1\n\tprometheus %s\n\tpprof %s\n\t%s\n}\n",
		ports[0], metrics, pprof, fmt.Sprintf(s.block, b.cp.Kubeconfig))
	conf := filepath.Join(dir, "Corefile")
	if err := os.WriteFile(conf, []byte(corefile), 0o644); err != nil {
		b.r.Fatalf("%v", err)
	}
	p, begin, err := startPinned(b.bin, conf, filepath.Join(dir, "coredns.log"), *profileDir != "")
	if err != nil {
		b.r.Fatalf("%s: %v", s.name, err)
	}
	b.r.Cleanup(p.Stop)
	fail := func(f string, a ...any) {
		if b.ctx.Err() != nil {
			b.r.Fatalf("%s: interrupted", s.name) // blocks until the interrupt exits
		}
		b.r.Logf("%s: Corefile:\n%s\nlast lines of its log:\n%s", s.name, corefile, logTail(p, 30))
		b.r.Fatalf(s.name+": "+f, a...)
	}

	q, err := dialDNS(addr)
	if err != nil {
		fail("%v", err)
	}
	defer q.Close()
	ns, name := svcName(*nServices - 1)
	at, err := b.waitAnswer(q, p, fqdn(ns, name), b.ips[*nServices-1], syncLimit)
	if err != nil {
		fail("sync: %v", err)
	}
	res.sync = at.Sub(begin)
	if res.cpu, err = harness.CPUTime(p.Pid()); err != nil {
		fail("%v", err)
	}
	if res.syncRead, err = harness.ProcIO(p.Pid(), "rchar"); err != nil {
		fail("%v", err)
	}
	log.Printf("%s: synced %d services in %s, using %s of CPU, having read %s", s.name, *nServices, res.sync.Round(time.Millisecond), res.cpu, harness.MiB(res.syncRead))

	time.Sleep(settle)
	if res.rss, err = harness.ProcStatus(p.Pid(), "VmRSS"); err != nil {
		fail("%v", err)
	}
	if res.peak, err = harness.ProcStatus(p.Pid(), "VmHWM"); err != nil {
		fail("%v", err)
	}
	// The live heap: a GC (the pprof heap handler with gc=1), then the
	// allocated heap.
	path := ""
	if *profileDir != "" {
		path = filepath.Join(*profileDir, fileName(s.name)+".heap.pb.gz")
	}
	if err := harness.Download("http://"+pprof+"/debug/pprof/heap?gc=1", path); err != nil {
		fail("heap profile: %v", err)
	}
	if res.heap, err = harness.Metric("http://"+metrics+"/metrics", "go_memstats_heap_alloc_bytes"); err != nil {
		fail("%v", err)
	}
	log.Printf("%s: RSS %s, live heap %s", s.name, harness.MiB(res.rss), harness.MiB(res.heap))
	if path != "" {
		log.Printf("%s: heap profile in %s", s.name, path)
	}

	// Every service answers its ClusterIP.
	var wrong []string
	for i := range *nServices {
		ns, name := svcName(i)
		if ips, rcode, err := q.lookupA(fqdn(ns, name), time.Second); err != nil || !correct(ips, rcode, b.ips[i]) {
			wrong = append(wrong, fmt.Sprintf("%s/%s: want %s, got %v %s %v", ns, name, b.ips[i], ips, dns.RcodeToString[rcode], err))
		}
	}
	if len(wrong) > 0 {
		fail("%d of %d services answer wrong, e.g. %s", len(wrong), *nServices, strings.Join(wrong[:min(5, len(wrong))], "; "))
	}
	log.Printf("%s: all %d services answer their ClusterIP", s.name, *nServices)

	// Create-to-answer, one service at a time.
	var created []*corev1.Service
	for i := range *nCreates {
		ns, _ := svcName(i)
		name := fmt.Sprintf("new%d-%04d", k, i)
		svc, err := b.client.CoreV1().Services(ns).Create(b.ctx, newService(ns, name), metav1.CreateOptions{})
		t0 := time.Now()
		if err != nil {
			fail("create %s/%s: %v", ns, name, err)
		}
		created = append(created, svc)
		at, err := b.waitAnswer(q, p, fqdn(ns, name), svc.Spec.ClusterIP, answerLimit)
		if err != nil {
			fail("create-to-answer: %v", err)
		}
		res.lat = append(res.lat, at.Sub(t0))
	}
	slices.Sort(res.lat)
	log.Printf("%s: create-to-answer p50 %s p99 %s max %s", s.name, ms(harness.Percentile(res.lat, 50)), ms(harness.Percentile(res.lat, 99)), ms(res.lat[len(res.lat)-1]))

	if res.settled, err = harness.SettledRSS(p.Pid(), settleWindow, settleMax); err != nil {
		fail("%v", err)
	}
	log.Printf("%s: RSS settled at %s (peak %s)", s.name, harness.MiB(res.settled), harness.MiB(res.peak))
	log.Printf("%s: settled RSS is %s", s.name, rssBreakdown(p.Pid(), "http://"+metrics+"/metrics"))

	if *doRelist {
		var svc *corev1.Service
		res.relist, svc = b.relist(k, s, p, q, res.settled, res.syncRead, pprof, fail)
		created = append(created, svc)
		log.Printf("%s: settled RSS after the relist is %s", s.name, rssBreakdown(p.Pid(), "http://"+metrics+"/metrics"))
	}

	p.Stop()
	err = harness.Parallel(len(created), 32, func(i int) error {
		return b.client.CoreV1().Services(created[i].Namespace).Delete(b.ctx, created[i].Name, metav1.DeleteOptions{})
	})
	if err != nil {
		b.r.Fatalf("delete the created services: %v", err)
	}
	return res
}

// waitQuiet waits until the 1-minute load average is below -maxload, for
// at most 15 minutes, and returns the load average.
func (b *bench) waitQuiet(name string) string {
	deadline := time.Now().Add(15 * time.Minute)
	for {
		load := harness.LoadAvg()
		l, err := strconv.ParseFloat(strings.Fields(load + " x")[0], 64)
		if err != nil || l < *maxLoad {
			return load
		}
		if time.Now().After(deadline) {
			log.Printf("%s: load average %s still not below %.2f after 15 min; going on", name, load, *maxLoad)
			return load
		}
		log.Printf("%s: load average %s, waiting until below %.2f", name, load, *maxLoad)
		select {
		case <-b.ctx.Done():
			b.r.Fatalf("interrupted")
		case <-time.After(30 * time.Second):
		}
	}
}

func fileName(server string) string { return strings.ReplaceAll(server, " ", "-") }

// waitAnswer polls name every millisecond until it answers exactly ip, and
// returns when that answer arrived.
func (b *bench) waitAnswer(q *dnsConn, p *harness.Process, name, ip string, limit time.Duration) (time.Time, error) {
	deadline := time.Now().Add(limit)
	var last string
	for {
		ips, rcode, err := q.lookupA(name, 200*time.Millisecond)
		now := time.Now()
		if err == nil && correct(ips, rcode, ip) {
			return now, nil
		}
		if err != nil {
			last = err.Error()
		} else {
			last = fmt.Sprintf("%s %v", dns.RcodeToString[rcode], ips)
		}
		switch {
		case b.ctx.Err() != nil:
			return now, b.ctx.Err()
		case p.Exited():
			return now, fmt.Errorf("coredns exited: %v", p.Err())
		case now.After(deadline):
			return now, fmt.Errorf("%s: no answer %s after %s; last: %s", name, ip, limit, last)
		}
		time.Sleep(pollInterval)
	}
}

func correct(ips []string, rcode int, want string) bool {
	return rcode == dns.RcodeSuccess && len(ips) == 1 && ips[0] == want
}

// dnsConn is a connected UDP socket for A queries.
type dnsConn struct {
	*net.UDPConn
	buf []byte
}

func dialDNS(addr string) (*dnsConn, error) {
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	c, err := net.DialUDP("udp", nil, raddr)
	if err != nil {
		return nil, err
	}
	return &dnsConn{UDPConn: c, buf: make([]byte, dns.MaxMsgSize)}, nil
}

// lookupA asks for the A records of name and returns them with the rcode.
// Answers to earlier, timed out queries are skipped by their ID.
func (c *dnsConn) lookupA(name string, timeout time.Duration) ([]string, int, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	out, err := m.Pack()
	if err != nil {
		return nil, 0, err
	}
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return nil, 0, err
	}
	if _, err := c.Write(out); err != nil {
		return nil, 0, err
	}
	for {
		n, err := c.Read(c.buf)
		if err != nil {
			return nil, 0, err
		}
		resp := new(dns.Msg)
		if err := resp.Unpack(c.buf[:n]); err != nil || resp.Id != m.Id {
			continue
		}
		var ips []string
		for _, rr := range resp.Answer {
			if a, ok := rr.(*dns.A); ok {
				ips = append(ips, a.A.String())
			}
		}
		return ips, resp.Rcode, nil
	}
}

func table(rs []result) string {
	var sb strings.Builder
	sb.WriteString("| server | sync time | CPU to sync | RSS after sync | peak RSS | RSS settled | live heap | create→answer p50 | p90 | p99 | max |\n")
	sb.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	cols := func(r result) []float64 {
		l := r.lat
		return []float64{r.sync.Seconds(), r.cpu.Seconds(), r.rss, r.peak, r.settled, r.heap,
			harness.Percentile(l, 50).Seconds(), harness.Percentile(l, 90).Seconds(), harness.Percentile(l, 99).Seconds(), l[len(l)-1].Seconds()}
	}
	for k, r := range rs {
		c := cols(r)
		fmt.Fprintf(&sb, "| %s | %.2f s | %.2f s | %s | %s | %s | %s | %s | %s | %s | %s |\n", servers[k].name, c[0], c[1],
			harness.MiB(c[2]), harness.MiB(c[3]), harness.MiB(c[4]), harness.MiB(c[5]), msf(c[6]), msf(c[7]), msf(c[8]), msf(c[9]))
	}
	a, b := cols(rs[0]), cols(rs[1])
	sb.WriteString("| ratio meshdns / kubernetes |")
	for i := range a {
		fmt.Fprintf(&sb, " %.2f× |", a[i]/b[i])
	}
	sb.WriteString("\n")
	return sb.String()
}

func msf(s float64) string      { return fmt.Sprintf("%.2f ms", s*1000) }
func ms(d time.Duration) string { return msf(d.Seconds()) }

// rssBreakdown says what a settled RSS holds: anonymous memory (the Go heap
// in use, heap pages free but not yet returned to the kernel, the goal of
// the next GC) and the binary's and libraries' pages.
func rssBreakdown(pid int, metricsURL string) string {
	var out []string
	for _, f := range []string{"RssAnon", "RssFile"} {
		v, err := harness.ProcStatus(pid, f)
		if err != nil {
			return err.Error()
		}
		out = append(out, f+" "+harness.MiB(v))
	}
	m := map[string]float64{}
	for _, name := range []string{"heap_inuse", "heap_idle", "heap_released", "stack_sys", "next_gc"} {
		v, err := harness.Metric(metricsURL, "go_memstats_"+name+"_bytes")
		if err != nil {
			return err.Error()
		}
		m[name] = v
	}
	return fmt.Sprintf("%s; Go heap in use %s, free and kept %s, stacks %s, next GC at %s", strings.Join(out, ", "),
		harness.MiB(m["heap_inuse"]), harness.MiB(m["heap_idle"]-m["heap_released"]), harness.MiB(m["stack_sys"]), harness.MiB(m["next_gc"]))
}

// freePorts returns n distinct loopback ports free for both TCP and UDP
// (CoreDNS serves DNS on both); the listeners are held until all are found.
func freePorts(n int) ([]int, error) {
	var ports []int
	for tries := 0; len(ports) < n; tries++ {
		if tries > 100 {
			return nil, errors.New("no free ports")
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		u.Close()
		ports = append(ports, port)
	}
	return ports, nil
}
