// Command memory shows where bin/meshdns's resident memory goes: it builds
// CoreDNS up to bin/meshdns a step at a time (bench/memory/steps), runs each
// build on the same table of hosts under the same queries, and reports the
// resident memory of each, split into the pages of the binary (RssFile) and
// the process's own (RssAnon), with what each step adds. bin/meshdns and
// bin/coredns are measured beside them.
//
// Run it from test/: go run ./bench/memory
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/meshdns/meshdns/test/harness"
)

var (
	hosts  = flag.Int("hosts", 1000, "hosts in the table")
	rounds = flag.Int("rounds", 3, "runs of each build; the median is reported")
	binDir = flag.String("bin", "../bin", "directory of meshdns and coredns")
)

// step is one build: the tags of bench/memory/steps, or a binary of bin/.
type step struct {
	title, tags, binary string
	meshdns             bool // serves the table with meshdns, else with hosts
}

var steps = []step{
	{title: "CoreDNS bind+hosts (the floor)"},
	{title: "+ forward, prometheus", tags: "forward"},
	{title: "+ meshdns, file source", tags: "forward meshdns", meshdns: true},
	{title: "+ cache, errors, health, log, loop, ready, reload", tags: "forward meshdns plugins", meshdns: true},
	{title: "+ rewrite, template", tags: "forward meshdns plugins rewrite", meshdns: true},
	{title: "+ xds source", tags: "forward meshdns plugins rewrite xds", meshdns: true},
	{title: "bin/meshdns", binary: "meshdns", meshdns: true},
	{title: "bin/coredns (every plugin, every source)", binary: "coredns", meshdns: true},
}

// rss is a process's resident memory, in KiB.
type rss struct{ total, anon, file int }

func main() {
	flag.Parse()
	r := &harness.Runner{Prefix: "meshdns-memory-"}
	defer r.Teardown()
	r.InterruptOnSignal(nil)
	dir := r.TempDir()
	table, hostsFile, names := writeTable(r, dir, *hosts)

	fmt.Printf("| build | RSS MiB | binary's pages (RssFile) | own (RssAnon) | step adds |\n|---|---|---|---|---|\n")
	prev := 0.0
	for i, s := range steps {
		bin := filepath.Join(*binDir, s.binary)
		if s.binary == "" {
			bin = filepath.Join(dir, fmt.Sprintf("step%d", i))
			cmd := exec.Command("go", "build", "-tags", s.tags, "-o", bin, "./bench/memory/steps")
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				r.Fatalf("build %s: %v\n%s", s.title, err, out)
			}
		}
		var runs []rss
		for range *rounds {
			runs = append(runs, measure(r, dir, bin, s, table, hostsFile, names))
		}
		slices.SortFunc(runs, func(a, b rss) int { return a.total - b.total })
		m := runs[len(runs)/2]
		mib := func(kib int) float64 { return float64(kib) / 1024 }
		adds := ""
		if i > 0 && s.binary == "" {
			adds = fmt.Sprintf("%+.1f", mib(m.total)-prev)
		}
		if s.binary == "" {
			prev = mib(m.total)
		}
		fmt.Printf("| %s | %.1f | %.1f | %.1f | %s |\n", s.title, mib(m.total), mib(m.file), mib(m.anon), adds)
	}
}

// measure runs bin with the table, asks every name for A and AAAA five
// times, and reads its resident memory a second later.
func measure(r *harness.Runner, dir, bin string, s step, table, hostsFile string, names []string) rss {
	port := harness.FreeDNSPort(r, "127.0.0.1")
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	block := fmt.Sprintf("hosts %s {\n\t\treload 0\n\t}", hostsFile)
	if s.meshdns {
		block = fmt.Sprintf("meshdns {\n\t\tfile %s reload 0\n\t\tauthoritative cluster.local\n\t}", table)
	}
	conf := filepath.Join(dir, "Corefile")
	if err := os.WriteFile(conf, fmt.Appendf(nil, ".:%d {\n\tbind 127.0.0.1\n\t%s\n}\n", port, block), 0o644); err != nil {
		r.Fatalf("%v", err)
	}
	p, err := harness.StartProcess(filepath.Base(bin), []string{bin, "-conf", conf}, []string{"GOMAXPROCS=1"}, filepath.Join(dir, "log"))
	if err != nil {
		r.Fatalf("%v", err)
	}
	defer p.Stop()
	c := &dns.Client{Timeout: time.Second}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		m := new(dns.Msg)
		if _, _, err := c.Exchange(m.SetQuestion(names[0], dns.TypeA), addr); err == nil {
			break
		}
		if time.Now().After(deadline) || p.Exited() {
			r.Fatalf("%s does not answer on %s:\n%s", bin, addr, p.LogTail(20))
		}
	}
	for range 5 {
		for _, n := range names {
			for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
				m := new(dns.Msg)
				if _, _, err := c.Exchange(m.SetQuestion(n, qt), addr); err != nil {
					r.Fatalf("%s %s: %v", bin, n, err)
				}
			}
		}
	}
	time.Sleep(time.Second)
	return readRSS(r, p.Pid())
}

// writeTable writes n hosts as a meshdns name table and as a hosts file.
func writeTable(r *harness.Runner, dir string, n int) (table, hostsFile string, names []string) {
	var js, hs strings.Builder
	js.WriteString(`{"table": {`)
	for i := range n {
		host := fmt.Sprintf("svc-%d.ns-%d.svc.cluster.local", i, i%50)
		ip := fmt.Sprintf("10.96.%d.%d", i/250, i%250+1)
		if i > 0 {
			js.WriteString(",")
		}
		fmt.Fprintf(&js, "\n%q: {\"ips\": [%q], \"registry\": \"Kubernetes\", \"ports\": [{\"name\": \"http\", \"port\": 80}]}", host, ip)
		fmt.Fprintf(&hs, "%s %s\n", ip, host)
		names = append(names, host+".")
	}
	js.WriteString("\n}}\n")
	table, hostsFile = filepath.Join(dir, "table.json"), filepath.Join(dir, "hosts")
	if err := os.WriteFile(table, []byte(js.String()), 0o644); err != nil {
		r.Fatalf("%v", err)
	}
	if err := os.WriteFile(hostsFile, []byte(hs.String()), 0o644); err != nil {
		r.Fatalf("%v", err)
	}
	return table, hostsFile, names
}

// readRSS reads VmRSS, RssAnon and RssFile of pid.
func readRSS(r *harness.Runner, pid int) rss {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		r.Fatalf("%v", err)
	}
	var out rss
	for line := range strings.SplitSeq(string(data), "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		kib, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(val), " kB"))
		switch key {
		case "VmRSS":
			out.total = kib
		case "RssAnon":
			out.anon = kib
		case "RssFile":
			out.file = kib
		}
	}
	if out.total == 0 {
		log.Printf("no VmRSS for pid %d", pid)
	}
	return out
}
