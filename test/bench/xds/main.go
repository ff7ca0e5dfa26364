// Command xds benchmarks meshdns's xds source (docs/benchmarks.md):
//
//   - apply time: an in-process fake ADS server (this program) sends
//     synthetic NDS NameTables of N hosts; meshdns's xds source runs in this
//     process (plugin/source/xds over a plugin/table.Table, with a sink that
//     times the table update) and, separately, inside bin/coredns. Three
//     pushes per round: the whole table into an empty table, the same table
//     again, and the table with one host changed. The fake server's
//     marshalling is done before the clock starts.
//   - push-to-answer delay: a real istiod (bin/pilot-discovery) watching a
//     real kube-apiserver and etcd (test/harness) with -background Services;
//     -creates Services are created one at a time and each is timed from the
//     return of its Create call to bin/coredns's first correct answer (UDP,
//     polled every millisecond) and to the first push that carries it, as
//     seen by a raw NDS client with the same node identity.
//   - memory through a push (-memory N hosts, last): bin/coredns alone on
//     CPU 0 with GOMAXPROCS=1, this program (the fake ADS server) on CPU 1;
//     three pushes of N hosts on one connection: the whole table into an
//     empty table, the whole table again with one host changed (what
//     istiod sends after a change), and the whole table again with every
//     address changed. For each, the peak RSS (VmHWM, reset before the push
//     by writing 5 to /proc/PID/clear_refs, read 2 s after the ACK, before
//     any query) against the RSS settled after it (every host asked for and
//     its answer checked, then VmRSS moved less than 1 MiB in 15 s).
//     -profiles DIR keeps heap profiles from before and after each push.
//
// Run it from test/: go run ./bench/xds [-sizes 1000,10000,100000] [-rounds 5] [-creates 100] [-background 1000] [-memory 100000]
// The memory measurement alone: go run ./bench/xds -sizes= -creates 0 -memory 100000
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/meshdns/meshdns/test/harness"
)

var (
	sizesFlag   = flag.String("sizes", "1000,10000,100000", "table sizes (hosts) of the apply benchmark (empty: skip it)")
	rounds      = flag.Int("rounds", 5, "rounds per size; the median is reported")
	withCoreDNS = flag.Bool("coredns", true, "also time the pushes (to the ACK) into bin/coredns")
	creates     = flag.Int("creates", 100, "Services created one at a time for the push-to-answer delay (0: skip)")
	background  = flag.Int("background", 1000, "Services in the mesh before the creates")
	cpuProfile  = flag.String("cpuprofile", "", "write a CPU profile of the in-process apply benchmark (the last size) to this file")
	memHosts    = flag.Int("memory", 100000, "hosts of the pushes whose peak RSS in bin/coredns is measured, after the rest (0: skip)")
	profileDir  = flag.String("profiles", "", "if set, save in this directory bin/coredns's heap profiles before and after each push of -memory")
)

func main() {
	flag.Parse()
	log.SetFlags(log.Ltime)
	r := &harness.Runner{Prefix: "meshdns-bench-xds-"}
	defer r.Teardown()
	r.InterruptOnSignal(nil)
	var sizes []int
	if *sizesFlag != "" {
		for f := range strings.SplitSeq(*sizesFlag, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 10 {
				r.Fatalf("-sizes: %q is not a size of at least 10", f)
			}
			sizes = append(sizes, n)
		}
	}
	if *rounds < 1 || *creates < 0 || *background < 1 || *memHosts < 0 || *memHosts > 0 && *memHosts < 10 {
		r.Fatalf("-rounds and -background must be positive, -creates not negative, -memory 0 or at least 10")
	}
	if *memHosts > 0 && runtime.NumCPU() < 2 {
		r.Fatalf("-memory needs 2 CPUs, have %d", runtime.NumCPU())
	}
	start, load := time.Now(), harness.LoadAvg()

	f, err := startFake()
	if err != nil {
		r.Fatalf("fake ADS server: %v", err)
	}
	r.Cleanup(f.stop)
	var inProc, inCoreDNS [][nPushes]applyResult
	for _, n := range sizes {
		log.Printf("apply, in process: %d hosts", n)
		if *cpuProfile != "" {
			pf, err := os.Create(*cpuProfile)
			if err != nil {
				r.Fatalf("%v", err)
			}
			if err := pprof.StartCPUProfile(pf); err != nil {
				r.Fatalf("%v", err)
			}
		}
		inProc = append(inProc, applyInProcess(r, f, n, *rounds))
		if *cpuProfile != "" {
			pprof.StopCPUProfile() // the last size's profile is kept
		}
		if *withCoreDNS {
			log.Printf("apply, bin/coredns: %d hosts", n)
			inCoreDNS = append(inCoreDNS, applyCoreDNS(r, f, n, *rounds))
		}
	}
	var ans answerResult
	if *creates > 0 {
		log.Printf("push to answer: real istiod, %d background services, %d creates", *background, *creates)
		ans = pushToAnswer(r, *background, *creates)
	}
	var mem memoryResult
	if *memHosts > 0 {
		log.Printf("memory: bin/coredns through pushes of %d hosts", *memHosts)
		mem = pushMemory(r, f, *memHosts)
	}

	if len(inProc) > 0 {
		fmt.Printf("\n### Applying a push (fake ADS server, synthetic tables)\n\n")
		fmt.Println("Median of", *rounds, "rounds (min in parentheses). *send → Replace*: from the fake server's send to the table's")
		fmt.Println("Replace being called (loopback gRPC transfer, proto decoding, conversion to entries); *Replace*: the diff against")
		fmt.Println("the source's previous state and the table update; *send → ACK*: the whole push as istiod sees it.")
		fmt.Println()
		fmt.Println("| hosts | push size | push | send → Replace | Replace | send → ACK (in process) | send → ACK (bin/coredns) |")
		fmt.Println("| ---: | ---: | --- | ---: | ---: | ---: | ---: |")
	}
	for i, rs := range inProc {
		for k, a := range rs {
			coredns := "–"
			if len(inCoreDNS) > i {
				c := inCoreDNS[i][k]
				coredns = fmt.Sprintf("%s (%s)", ms(c.med.ack), ms(c.min.ack))
			}
			fmt.Printf("| %d | %s | %s | %s (%s) | %s (%s) | %s (%s) | %s |\n", a.n, size(a.bytes), pushNames[k],
				ms(a.med.decode), ms(a.min.decode), ms(a.med.apply), ms(a.min.apply), ms(a.med.ack), ms(a.min.ack), coredns)
		}
	}
	if len(ans.lats) > 0 {
		var push, answer, share []time.Duration
		for _, l := range ans.lats {
			push, answer, share = append(push, l.push), append(answer, l.answer), append(share, l.answer-l.push)
		}
		fmt.Printf("\n### Push-to-answer delay (real istiod)\n\n")
		fmt.Printf("%d Services created one at a time in a mesh of %d (istiod's table for the node: %d hosts), istiod's default\n", *creates, *background, ans.hosts)
		fmt.Println("debounce (PILOT_DEBOUNCE_AFTER 100 ms, PILOT_DEBOUNCE_MAX 10 s). Timed from the return of each Create call.")
		fmt.Println()
		fmt.Println("| | p50 | p99 | max |")
		fmt.Println("| --- | ---: | ---: | ---: |")
		row := func(name string, ds []time.Duration) {
			if len(ds) == 0 {
				fmt.Printf("| %s | – | – | – |\n", name)
				return
			}
			p50, p99, mx := percentiles(ds)
			fmt.Printf("| %s | %s | %s | %s |\n", name, ms(p50), ms(p99), ms(mx))
		}
		row("create → push received (raw NDS client)", push)
		row("create → bin/coredns answers (1 ms polling)", answer)
		row("answer − push (meshdns's share)", share)
		row(fmt.Sprintf("istiod's debounce wait (its log, %d pushes)", len(ans.debounce)), ans.debounce)
	}
	if len(mem.pushes) > 0 {
		fmt.Printf("\n### Memory through a push (bin/coredns)\n\n")
		fmt.Print(memoryTable(mem))
		fmt.Printf("\nbin/coredns alone on CPU %d with GOMAXPROCS=1, the fake ADS server (this program) on CPU %d; the three pushes on one\n", serverCPU, clientCPU)
		fmt.Println("connection, in order. Peak RSS: VmHWM, reset just before the push (5 > /proc/PID/clear_refs), read 2 s after its ACK,")
		fmt.Println("before any query, or the highest VmRSS sample (every 50 ms) if higher; RSS peak at: that sample. Then every host is asked")
		fmt.Println("for its A records (one at a time, all checked); settled: VmRSS once it moved less than 1 MiB in 15 s after that (at most")
		fmt.Println("2 min); *settled before* a push is the settled RSS after the previous one. Live heap: allocated bytes right after a")
		fmt.Println("forced GC, after the last push.")
	}
	fmt.Printf("\n- command: `cd test && go run ./bench/xds %s` (effective: -sizes %s -rounds %d -coredns=%v -creates %d -background %d -memory %d)\n",
		strings.Join(os.Args[1:], " "), *sizesFlag, *rounds, *withCoreDNS, *creates, *background, *memHosts)
	fmt.Printf("- date: %s; %d × %s; GOMAXPROCS %d; load average at start %s, at end %s\n", start.UTC().Format(time.RFC3339),
		runtime.NumCPU(), harness.CPUModel(), runtime.GOMAXPROCS(0), load, harness.LoadAvg())
	fmt.Printf("- runtime: %s\n", time.Since(start).Round(time.Second))
}

func ms(d time.Duration) string {
	if d < 10*time.Millisecond {
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.1f ms", float64(d)/1e6)
}

func size(b int) string {
	if b >= 1<<20 {
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	}
	return fmt.Sprintf("%.0f KiB", float64(b)/(1<<10))
}
