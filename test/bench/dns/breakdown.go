package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// breakdown splits a CPU profile of a CoreDNS candidate into what the plugin
// under test decides and what every plugin in the server pays alike.
type breakdown struct {
	cand   candidate
	n      int
	mix    string
	kernel float64 // share of samples in system calls: the sockets
	own    float64 // in the plugin's ServeDNS, sending excluded: lookup, building and packing the reply
	server float64 // the rest: reading and unpacking, the server and its goroutine per query, sending, GC
}

// pluginFrames names the ServeDNS of each profiled candidate's plugin.
var pluginFrames = map[string]string{
	"meshdns-file": "github.com/meshdns/meshdns/plugin/meshdns.(*MeshDNS).ServeDNS",
	"meshdns-k8s":  "github.com/meshdns/meshdns/plugin/meshdns.(*MeshDNS).ServeDNS",
	"hosts":        "github.com/coredns/coredns/plugin/hosts.Hosts.ServeDNS",
}

// profileBreakdown reads the stacks of a CPU profile with go tool pprof
// -traces and sorts each sample into kernel, own or server.
func profileBreakdown(path, pluginFrame string) (breakdown, error) {
	out, err := exec.Command("go", "tool", "pprof", "-traces", path).Output()
	if err != nil {
		return breakdown{}, fmt.Errorf("go tool pprof -traces %s: %v", path, err)
	}
	var kernel, own, total time.Duration
	account := func(v time.Duration, frames []string) {
		total += v
		var inPlugin, inSend, inSyscall bool
		for _, f := range frames {
			inPlugin = inPlugin || f == pluginFrame
			// The datagram as bytes to the socket: the same for every plugin.
			inSend = inSend || f == "github.com/miekg/dns.(*response).Write"
			inSyscall = inSyscall || strings.Contains(f, "Syscall")
		}
		switch {
		case inSyscall:
			kernel += v
		case inPlugin && !inSend:
			own += v
		}
	}
	var (
		value  time.Duration
		frames []string
	)
	s := bufio.NewScanner(bytes.NewReader(out))
	for s.Scan() {
		line := s.Text()
		if strings.HasPrefix(line, "-----------+") {
			if frames != nil {
				account(value, frames)
			}
			value, frames = 0, []string{}
			continue
		}
		if frames == nil { // the header
			continue
		}
		fields := strings.Fields(line)
		switch {
		case len(fields) == 0 || strings.HasSuffix(fields[0], ":"): // labels
		case len(frames) == 0 && len(fields) >= 2:
			d, err := time.ParseDuration(fields[0])
			if err != nil {
				return breakdown{}, fmt.Errorf("%s: sample line %q", path, line)
			}
			value = d
			frames = append(frames, fields[1])
		default:
			frames = append(frames, fields[0])
		}
	}
	if len(frames) > 0 {
		account(value, frames)
	}
	if total == 0 {
		return breakdown{}, fmt.Errorf("%s: no samples", path)
	}
	t := float64(total)
	return breakdown{kernel: float64(kernel) / t, own: float64(own) / t, server: float64(total-kernel-own) / t}, nil
}

// reportBreakdowns writes where each profiled candidate's CPU goes, and the
// QPS it would reach if its plugin's own work cost nothing: no plugin in
// this server can do better than that.
func (b *bench) reportBreakdowns(p func(string, ...any)) {
	if len(b.breakdowns) == 0 {
		return
	}
	p("## Where the CPU goes, and the most any plugin could gain\n\n")
	p("From the CPU profiles below (`go tool pprof -traces`, every sample sorted by its stack). *Kernel*: samples in a system call, ")
	p("i.e. receiving and sending the datagrams (on this VM most of it is `sendmsg`, which also wakes the client on the other CPU). ")
	p("*Plugin*: samples under the plugin's `ServeDNS` but not in sending the bytes: the lookup, building the reply, and for a ")
	p("`dns.Msg` reply the server's Scrub and Pack, which meshdns skips for A/AAAA hits. *Server*: everything else, the same for ")
	p("every plugin: reading and unpacking the query, CoreDNS's server and the goroutine miekg/dns starts per query, handing ")
	p("the bytes to the socket, the garbage collector. *If free*: the QPS of the run ÷ (1 − plugin share), what this candidate would reach if its plugin took no time ")
	p("at all; no CoreDNS plugin can beat it on this server, and the ratios to hosts and Istio in the same row say how far a ")
	p("target is from that bound.\n\n")
	p("| hosts | mix | candidate | kernel | server | plugin | QPS | if free | if free ×hosts | if free ×Istio |\n")
	p("| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, x := range b.breakdowns {
		c := b.find(x.cand.key, x.n, x.mix)
		if c == nil {
			continue
		}
		free := c.perf.qps / (1 - x.own)
		ratio := func(peer string) string {
			if o := b.find(peer, x.n, x.mix); o != nil && o.perf.qps > 0 {
				return fmt.Sprintf("%.2f", free/o.perf.qps)
			}
			return "–"
		}
		p("| %s | %s | %s | %.0f%% | %.0f%% | %.1f%% | %.0f | %.0f | %s | %s |\n", sizeLabel(x.n), x.mix, x.cand.title,
			100*x.kernel, 100*x.server, 100*x.own, c.perf.qps, free, ratio("hosts"), ratio("istio"))
	}
	p("\n")
}
