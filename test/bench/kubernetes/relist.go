package main

import (
	"bufio"
	"bytes"
	"cmp"
	"fmt"
	"log"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshdns/meshdns/test/harness"
)

const (
	// outage is how long the API server stays down: long enough for every
	// watch to notice (the reflectors retry a refused watch with a backoff
	// from 0.8 s), short enough that their backoff stays a few seconds.
	outage = 5 * time.Second
	// relistLimit bounds the wait for the relist once the API server is
	// ready again (the reflectors' backoff is at most 30 s).
	relistLimit = 3 * time.Minute
	// quietRead: the relist is over once the server read less than this
	// in quietFor.
	quietRead   = 64 << 10
	quietFor    = time.Second
	sampleEvery = 50 * time.Millisecond
)

// relistResult is a server's memory through an API server restart that
// forces a full relist.
type relistResult struct {
	before, peak, after float64       // RSS settled before, VmHWM through the relist, RSS settled after
	read                float64       // bytes the server read from the restart to the end of the relist
	down                time.Duration // API server stopped → ready again (its start lists 100k services too)
	// From the API server's restart (which serves lists before it reports
	// ready):
	readyAt          time.Duration // it reports ready
	readFrom, readTo time.Duration // the relist's reading
	received         time.Duration // the service deleted during the outage answers NXDOMAIN: the list was received in full
	peakAt           time.Duration // the highest VmRSS sample
	topSample        float64       // the highest VmRSS sample
}

// relist restarts the API server so that server s (process p, answering on
// q) must list everything again, and measures its RSS through that: VmHWM
// reset before the restart and read after the relist (the peak is the
// higher of it and the highest sample), VmRSS sampled every 50 ms. A
// service created before and deleted from etcd during the outage proves
// the relist: only a new list can tell the server it is gone. It returns
// what it created through the API, to delete. fail ends the program.
//
// The reflectors hand a list over only once they have all of it. A
// RealFIFO (meshdns's queue) queues the deletions it finds before the
// list's objects, an informer's DeltaFIFO (CoreDNS's) after them: the
// deleted service's NXDOMAIN says the list was received; a service created
// after it answers once the list was processed (its event is queued after
// the list), before the peak is read.
func (b *bench) relist(k int, s server, p *harness.Process, q *dnsConn, settledBefore, syncRead float64, pprof string,
	fail func(string, ...any)) (relistResult, *corev1.Service) {
	res := relistResult{before: settledBefore}
	pid := p.Pid()

	ns, _ := svcName(k)
	gone, err := b.client.CoreV1().Services(ns).Create(b.ctx, newService(ns, fmt.Sprintf("gone%d", k)), metav1.CreateOptions{})
	if err != nil {
		fail("create %s/gone%d: %v", ns, k, err)
	}
	goneName := fqdn(gone.Namespace, gone.Name)
	if _, err := b.waitAnswer(q, p, goneName, gone.Spec.ClusterIP, answerLimit); err != nil {
		fail("before the relist: %v", err)
	}
	if *profileDir != "" {
		// Without a GC: its alloc_space is what the process allocated so
		// far, the base of the diff with the profile after the relist.
		path := filepath.Join(*profileDir, fileName(s.name)+".relist-before.heap.pb.gz")
		if err := harness.Download("http://"+pprof+"/debug/pprof/heap", path); err != nil {
			fail("heap profile: %v", err)
		}
	}
	logFrom := len(p.LogLines())
	read0, err := harness.ProcIO(pid, "rchar")
	if err != nil {
		fail("%v", err)
	}
	if err := harness.ResetPeakRSS(pid); err != nil {
		fail("%v", err)
	}
	smp := harness.StartSampler(pid, sampleEvery)

	log.Printf("%s: stopping kube-apiserver; %s/%s is deleted from etcd, etcd's revision moves on and is compacted, so the watches' resource versions are too old",
		s.name, gone.Namespace, gone.Name)
	stopped := time.Now()
	b.cp.StopAPIServer()
	if err := b.cp.DeleteServiceInEtcd(b.ctx, gone); err != nil {
		fail("%v", err)
	}
	rev, err := b.cp.OutdateResourceVersions(b.ctx)
	if err != nil {
		fail("%v", err)
	}
	time.Sleep(time.Until(stopped.Add(outage)))

	// The deleted service answers NXDOMAIN once the list was received;
	// asked from the restart on, since the API server serves lists before
	// it reports ready.
	gq, err := dialDNS(q.RemoteAddr().String())
	if err != nil {
		fail("%v", err)
	}
	goneAt, stopAsking := make(chan time.Time, 1), make(chan struct{})
	defer close(stopAsking)
	go func() {
		defer gq.Close()
		for {
			if _, rcode, err := gq.lookupA(goneName, 200*time.Millisecond); err == nil && rcode == dns.RcodeNameError {
				goneAt <- time.Now()
				return
			}
			select {
			case <-stopAsking:
				return
			case <-time.After(sampleEvery):
			}
		}
	}()
	restart := time.Now()
	b.cp.StartAPIServer()
	ready := time.Now()
	res.down, res.readyAt = ready.Sub(stopped), ready.Sub(restart)
	// The new API server goes where the old one was: CPU 0 is the server's.
	if err := harness.SetAffinity(b.cp.APIServerPid(), clientCPU); err != nil {
		fail("pin the new kube-apiserver: %v", err)
	}
	log.Printf("%s: kube-apiserver ready again after %s, %s after its restart (etcd compacted at revision %d)",
		s.name, res.down.Round(time.Millisecond), res.readyAt.Round(time.Millisecond), rev)

	// The relist is received when the deleted service answers NXDOMAIN,
	// the server has read about as much as for its initial sync (at least
	// half of it: a watch that resumed would read a few kilobytes), and its
	// reading stopped.
	want := syncRead / 2
	deadline := ready.Add(relistLimit)
	var quietSince time.Time
	var lastRead float64
	for {
		read, err := harness.ProcIO(pid, "rchar")
		if err != nil {
			fail("%v", err)
		}
		read -= read0
		now := time.Now()
		if read-lastRead >= quietRead || quietSince.IsZero() {
			quietSince, lastRead = now, read
		}
		select {
		case at := <-goneAt:
			res.received = at.Sub(restart)
		default:
		}
		if res.received > 0 && read >= want && now.Sub(quietSince) >= quietFor {
			res.read = read
			break
		}
		if p.Exited() {
			fail("exited during the relist: %v", p.Err())
		}
		if now.After(deadline) {
			b.r.Logf("%s: kube-apiserver since its restart: %s", s.name, b.apiserverLists())
			b.r.Logf("%s: its log since the restart:\n%s", s.name, strings.Join(p.LogLines()[logFrom:], "\n"))
			ips, rcode, err := q.lookupA(goneName, time.Second)
			fail("no relist %s after kube-apiserver was ready again: %s, deleted during the outage, answers %s %v %v; the server read %s since the restart (its initial sync read %s)",
				relistLimit, goneName, dns.RcodeToString[rcode], ips, err, harness.MiB(read), harness.MiB(syncRead))
		}
		time.Sleep(sampleEvery)
	}
	log.Printf("%s: relisted: %s answers NXDOMAIN %s after kube-apiserver's restart; read %s since it was stopped (its initial sync read %s); kube-apiserver since its restart: %s",
		s.name, goneName, secs(res.received), harness.MiB(res.read), harness.MiB(syncRead), b.apiserverLists())

	// A service created now answers once the list is processed, and the
	// watch is live again.
	name := fmt.Sprintf("relist%d", k)
	svc, err := b.client.CoreV1().Services(ns).Create(b.ctx, newService(ns, name), metav1.CreateOptions{})
	if err != nil {
		fail("create %s/%s: %v", ns, name, err)
	}
	at, err := b.waitAnswer(q, p, fqdn(ns, name), svc.Spec.ClusterIP, answerLimit)
	if err != nil {
		fail("after the relist: %v", err)
	}
	log.Printf("%s: %s/%s, created once the API server was ready and the relist received, answers %s after kube-apiserver's restart",
		s.name, ns, name, secs(at.Sub(restart)))

	time.Sleep(settle)
	hwm, err := harness.ProcStatus(pid, "VmHWM")
	if err != nil {
		fail("%v", err)
	}
	samples := smp.Stop()
	zero := restart.Sub(smp.Begin) // sample times are from the sampler's start
	res.readFrom, res.readTo, res.peakAt, res.topSample = relistTimes(samples, read0, res.read, zero)
	// The kernel's RSS counters are per CPU and read approximately: a
	// sample may be a little above VmHWM. More means the reset or the
	// reading is wrong.
	if res.topSample > hwm+1<<20 {
		fail("VmRSS was %s, above VmHWM %s: the peak was not measured", harness.MiB(res.topSample), harness.MiB(hwm))
	}
	res.peak = max(hwm, res.topSample)
	log.Printf("%s: peak RSS through the relist %s (%.3f× the %s settled before; VmHWM %s, VmRSS highest %s %s after kube-apiserver's restart); the relist read from %s to %s",
		s.name, harness.MiB(res.peak), res.peak/res.before, harness.MiB(res.before), harness.MiB(hwm), harness.MiB(res.topSample), secs(res.peakAt), secs(res.readFrom), secs(res.readTo))
	log.Printf("%s: VmRSS through the relist (s from kube-apiserver's restart: MiB): %s", s.name, timeline(samples, zero))
	var lines, gcs []string
	for _, l := range p.LogLines()[logFrom:] {
		if isGC(l) {
			gcs = append(gcs, l)
		} else {
			lines = append(lines, l)
		}
	}
	log.Printf("%s: its log since the restart:\n%s", s.name, strings.Join(lines, "\n"))
	if len(gcs) > 0 {
		log.Printf("%s: its GCs since the restart (gctrace: heap MB at start -> at end -> live, goal):\n%s", s.name, strings.Join(gcs, "\n"))
	}
	if *profileDir != "" {
		path := filepath.Join(*profileDir, fileName(s.name)+".relist-after.heap.pb.gz")
		if err := harness.Download("http://"+pprof+"/debug/pprof/heap", path); err != nil {
			fail("heap profile: %v", err)
		}
		if err := writeSamples(filepath.Join(*profileDir, fileName(s.name)+".relist-rss.tsv"), samples, zero, read0); err != nil {
			fail("%v", err)
		}
		log.Printf("%s: heap profiles before and after the relist in %s (go tool pprof -sample_index=alloc_space -diff_base ...before... ...after...)", s.name, *profileDir)
	}

	// Every service answers right after the relist, the deleted one
	// NXDOMAIN.
	var wrong []string
	for i := range *nServices {
		ns, name := svcName(i)
		if ips, rcode, err := q.lookupA(fqdn(ns, name), time.Second); err != nil || !correct(ips, rcode, b.ips[i]) {
			wrong = append(wrong, fmt.Sprintf("%s/%s: want %s, got %v %s %v", ns, name, b.ips[i], ips, dns.RcodeToString[rcode], err))
		}
	}
	if ips, rcode, err := q.lookupA(goneName, time.Second); err != nil || rcode != dns.RcodeNameError {
		wrong = append(wrong, fmt.Sprintf("%s/%s: want NXDOMAIN, got %v %s %v", gone.Namespace, gone.Name, ips, dns.RcodeToString[rcode], err))
	}
	if len(wrong) > 0 {
		fail("after the relist %d services answer wrong, e.g. %s", len(wrong), strings.Join(wrong[:min(5, len(wrong))], "; "))
	}
	log.Printf("%s: after the relist all %d services answer their ClusterIP, and %s NXDOMAIN", s.name, *nServices, goneName)

	if res.after, err = harness.SettledRSS(pid, settleWindow, settleMax); err != nil {
		fail("%v", err)
	}
	log.Printf("%s: RSS settled after the relist at %s", s.name, harness.MiB(res.after))
	return res, svc
}

// isGC tells a line of the Go runtime's GC trace (GODEBUG=gctrace=1).
func isGC(line string) bool { return strings.HasPrefix(line, "gc ") }

// logTail is the last n lines of the server's log but its GC trace.
func logTail(p *harness.Process, n int) string {
	var out []string
	for _, l := range p.LogLines() {
		if !isGC(l) {
			out = append(out, l)
		}
	}
	return strings.Join(out[max(0, len(out)-n):], "\n")
}

// relistTimes returns, from zero (the API server's restart, as a sample
// time), when the relist's reading began (the first sample with more than
// quietRead read since the restart) and ended (the first with 99% of what
// the relist read), or never, and when VmRSS was highest, and that VmRSS.
func relistTimes(samples []harness.Sample, read0, read float64, zero time.Duration) (from, to, peakAt time.Duration, top float64) {
	from, to = never, never
	for _, x := range samples {
		got := x.Read - read0
		if from == never && got > quietRead {
			from = x.At - zero
		}
		if to == never && got >= 0.99*read {
			to = x.At - zero
		}
		if x.RSS > top {
			top, peakAt = x.RSS, x.At-zero
		}
	}
	return from, to, peakAt, top
}

// timeline is VmRSS every 0.5 s of the samples, and at its highest, for
// the log.
func timeline(samples []harness.Sample, zero time.Duration) string {
	var parts []string
	var next time.Duration
	top := slices.MaxFunc(samples, func(a, b harness.Sample) int { return cmp.Compare(a.RSS, b.RSS) })
	for _, x := range samples {
		if x.At >= next || x == top {
			mark := ""
			if x == top {
				mark = " (highest)"
			}
			parts = append(parts, fmt.Sprintf("%.2f: %.0f%s", (x.At-zero).Seconds(), x.RSS/(1<<20), mark))
			next = x.At + 500*time.Millisecond
		}
	}
	return strings.Join(parts, ", ")
}

// writeSamples saves the samples as tab-separated values: seconds from the
// API server's restart, VmRSS in MiB, MiB read since it was stopped.
func writeSamples(path string, samples []harness.Sample, zero time.Duration, read0 float64) error {
	var buf bytes.Buffer
	buf.WriteString("s_from_apiserver_restart\tvmrss_mib\tread_mib\n")
	for _, x := range samples {
		fmt.Fprintf(&buf, "%.3f\t%.1f\t%.1f\n", (x.At - zero).Seconds(), x.RSS/(1<<20), (x.Read-read0)/(1<<20))
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// apiserverLists says how many streamed lists (watch-list requests, as
// client-go's reflectors make them since 1.35) and LISTs of services the
// running kube-apiserver served: its own informers' and the server's.
func (b *bench) apiserverLists() string {
	data, err := b.client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(b.ctx)
	if err != nil {
		return "metrics: " + err.Error()
	}
	var watchLists, lists float64
	s := bufio.NewScanner(bytes.NewReader(data))
	s.Buffer(nil, 1<<20)
	for s.Scan() {
		line := s.Text()
		if !strings.Contains(line, `resource="services"`) || !strings.Contains(line, `group=""`) {
			continue
		}
		name, value := metricLine(line)
		switch {
		case name == "apiserver_watch_list_duration_seconds_count":
			watchLists += value
		case name == "apiserver_request_total" && strings.Contains(line, `verb="LIST"`):
			lists += value
		}
	}
	return fmt.Sprintf("%.0f watch-lists and %.0f LISTs of services served", watchLists, lists)
}

// metricLine splits an exposed sample into its name and value.
func metricLine(line string) (string, float64) {
	name, _, _ := strings.Cut(line, "{")
	f := strings.Fields(line)
	v, _ := strconv.ParseFloat(f[len(f)-1], 64)
	return name, v
}

// never is a time that did not come.
const never = time.Duration(math.MinInt64)

func secs(d time.Duration) string {
	if d == never {
		return "–"
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}
