package main

import (
	"fmt"
	"log"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/meshdns/meshdns/plugin/source/xds/nds"
	"github.com/meshdns/meshdns/test/harness"
)

const (
	serverCPU    = 0               // bin/coredns
	clientCPU    = 1               // this program: the fake ADS server
	memSettle    = 2 * time.Second // from a push's ACK to reading its peak
	settleWindow = 15 * time.Second
	settleMax    = 2 * time.Minute
	sampleEvery  = 50 * time.Millisecond
)

// The pushes of the memory measurement, in order, on one connection.
var memPushNames = []string{
	"full table into an empty table",
	"whole table again, one host changed (istiod's push after a change)",
	"whole table again, every address changed (the table replaced)",
}

// memPush is bin/coredns's memory through one push.
type memPush struct {
	before float64       // RSS settled before the push
	peak   float64       // VmHWM from just before the push until memSettle after its ACK (or a higher VmRSS sample)
	after  float64       // RSS settled after the push, once every host answered
	ack    time.Duration // send → ACK
	peakAt time.Duration // the highest VmRSS sample, from the send
}

// memoryResult is the memory measurement of n hosts.
type memoryResult struct {
	n, bytes int
	empty    float64 // RSS settled before the first push: the process with an empty table
	heap     float64 // live heap after the pushes (allocated bytes right after a forced GC)
	pushes   []memPush
}

// pushMemory runs bin/coredns with an xds source against the fake server,
// alone on serverCPU with GOMAXPROCS=1 (this program moves to clientCPU),
// and measures its RSS through three pushes of n hosts on one connection:
// the peak (VmHWM, reset before each push with 5 > /proc/PID/clear_refs,
// read memSettle after the ACK, before any query) against the RSS settled
// before and after (moved less than 1 MiB in settleWindow). The RSS settles
// after every host was asked for and answered its addresses: the queries'
// garbage makes the GCs that a serving process has, which bring the heap
// back to about twice the live heap. The process logs its GCs
// (GODEBUG=gctrace=1); the program logs those of each push.
func pushMemory(r *harness.Runner, f *fakeADS, n int) memoryResult {
	if err := harness.SetAffinity(os.Getpid(), clientCPU); err != nil {
		r.Fatalf("pin this program: %v", err)
	}
	ports := harness.FreePorts(r, 3)
	addr := "127.0.0.1:" + strconv.Itoa(ports[0])
	metrics := "127.0.0.1:" + strconv.Itoa(ports[1])
	pprofAddr := "127.0.0.1:" + strconv.Itoa(ports[2])
	dir := r.TempDir()
	corefile := filepath.Join(dir, "Corefile")
	text := fmt.Sprintf(".:%d {\n\tbind 127.0.0.1\n\tprometheus %s\n\tpprof %s\n\tmeshdns {\n\t\txds %s {\n\t\t\tinsecure\n\t\t\tnode_ip 10.0.0.5\n\t\t\tworkload bench\n\t\t\tnamespace bench\n\t\t}\n\t}\n}\n",
		ports[0], metrics, pprofAddr, f.addr)
	if err := os.WriteFile(corefile, []byte(text), 0o644); err != nil {
		r.Fatalf("%v", err)
	}
	argv := []string{"taskset", "-c", strconv.Itoa(serverCPU), harness.CoreDNSBinary(r), "-conf", corefile}
	p, err := harness.StartProcess("coredns", argv, []string{"GOMAXPROCS=1", "GODEBUG=gctrace=1"}, filepath.Join(dir, "coredns.log"))
	if err != nil {
		r.Fatalf("%v", err)
	}
	r.Cleanup(p.Stop)
	fail := func(format string, a ...any) {
		r.Logf("bin/coredns: Corefile:\n%s\nlast lines of its log:\n%s", text, p.LogTail(30))
		r.Fatalf("memory: "+format, a...)
	}
	pid := p.Pid()
	st, err := f.next(30 * time.Second)
	if err != nil {
		fail("%v", err)
	}
	defer st.close()

	res := memoryResult{n: n}
	if res.empty, err = harness.SettledRSS(pid, settleWindow, settleMax); err != nil {
		fail("%v", err)
	}
	log.Printf("memory: bin/coredns subscribed; RSS settled at %s with an empty table", harness.MiB(res.empty))
	before := res.empty
	for k, name := range memPushNames {
		var nt *nds.NameTable
		switch k {
		case 0:
			nt = nameTable(n, -1)
		case 1:
			nt = nameTable(n, n/2)
		default:
			nt = renumbered(nameTable(n, -1))
		}
		pu, err := st.prepare(nt)
		if err != nil {
			fail("prepare: %v", err)
		}
		res.bytes = pu.bytes
		if *profileDir != "" {
			// Without a GC: the base of the diff of allocations with the
			// profile after the push.
			if err := harness.Download("http://"+pprofAddr+"/debug/pprof/heap", filepath.Join(*profileDir, fmt.Sprintf("coredns.push%d-before.heap.pb.gz", k+1))); err != nil {
				fail("heap profile: %v", err)
			}
		}
		logFrom := len(p.LogLines())
		if err := harness.ResetPeakRSS(pid); err != nil {
			fail("%v", err)
		}
		smp := harness.StartSampler(pid, sampleEvery)
		sent, acked, err := st.send(pu)
		if err != nil {
			fail("push %d of %d hosts: %v", k+1, n, err)
		}
		m := memPush{before: before, ack: acked.Sub(sent)}
		// The peak before any query: the push's alone.
		time.Sleep(memSettle)
		hwm, err := harness.ProcStatus(pid, "VmHWM")
		if err != nil {
			fail("%v", err)
		}
		samples := smp.Stop()
		var top float64
		for _, x := range samples {
			if x.RSS > top {
				top, m.peakAt = x.RSS, x.At-sent.Sub(smp.Begin)
			}
		}
		// The kernel's RSS counters are per CPU and read approximately: a
		// sample may be a little above VmHWM. More means the reset or the
		// reading is wrong.
		if top > hwm+1<<20 {
			fail("VmRSS was %s, above VmHWM %s: the peak was not measured", harness.MiB(top), harness.MiB(hwm))
		}
		m.peak = max(hwm, top)
		log.Printf("memory: push %d (%s), %s: ACK after %s; peak RSS %s (VmHWM %s, VmRSS highest %s %s after the send, %s at the end)",
			k+1, name, size(pu.bytes), ms(m.ack), harness.MiB(m.peak), harness.MiB(hwm), harness.MiB(top), secs(m.peakAt), harness.MiB(samples[len(samples)-1].RSS))
		var gcs []string
		for _, l := range p.LogLines()[logFrom:] {
			if strings.HasPrefix(l, "gc ") {
				gcs = append(gcs, l)
			}
		}
		log.Printf("memory: push %d: the GCs of bin/coredns from the send to the peak's reading (gctrace: heap MB at start -> at end -> live, goal):\n%s", k+1, strings.Join(gcs, "\n"))
		if *profileDir != "" {
			if err := harness.Download("http://"+pprofAddr+"/debug/pprof/heap", filepath.Join(*profileDir, fmt.Sprintf("coredns.push%d-after.heap.pb.gz", k+1))); err != nil {
				fail("heap profile: %v", err)
			}
		}

		if wrong := checkTable(addr, nt); len(wrong) > 0 {
			fail("after push %d, %d of %d hosts answer wrong, e.g. %s", k+1, len(wrong), n, strings.Join(wrong[:min(5, len(wrong))], "; "))
		}
		if m.after, err = harness.SettledRSS(pid, settleWindow, settleMax); err != nil {
			fail("%v", err)
		}
		log.Printf("memory: push %d: all %d hosts answer right; RSS settled at %s: peak %.3f× that, %.3f× the %s settled before",
			k+1, n, harness.MiB(m.after), m.peak/m.after, m.peak/before, harness.MiB(before))
		res.pushes = append(res.pushes, m)
		before = m.after
	}
	if err := harness.Download("http://"+pprofAddr+"/debug/pprof/heap?gc=1", ""); err != nil {
		fail("%v", err)
	}
	if res.heap, err = harness.Metric("http://"+metrics+"/metrics", "go_memstats_heap_alloc_bytes"); err != nil {
		fail("%v", err)
	}
	log.Printf("memory: live heap after the pushes %s", harness.MiB(res.heap))
	if *profileDir != "" {
		log.Printf("memory: heap profiles before and after each push in %s (go tool pprof -sample_index=alloc_space -diff_base coredns.pushN-before.heap.pb.gz coredns.pushN-after.heap.pb.gz)", *profileDir)
	}
	p.Stop()
	return res
}

// memoryTable is the Markdown table of the memory measurement, with the
// target.
func memoryTable(m memoryResult) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "bin/coredns with an xds source, %d hosts (push of %s); RSS settled with an empty table %s; live heap after the pushes %s.\n\n",
		m.n, size(m.bytes), harness.MiB(m.empty), harness.MiB(m.heap))
	sb.WriteString("| push | send → ACK | RSS settled before | peak RSS | RSS peak at (from the send) | RSS settled after | peak ÷ settled after | peak ÷ settled before |\n")
	sb.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for k, p := range m.pushes {
		fmt.Fprintf(&sb, "| %s | %s | %s | %s | %s | %s | %.3f× | %.3f× |\n", memPushNames[k], ms(p.ack), harness.MiB(p.before), harness.MiB(p.peak),
			secs(p.peakAt), harness.MiB(p.after), p.peak/p.after, p.peak/p.before)
	}
	var verdicts []string
	for k, p := range m.pushes {
		verdict := "met"
		if p.peak > 1.5*p.after {
			verdict = "**missed**"
		}
		verdicts = append(verdicts, fmt.Sprintf("push %d %.3f×, %s", k+1, p.peak/p.after, verdict))
	}
	fmt.Fprintf(&sb, "\nTarget: peak ≤ 1.5× the RSS settled after the push: %s.\n", strings.Join(verdicts, "; "))
	return sb.String()
}

// renumbered gives every host of nt another address: the Kubernetes hosts'
// 10.x.y.z become 10.(x+64).y.z, the ServiceEntry hosts' 240.240.y.z
// 240.241.y.z.
func renumbered(nt *nds.NameTable) *nds.NameTable {
	for _, info := range nt.Table {
		for i, ip := range info.Ips {
			f := strings.Split(ip, ".")
			if f[0] == "10" {
				x, _ := strconv.Atoi(f[1])
				f[1] = strconv.Itoa(x + 64)
			} else {
				f[1] = "241"
			}
			info.Ips[i] = strings.Join(f, ".")
		}
	}
	return nt
}

// checkTable asks addr for the A records of every host of nt, over one
// UDP socket, and returns the wrong answers.
func checkTable(addr string, nt *nds.NameTable) []string {
	c := &dns.Client{Timeout: time.Second}
	conn, err := c.Dial(addr)
	if err != nil {
		return []string{err.Error()}
	}
	defer conn.Close()
	var wrong []string
	for host, info := range nt.Table {
		m := new(dns.Msg)
		m.SetQuestion(host+".", dns.TypeA)
		resp, _, err := c.ExchangeWithConn(m, conn)
		var got []string
		if err == nil {
			for _, rr := range resp.Answer {
				if a, ok := rr.(*dns.A); ok {
					got = append(got, a.A.String())
				}
			}
		}
		want := slices.Sorted(slices.Values(info.Ips))
		slices.Sort(got)
		if err != nil || resp.Rcode != dns.RcodeSuccess || !slices.Equal(got, want) {
			wrong = append(wrong, fmt.Sprintf("%s: want %v, got %v %v", host, want, got, err))
		}
	}
	return wrong
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }
