// Command dns measures meshdns against its peers in one run, on a 2-core
// machine: every DNS server alone on CPU 0 with GOMAXPROCS=1, dnsperf on
// CPU 1. The candidates:
//
//  1. meshdns in bin/coredns, file source (a JSON name table) and
//     kubernetes source (a real kube-apiserver and etcd, test/harness);
//  2. CoreDNS hosts, 3. CoreDNS file and 4. CoreDNS kubernetes, in the same
//     binary;
//  5. Istio's agent DNS proxy (bin/istio-dns) with the same NameTable;
//  6. a bare miekg/dns responder with precomputed answers: the floor;
//  7. bin/meshdns, the lean build, file source, and CoreDNS built with bind
//     and hosts alone (bin/coredns-floor), for memory: the RSS of the lean
//     build beside Istio's proxy and beside the server itself.
//
// Each forwards what it does not answer to a local upstream (a miekg/dns
// responder on 127.0.0.1:53, on CPU 1). Query mixes: (a) FQDN A hits;
// (b) what pods with ndots:5 send. For each candidate × mix × table size it
// reports QPS, p50/p99 latency at a fixed moderate rate, server CPU per
// query and RSS; then, for a pod-like client walking its search list as
// glibc does, the queries and upstream queries per lookup. It writes
// results.md and qps.png into -out.
//
// Run it from test/ (make bench): go run ./bench/dns -out ../docs/bench
package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/meshdns/meshdns/test/harness"
)

var (
	outDir     = flag.String("out", "../docs/bench", "directory for results.md, qps.png and the profiles")
	sizesFlag  = flag.String("sizes", "1000,100000", "table sizes (hosts: Services plus 2% ServiceEntries)")
	k8sAll     = flag.Bool("k8s-100k", false, "run the kubernetes-source candidates at every size, not only the first (their Services are seeded into etcd: harness.SeedServices)")
	only       = flag.String("candidates", "", "comma-separated candidate keys to run (default: all): "+candidateKeys())
	duration   = flag.Duration("d", 6*time.Second, "dnsperf run per candidate × mix × size × round (whole seconds)")
	mixesFlag  = flag.String("mixes", "a,b", "query mixes to measure")
	rounds     = flag.Int("rounds", 5, "rounds of measurements, each through every candidate; QPS and ratios are the rounds' medians")
	warmup     = flag.Duration("warmup", 2*time.Second, "dnsperf warm-up before each measured run (whole seconds)")
	rate       = flag.Int("rate", 2000, "queries per second of the latency client")
	latTime    = flag.Duration("latency-time", 2*time.Second, "how long the latency client runs per cell")
	nLookups   = flag.Int("lookups", 20000, "lookups expanded into mix (b)")
	ndotsN     = flag.Int("ndots-lookups", 100, "lookups per kind in the ndots:5 search-walk measurement")
	rtt        = flag.Duration("upstream-rtt", time.Millisecond, "upstream answer delay during the search-walk measurement")
	profile    = flag.Bool("profile", true, "CPU-profile meshdns (file and kubernetes) and CoreDNS hosts for each mix and size, after the measured runs")
	maxForeign = flag.Float64("max-foreign", 0.05, "measure a cell again when processes outside this benchmark used more than this share of a CPU during it")
	tries      = flag.Int("tries", 3, "measurements per cell at most (the cleanest is kept; see -max-foreign)")
	binDirFlag = flag.String("bin", "../bin", "directory of coredns, istio-dns, etcd and kube-apiserver")

	serveKind  = flag.String("serve", "", "internal: run the floor or upstream responder")
	serveAddr  = flag.String("addr", "", "internal: address of -serve")
	serveHosts = flag.String("hosts", "", "internal: hosts file of the floor")
)

const (
	serverCPU = 0 // the server under test, alone
	clientCPU = 1 // dnsperf, this program, the upstream, etcd, kube-apiserver
)

type bench struct {
	r                       *harness.Runner
	ctx                     context.Context
	cp                      *harness.ControlPlane
	binDir, istioBin, self  string
	upstream                string
	upProc                  *proc
	tmp                     string
	createdSvcs, createdSEs int
	cells                   []cell // the median round of each candidate, size and mix
	rounds                  []cell // every round
	walks                   []walkResult
	profiles                []string
	breakdowns              []breakdown
	skipped                 []string
}

type cell struct {
	size     int
	mix      mix
	cand     candidate
	perf     perf
	cpu      time.Duration // server CPU per query
	rss      float64
	p50, p99 time.Duration
	latLost  int
	upPer1k  float64 // upstream queries per 1000 queries
	// clientBusy is the share of CPU 1 that dnsperf and the upstream used.
	clientBusy float64
	// foreign is the CPU time of processes outside this program's tree
	// during the run ÷ its duration: near 0 for a clean measurement.
	foreign   float64
	loadStart string
	round     int
}

func main() {
	flag.Parse()
	log.SetFlags(log.Ltime)
	if *serveKind != "" {
		log.Fatal(serve(*serveKind, *serveAddr, *serveHosts))
	}
	begin, startLoad := time.Now(), harness.LoadAvg()
	r := &harness.Runner{Prefix: "meshdns-bench-dns-"}
	defer r.Teardown()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r.InterruptOnSignal(cancel)

	b := &bench{r: r, ctx: ctx}
	cands, sizes := b.setup()
	log.Printf("load average at start: %s", startLoad)

	for k, n := range sizes {
		withK8s := k == 0 || *k8sAll
		d, err := newDataset(n, filepath.Join(b.tmp, strconv.Itoa(n)), *nLookups)
		if err != nil {
			r.Fatalf("dataset: %v", err)
		}
		log.Printf("%d hosts: mix (a) %d queries, mix (b) %d queries from %d lookups", n, d.mixes[0].queries, d.mixes[1].queries, *nLookups)
		if b.cp != nil && withK8s {
			// Creating objects wants both CPUs; measuring wants CPU 0 free.
			if err := pinHarness(serverCPU, clientCPU); err != nil {
				r.Fatalf("unpin: %v", err)
			}
			t0 := time.Now()
			if err := b.createObjects(ctx, d); err != nil {
				r.Fatalf("create objects: %v", err)
			}
			log.Printf("created %d Services and %d ServiceEntries in %s", len(d.svcs), len(d.ses), time.Since(t0).Round(time.Second))
		}
		if err := pinHarness(clientCPU); err != nil {
			r.Fatalf("pin: %v", err)
		}
		time.Sleep(2 * time.Second) // let the API server quiet down
		var run []candidate
		for _, c := range cands {
			if !c.k8s || withK8s {
				run = append(run, c)
			}
		}
		b.runSize(run, d, k == 0)
	}
	if err := b.report(begin, startLoad, sizes); err != nil {
		r.Fatalf("report: %v", err)
	}
	log.Printf("done in %s: %s", time.Since(begin).Round(time.Second), filepath.Join(*outDir, "results.md"))
}

func candidateKeys() string {
	var keys []string
	for _, c := range candidates {
		keys = append(keys, c.key)
	}
	return strings.Join(keys, ",")
}

// setup checks the machine and tools, starts the upstream and, if needed,
// the control plane.
func (b *bench) setup() ([]candidate, []int) {
	r := b.r
	if runtime.NumCPU() < 2 {
		r.Fatalf("need 2 CPUs, have %d", runtime.NumCPU())
	}
	var sizes []int
	for f := range strings.SplitSeq(*sizesFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 100 {
			r.Fatalf("-sizes: %q is not a size of at least 100", f)
		}
		sizes = append(sizes, n)
	}
	var err error
	if b.binDir, err = filepath.Abs(*binDirFlag); err != nil {
		r.Fatalf("%v", err)
	}
	if b.self, err = os.Executable(); err != nil {
		r.Fatalf("%v", err)
	}
	if err := os.MkdirAll(*outDir, 0o755); err != nil {
		r.Fatalf("%v", err)
	}
	for _, tool := range []struct{ bin, pkg string }{{"taskset", "util-linux"}, {"unshare", "util-linux"}, {"dnsperf", "dnsperf"}, {"gnuplot", "gnuplot-nox"}} {
		if _, err := exec.LookPath(tool.bin); err == nil {
			continue
		}
		log.Printf("%s is missing: apt-get install -y %s", tool.bin, tool.pkg)
		if err := aptInstall(tool.pkg); err != nil {
			r.Fatalf("install %s: %v", tool.pkg, err)
		}
	}

	want := map[string]bool{}
	for k := range strings.SplitSeq(*only, ",") {
		if k = strings.TrimSpace(k); k != "" {
			want[k] = true
		}
	}
	var cands []candidate
	all := len(want) == 0
	for _, c := range candidates {
		if !all && !want[c.key] {
			continue
		}
		delete(want, c.key)
		if c.coredns {
			if _, err := os.Stat(filepath.Join(b.binDir, cmp.Or(c.binary, "coredns"))); err != nil {
				r.Fatalf("%v (make bench builds it)", err)
			}
		}
		if c.key == "istio" {
			b.istioBin = filepath.Join(b.binDir, "istio-dns")
			if _, err := os.Stat(b.istioBin); err != nil {
				log.Printf("SKIPPING Istio's agent proxy: %v", err)
				b.skipped = append(b.skipped, fmt.Sprintf("%s: %s not found", c.title, b.istioBin))
				continue
			}
		}
		cands = append(cands, c)
	}
	if len(want) > 0 {
		r.Fatalf("-candidates: unknown %v; known: %s", want, candidateKeys())
	}

	b.tmp = r.TempDir()
	// The upstream must be on port 53: Istio's proxy takes its upstreams
	// from resolv.conf, which has no port.
	b.upstream = "127.0.0.1:53"
	if _, err := ask(b.upstream, "probe.bench.invalid.", dns.TypeA, 200*time.Millisecond); err == nil {
		r.Fatalf("something already answers DNS on %s; the upstream needs that port", b.upstream)
	}
	up, err := startProc(r, "upstream", pinned(clientCPU, b.self, "-serve", "upstream", "-addr", b.upstream),
		[]string{"GOMAXPROCS=1"}, filepath.Join(b.tmp, "upstream.log"))
	if err != nil {
		r.Fatalf("%v", err)
	}
	b.upProc = up
	for i := 0; ; i++ {
		if _, err := upstreamCount(b.upstream); err == nil {
			break
		} else if i == 50 || up.Exited() {
			r.Fatalf("upstream: %v\n%s", err, up.LogTail(10))
		}
		time.Sleep(100 * time.Millisecond)
	}

	if slices.ContainsFunc(cands, func(c candidate) bool { return c.k8s }) {
		log.Print("starting etcd and kube-apiserver...")
		b.cp = harness.Start(r)
	}
	return cands, sizes
}

// aptInstall installs a Debian package, updating the package lists once if
// the first attempt fails.
func aptInstall(pkg string) error {
	run := func(args ...string) error {
		cmd := exec.Command("apt-get", args...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		return cmd.Run()
	}
	if run("install", "-y", "--no-install-recommends", pkg) == nil {
		return nil
	}
	if err := run("update"); err != nil {
		return err
	}
	return run("install", "-y", "--no-install-recommends", pkg)
}

// runSize measures every candidate on dataset d. All the servers run at
// once, pinned to CPU 0, idle but for the one being measured; the mixes are
// measured in -rounds rounds, each going once through every candidate, so
// that a change in the machine's speed during the run (other VMs on the host
// come and go) hits every candidate alike, and ratios are taken within a
// round. Then the profiles and, for the first size, the search walks.
func (b *bench) runSize(cands []candidate, d *dataset, first bool) {
	servers := make([]*server, len(cands))
	defer func() {
		for _, s := range servers {
			if s != nil {
				s.Stop()
			}
		}
	}()
	for i, c := range cands {
		servers[i] = b.startReady(c, d)
	}
	var mixes []mix
	for _, m := range d.mixes {
		if slices.Contains(strings.Split(*mixesFlag, ","), m.key) {
			mixes = append(mixes, m)
		}
	}
	time.Sleep(time.Second)
	for round := 1; round <= *rounds; round++ {
		for _, m := range mixes {
			for i, c := range cands {
				cl := b.measureClean(c, servers[i], d, m)
				cl.round = round
				b.rounds = append(b.rounds, cl)
				log.Printf("round %d, %s, %d hosts, mix %s: %.0f qps, p50 %s p99 %s, %s/query, RSS %.1f MiB, %s",
					round, c.title, d.n, m.key, cl.perf.qps, cl.p50, cl.p99, cl.cpu, cl.rss/(1<<20), cl.perf.rcodes)
			}
		}
	}
	for _, c := range cands {
		for _, m := range mixes {
			b.cells = append(b.cells, b.medianCell(c.key, d.n, m.key))
		}
	}
	for i, c := range cands {
		if *profile && (c.key == "meshdns-file" || c.key == "meshdns-k8s" || c.key == "hosts") {
			for _, m := range mixes {
				if err := b.profile(c, servers[i], d, m); err != nil {
					b.fail(c, servers[i], "profile: %v", err)
				}
			}
		}
		if first && c.key != "floor" {
			if err := b.walk(c, servers[i], d); err != nil {
				b.fail(c, servers[i], "search walk: %v", err)
			}
		}
	}
}

// startReady starts candidate c and returns once it answers every sampled
// host of d correctly.
func (b *bench) startReady(c candidate, d *dataset) *server {
	load := harness.LoadAvg()
	log.Printf("%s, %d hosts: load average %s; starting", c.title, d.n, load)
	s, err := b.start(c, d)
	if err != nil {
		b.r.Fatalf("%s: %v", c.title, err)
	}
	s.loadStart = load
	t0 := time.Now()
	last := d.svcs[len(d.svcs)-1]
	if err := waitAnswer(b.ctx, s.proc, s.addr, last.fqdn+".", last.ip.String(), 10*time.Minute); err != nil {
		s.Stop()
		b.fail(c, s, "%v", err)
	}
	log.Printf("%s: ready in %s", c.title, time.Since(t0).Round(time.Millisecond))
	if err := check(c, s.addr, d); err != nil {
		s.Stop()
		b.fail(c, s, "%v", err)
	}
	return s
}

func (b *bench) fail(c candidate, s *server, f string, a ...any) {
	if b.ctx.Err() != nil {
		b.r.Fatalf("interrupted")
	}
	b.r.Logf("%s: last lines of its log:\n%s", c.title, s.LogTail(30))
	b.r.Fatalf(c.title+": "+f, a...)
}

// measureClean measures mix m on s, again while other processes of the
// machine disturb it, up to -tries times, and returns the cleanest try.
func (b *bench) measureClean(c candidate, s *server, d *dataset, m mix) cell {
	var cl cell
	for try := 1; try <= *tries; try++ {
		x, err := b.measure(c, s, d, m)
		if err != nil {
			b.fail(c, s, "mix %s: %v", m.key, err)
		}
		if try == 1 || x.foreign < cl.foreign {
			cl = x
		}
		if cl.foreign <= *maxForeign {
			break
		}
		log.Printf("%s, %d hosts, mix %s: other processes used %.0f%% of a CPU (try %d of %d)",
			c.title, d.n, m.key, 100*x.foreign, try, *tries)
	}
	cl.loadStart = s.loadStart
	return cl
}

// medianCell is the round of candidate key, size n and mix m with the
// median QPS.
func (b *bench) medianCell(key string, n int, m string) cell {
	var rs []cell
	for _, c := range b.rounds {
		if c.cand.key == key && c.size == n && c.mix.key == m {
			rs = append(rs, c)
		}
	}
	slices.SortFunc(rs, func(x, y cell) int { return cmp.Compare(x.perf.qps, y.perf.qps) })
	return rs[(len(rs)-1)/2]
}

// ratioOf is the median over the rounds of candidate key's QPS ÷ peer's QPS
// in the same round, for size n and mix m; 0 when either was not measured.
func (b *bench) ratioOf(key, peer string, n int, m string) float64 {
	byRound := map[int]float64{}
	for _, c := range b.rounds {
		if c.cand.key == peer && c.size == n && c.mix.key == m {
			byRound[c.round] = c.perf.qps
		}
	}
	var rs []float64
	for _, c := range b.rounds {
		if c.cand.key == key && c.size == n && c.mix.key == m && byRound[c.round] > 0 {
			rs = append(rs, c.perf.qps/byRound[c.round])
		}
	}
	if len(rs) == 0 {
		return 0
	}
	slices.Sort(rs)
	if len(rs)%2 == 0 {
		return (rs[len(rs)/2-1] + rs[len(rs)/2]) / 2
	}
	return rs[len(rs)/2]
}

// check asks a sample of the table's hosts and fails on a wrong answer.
func check(c candidate, addr string, d *dataset) error {
	all := d.all()
	step := max(1, len(all)/300)
	n := 0
	for i := 0; i < len(all); i += step {
		h := all[i]
		name := h.fqdn
		if h.name == "" && !c.servesSE {
			continue
		}
		if h.wildcard {
			if c.key == "hosts" || c.key == "floor" || c.key == "coredns-floor" {
				continue // no wildcards in hosts(5)
			}
			name = "check." + strings.TrimPrefix(name, "*.")
		}
		r, err := ask(addr, name, dns.TypeA, 2*time.Second)
		if err != nil {
			return fmt.Errorf("check %s: %v", name, err)
		}
		if got := answers(r); !slices.Contains(got, h.ip.String()) {
			return fmt.Errorf("check %s: want %s, got %s %v", name, h.ip, dns.RcodeToString[r.Rcode], got)
		}
		n++
	}
	log.Printf("%s: %d sampled hosts answer correctly", c.title, n)
	return nil
}

// measure runs mix m against s: dnsperf for throughput (with the server's
// CPU time and the upstream's query count around it), then the latency
// client at a fixed rate.
func (b *bench) measure(c candidate, s *server, d *dataset, m mix) (cell, error) {
	cl := cell{size: d.n, mix: m, cand: c}
	if _, err := dnsperf(b.ctx, s.addr, m.path, *warmup); err != nil {
		return cl, err
	}
	up0, err := upstreamCount(b.upstream)
	if err != nil {
		return cl, err
	}
	cpu0, err := harness.CPUTime(s.Pid())
	if err != nil {
		return cl, err
	}
	upCPU0, err := harness.CPUTime(b.upProc.Pid())
	if err != nil {
		return cl, err
	}
	foreign0 := foreignCPU()
	t0 := time.Now()
	if cl.perf, err = dnsperf(b.ctx, s.addr, m.path, *duration); err != nil {
		return cl, err
	}
	wall := time.Since(t0)
	cpu1, err := harness.CPUTime(s.Pid())
	if err != nil {
		return cl, err
	}
	upCPU1, err := harness.CPUTime(b.upProc.Pid())
	if err != nil {
		return cl, err
	}
	cl.foreign = float64(foreignCPU()-foreign0) / float64(wall)
	cl.clientBusy = cl.perf.clientCPU + float64(upCPU1-upCPU0)/float64(wall)
	up1, err := upstreamCount(b.upstream)
	if err != nil {
		return cl, err
	}
	cl.cpu = (cpu1 - cpu0) / time.Duration(cl.perf.completed)
	cl.upPer1k = float64(up1-up0) * 1000 / float64(cl.perf.completed)
	if cl.rss, err = harness.ProcStatus(s.Pid(), "VmRSS"); err != nil {
		return cl, err
	}
	cl.p50, cl.p99, cl.latLost, err = latency(s.addr, m.qs, *rate, *latTime)
	return cl, err
}

// profile takes a 5 s CPU profile of s (a CoreDNS candidate) under mix m,
// keeps it in the output directory and writes its top functions next to it.
func (b *bench) profile(c candidate, s *server, d *dataset, m mix) error {
	base := filepath.Join(*outDir, fmt.Sprintf("profile-%s-%s-%s", c.key, sizeLabel(d.n), m.key))
	errc := make(chan error, 1)
	go func() {
		_, err := dnsperf(b.ctx, s.addr, m.path, 8*time.Second)
		errc <- err
	}()
	time.Sleep(time.Second)
	err := harness.Download("http://"+s.pprof+"/debug/pprof/profile?seconds=5", base+".pprof")
	if err2 := <-errc; err == nil {
		err = err2
	}
	if err != nil {
		return err
	}
	out := fmt.Appendf(nil, "CPU profile of %s, %d hosts, mix %s, under dnsperf at full load (%s)\n",
		c.title, d.n, m.title, filepath.Base(base)+".pprof")
	for _, args := range [][]string{{"-top", "-flat"}, {"-top", "-cum"}, {"-peek", `runtime\.newstack$`}} {
		top, err := exec.Command("go", append(append([]string{"tool", "pprof", "-nodecount=35"}, args...), base+".pprof")...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("go tool pprof: %v\n%s", err, top)
		}
		out = append(fmt.Appendf(out, "\n### go tool pprof %s\n\n", strings.Join(args, " ")), top...)
	}
	b.profiles = append(b.profiles, filepath.Base(base)+".txt")
	if frame, ok := pluginFrames[c.key]; ok {
		x, err := profileBreakdown(base+".pprof", frame)
		if err != nil {
			return err
		}
		x.cand, x.n, x.mix = c, d.n, m.key
		b.breakdowns = append(b.breakdowns, x)
	}
	return os.WriteFile(base+".txt", out, 0o644)
}

// walkResult is the search-walk measurement of one candidate and kind of
// lookup.
type walkResult struct {
	cand              candidate
	kind              string
	lookups, notFound int
	queries, upstream float64 // per lookup
	p50, p99          time.Duration
}

// walk resolves lookups of several kinds the way a pod's glibc does, one at
// a time, with the upstream answering after -upstream-rtt, and counts the
// queries sent and those reaching the upstream.
func (b *bench) walk(c candidate, s *server, d *dataset) error {
	if err := setUpstreamDelay(b.upstream, *rtt); err != nil {
		return err
	}
	defer setUpstreamDelay(b.upstream, 0)
	rng := rand.New(rand.NewPCG(7, 7)) // the same names for every candidate
	for _, k := range []kind{externalName, shortOtherNS, seHostName, shortSameNS} {
		up0, err := upstreamCount(b.upstream)
		if err != nil {
			return err
		}
		w := walkResult{cand: c, kind: kindTitle(k), lookups: *ndotsN}
		var times []time.Duration
		queries := 0
		for i := range *ndotsN {
			name := d.lookupName(rng, k, 1_000_000+i)
			t0 := time.Now()
			q, found, err := resolve(s.addr, name)
			if err != nil {
				return fmt.Errorf("%s: %v", name, err)
			}
			times = append(times, time.Since(t0))
			queries += q
			if found == "" {
				w.notFound++
			}
		}
		up1, err := upstreamCount(b.upstream)
		if err != nil {
			return err
		}
		slices.Sort(times)
		w.p50, w.p99 = harness.Percentile(times, 50), harness.Percentile(times, 99)
		w.queries = float64(queries) / float64(*ndotsN)
		w.upstream = float64(up1-up0) / float64(*ndotsN)
		b.walks = append(b.walks, w)
		log.Printf("%s: %s: %.1f queries, %.1f upstream per lookup, p50 %s", c.title, w.kind, w.queries, w.upstream, w.p50)
	}
	return nil
}

func kindTitle(k kind) string {
	for _, x := range kinds {
		if x.k == k {
			return x.title
		}
	}
	return "?"
}
