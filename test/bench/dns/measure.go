package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/meshdns/meshdns/test/harness"
)

// perf is what one dnsperf run reports.
type perf struct {
	completed, lost int
	qps             float64
	rcodes          string  // "NOERROR 62%, NXDOMAIN 38%"
	clientCPU       float64 // dnsperf's CPU time ÷ wall time
}

var (
	reCompleted = regexp.MustCompile(`Queries completed:\s+(\d+)`)
	reLost      = regexp.MustCompile(`Queries lost:\s+(\d+)`)
	reQPS       = regexp.MustCompile(`Queries per second:\s+([\d.]+)`)
	reRcodes    = regexp.MustCompile(`Response codes:\s+(.*)`)
	reRcode     = regexp.MustCompile(`([A-Z]+) \d+ \(([\d.]+)%\)`)
)

// dnsperf runs dnsperf on clientCPU against addr for d with the queries of
// path, at most 100 outstanding.
func dnsperf(ctx context.Context, addr, path string, d time.Duration) (perf, error) {
	host, port, _ := net.SplitHostPort(addr)
	argv := pinned(clientCPU, "dnsperf", "-s", host, "-p", port, "-d", path, "-l", strconv.Itoa(int(d.Seconds())),
		"-c", "4", "-q", "100", "-t", "2")
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	begin := time.Now()
	out, err := cmd.CombinedOutput()
	wall := time.Since(begin)
	if err != nil {
		return perf{}, fmt.Errorf("dnsperf: %v\n%s", err, out)
	}
	s := string(out)
	var p perf
	if m := reCompleted.FindStringSubmatch(s); m != nil {
		p.completed, _ = strconv.Atoi(m[1])
	}
	if m := reLost.FindStringSubmatch(s); m != nil {
		p.lost, _ = strconv.Atoi(m[1])
	}
	if m := reQPS.FindStringSubmatch(s); m != nil {
		p.qps, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := reRcodes.FindStringSubmatch(s); m != nil {
		var parts []string
		for _, rc := range reRcode.FindAllStringSubmatch(m[1], -1) {
			pct, _ := strconv.ParseFloat(rc[2], 64)
			parts = append(parts, fmt.Sprintf("%s %.0f%%", rc[1], pct))
		}
		p.rcodes = strings.Join(parts, ", ")
	}
	if p.completed == 0 || p.qps == 0 {
		return p, fmt.Errorf("dnsperf: no result in its output:\n%s", s)
	}
	if u := cmd.ProcessState; u != nil {
		p.clientCPU = float64(u.UserTime()+u.SystemTime()) / float64(wall)
	}
	return p, nil
}

type question struct {
	name  string
	qtype uint16
}

// readMix reads a dnsperf input file.
func readMix(path string) ([]question, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var qs []question
	s := bufio.NewScanner(f)
	for s.Scan() {
		name, typ, _ := strings.Cut(s.Text(), " ")
		qs = append(qs, question{dns.Fqdn(name), dns.StringToType[typ]})
	}
	return qs, s.Err()
}

// latency sends the mix's queries in order at a fixed rate for d from one
// UDP socket and returns the round-trip times' p50 and p99 and the number
// of queries without an answer within a second.
func latency(addr string, qs []question, rate int, d time.Duration) (p50, p99 time.Duration, lost int, err error) {
	n := min(int(float64(rate)*d.Seconds()), 65536)
	if n == 0 || len(qs) == 0 {
		return 0, 0, 0, errors.New("latency: nothing to send")
	}
	conn, err := net.Dial("udp", addr)
	if err != nil {
		return 0, 0, 0, err
	}
	defer conn.Close()
	sent := make([]atomic.Int64, n) // ns since begin; 0: not sent
	rtts := make([]time.Duration, 0, n)
	var wg sync.WaitGroup
	begin := time.Now()
	wg.Go(func() {
		buf := make([]byte, 65535)
		seen := make([]bool, n)
		for len(rtts) < n {
			k, err := conn.Read(buf)
			if err != nil {
				return // the deadline: the rest are lost
			}
			at := time.Since(begin)
			if k < 2 {
				continue
			}
			id := int(buf[0])<<8 | int(buf[1])
			if id < n && !seen[id] && sent[id].Load() != 0 {
				seen[id] = true
				rtts = append(rtts, at-time.Duration(sent[id].Load()))
			}
		}
	})
	interval := time.Second / time.Duration(rate)
	m := new(dns.Msg)
	for i := range n {
		q := qs[i%len(qs)]
		m.SetQuestion(q.name, q.qtype)
		m.Id = uint16(i)
		wire, err := m.Pack()
		if err != nil {
			return 0, 0, 0, err
		}
		if wait := time.Duration(i)*interval - time.Since(begin); wait > 0 {
			time.Sleep(wait)
		}
		sent[i].Store(max(int64(time.Since(begin)), 1))
		if _, err := conn.Write(wire); err != nil {
			return 0, 0, 0, err
		}
	}
	conn.SetReadDeadline(time.Now().Add(time.Second))
	wg.Wait()
	if len(rtts) == 0 {
		return 0, 0, n, errors.New("latency: no answers")
	}
	slices.Sort(rtts)
	return harness.Percentile(rtts, 50), harness.Percentile(rtts, 99), n - len(rtts), nil
}

// ask sends one query and returns the answer.
func ask(addr, name string, qtype uint16, timeout time.Duration) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	c := &dns.Client{Net: "udp", Timeout: timeout, UDPSize: 65535}
	r, _, err := c.Exchange(m, addr)
	return r, err
}

// answers returns the addresses in an answer.
func answers(r *dns.Msg) []string {
	var out []string
	for _, rr := range r.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, rr.A.String())
		case *dns.AAAA:
			out = append(out, rr.AAAA.String())
		}
	}
	return out
}

// waitAnswer polls name until it answers ip, p exits or limit passes.
func waitAnswer(ctx context.Context, p *proc, addr, name, ip string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	last := "no answer"
	for {
		r, err := ask(addr, name, dns.TypeA, 200*time.Millisecond)
		switch {
		case err != nil:
			last = err.Error()
		case slices.Contains(answers(r), ip):
			return nil
		default:
			last = fmt.Sprintf("%s %v", dns.RcodeToString[r.Rcode], answers(r))
		}
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case p.Exited():
			return fmt.Errorf("%s exited: %v", p.Name(), p.Err())
		case time.Now().After(deadline):
			return fmt.Errorf("%s: no answer %s after %s; last: %s", name, ip, limit, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// upstreamCount is how many queries the upstream has answered.
func upstreamCount(addr string) (int, error) {
	r, err := ask(addr, countName, dns.TypeTXT, time.Second)
	if err != nil {
		return 0, err
	}
	if len(r.Answer) != 1 {
		return 0, fmt.Errorf("upstream count: %v", r)
	}
	return strconv.Atoi(r.Answer[0].(*dns.TXT).Txt[0])
}

// setUpstreamDelay makes the upstream wait d before each answer.
func setUpstreamDelay(addr string, d time.Duration) error {
	r, err := ask(addr, fmt.Sprintf("delay.%d%s", d.Microseconds(), delaySuffix), dns.TypeA, time.Second)
	if err == nil && r.Rcode != dns.RcodeSuccess {
		err = fmt.Errorf("upstream delay: %s", dns.RcodeToString[r.Rcode])
	}
	return err
}

// resolve is glibc's getaddrinfo(AF_UNSPEC) for name with the pod's
// resolv.conf: for each step of the search walk, A and AAAA in parallel;
// done at the first step where either has an answer (NXDOMAIN and NODATA
// both go on). It returns the queries sent and the address found.
func resolve(addr, name string) (queries int, found string, err error) {
	for _, step := range searchWalk(name) {
		var rs [2]*dns.Msg
		var errs [2]error
		var wg sync.WaitGroup
		for i, t := range []uint16{dns.TypeA, dns.TypeAAAA} {
			wg.Go(func() { rs[i], errs[i] = ask(addr, step, t, 2*time.Second) })
		}
		wg.Wait()
		queries += 2
		if err := errors.Join(errs[:]...); err != nil {
			return queries, "", err
		}
		for _, r := range rs {
			if a := answers(r); r.Rcode == dns.RcodeSuccess && len(a) > 0 {
				return queries, a[0], nil
			}
		}
	}
	return queries, "", nil
}
