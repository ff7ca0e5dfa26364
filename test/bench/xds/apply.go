package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/meshdns/meshdns/plugin/source"
	"github.com/meshdns/meshdns/plugin/source/xds"
	"github.com/meshdns/meshdns/plugin/table"
	"github.com/meshdns/meshdns/test/harness"
)

// The three pushes of an apply round, in order.
const (
	pushFull = iota // n hosts into an empty table
	pushSame        // the same n hosts again (istiod pushes the whole table on every change)
	pushOne         // the same n hosts, one of them with another address
	nPushes
)

var pushNames = [nPushes]string{"full table into an empty table", "same table again (no change)", "one host changed"}

// timing is one push: sent → ACK received always; in process also sent →
// the table's Replace called (gRPC transfer and decoding, conversion to
// entries) and the Replace itself (the diff and the table update).
type timing struct {
	ack, decode, apply time.Duration
}

// applyResult is the median of the rounds of one push of one size.
type applyResult struct {
	n, bytes int
	med      timing
	min      timing
}

// recSink is the xds source's sink over a table, timing each Replace.
type recSink struct {
	t  *table.Table
	id table.SourceID
	ev chan applied
}

type applied struct {
	start, end time.Time
	res        table.Result
}

func (s *recSink) Replace(es []table.Entry, skipped []source.Rejection) {
	for _, r := range skipped {
		s.Reject(r.Object, r.Reason, r.Err)
	}
	start := time.Now()
	res := s.t.Replace(s.id, es)
	s.ev <- applied{start: start, end: time.Now(), res: res}
}

func (s *recSink) Apply(upserts []table.Entry, deletes []string) { s.t.Apply(s.id, upserts, deletes) }
func (s *recSink) Reject(object, reason string, err error) {
	fmt.Fprintf(os.Stderr, "rejected %s (%s): %v\n", object, reason, err)
}
func (s *recSink) Synced() {}
func (s *recSink) Up(bool) {}

// check verifies what a push did to the table.
func check(k, n int, res table.Result) error {
	want := map[int]table.Result{
		pushFull: {Added: n},
		pushSame: {Unchanged: n},
		pushOne:  {Changed: 1, Unchanged: n - 1},
	}[k]
	if res.Added != want.Added || res.Changed != want.Changed || res.Deleted != want.Deleted ||
		res.Unchanged != want.Unchanged || len(res.Rejected) > 0 {
		return fmt.Errorf("%s of %d hosts: %+v, want %+v", pushNames[k], n, res, want)
	}
	return nil
}

// applyInProcess runs meshdns's xds source in this process against the fake
// server, into a table.Table, for rounds rounds of the three pushes, each
// round with a new table and a new connection.
func applyInProcess(r *harness.Runner, f *fakeADS, n, rounds int) [nPushes]applyResult {
	var samples [nPushes][]timing
	var bytes int
	for range rounds {
		tbl := table.New(table.Config{Domain: "cluster.local", Namespace: "bench", TTL: 30,
			Search: []string{"bench.svc.cluster.local", "*.svc.cluster.local", "svc.cluster.local", "cluster.local"}})
		sink := &recSink{t: tbl, id: tbl.AddSource("xds:" + f.addr), ev: make(chan applied, nPushes)}
		src := &xds.Source{Address: f.addr, NodeIP: "10.0.0.5", Workload: "bench", ClusterID: xds.DefaultCluster, Insecure: true}
		if err := src.Finish("cluster.local", "bench"); err != nil {
			r.Fatalf("xds source: %v", err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		if err := src.Start(ctx, sink); err != nil {
			r.Fatalf("xds source: %v", err)
		}
		st, err := f.next(10 * time.Second)
		if err != nil {
			r.Fatalf("%v", err)
		}
		for k := range nPushes {
			change := -1
			if k == pushOne {
				change = n / 2
			}
			p, err := st.prepare(nameTable(n, change))
			if err != nil {
				r.Fatalf("prepare: %v", err)
			}
			bytes = p.bytes
			runtime.GC()
			sent, acked, err := st.send(p)
			if err != nil {
				r.Fatalf("push of %d hosts: %v", n, err)
			}
			a := <-sink.ev
			if err := check(k, n, a.res); err != nil {
				r.Fatalf("%v", err)
			}
			samples[k] = append(samples[k], timing{ack: acked.Sub(sent), decode: a.start.Sub(sent), apply: a.end.Sub(a.start)})
		}
		host, ip := changedHost(n / 2)
		if m := tbl.Lookup(host); m.Kind != table.Hit || len(m.Record.A()) != 1 || m.Record.A()[0].(*dns.A).A.String() != ip {
			r.Fatalf("after the push, %s is %+v, want %s", host, m, ip)
		}
		cancel()
		st.close()
	}
	return summarize(n, bytes, samples)
}

// applyCoreDNS runs bin/coredns with an xds source against the fake server,
// a new process per round, and times each push from sending it to its ACK
// (which the source sends after applying the push).
func applyCoreDNS(r *harness.Runner, f *fakeADS, n, rounds int) [nPushes]applyResult {
	var samples [nPushes][]timing
	var bytes int
	for range rounds {
		c, stop := startCoreDNS(r, fmt.Sprintf("xds %s {\n insecure\n node_ip 10.0.0.5\n workload bench\n namespace bench\n}", f.addr))
		st, err := f.next(10 * time.Second)
		if err != nil {
			r.Fatalf("%v", err)
		}
		for k := range nPushes {
			change := -1
			if k == pushOne {
				change = n / 2
			}
			p, err := st.prepare(nameTable(n, change))
			if err != nil {
				r.Fatalf("prepare: %v", err)
			}
			bytes = p.bytes
			sent, acked, err := st.send(p)
			if err != nil {
				r.Fatalf("push of %d hosts to bin/coredns: %v", n, err)
			}
			samples[k] = append(samples[k], timing{ack: acked.Sub(sent)})
		}
		host, ip := changedHost(n / 2)
		if got := lookupA(c.Addr, host); got != ip {
			r.Fatalf("bin/coredns after the pushes: %s = %q, want %s", host, got, ip)
		}
		st.close()
		stop()
	}
	return summarize(n, bytes, samples)
}

func summarize(n, bytes int, samples [nPushes][]timing) [nPushes]applyResult {
	var out [nPushes]applyResult
	for k, ts := range samples {
		stat := func(f func(timing) time.Duration) (med, least time.Duration) {
			ds := make([]time.Duration, len(ts))
			for i, t := range ts {
				ds[i] = f(t)
			}
			slices.Sort(ds)
			return ds[len(ds)/2], ds[0]
		}
		out[k] = applyResult{n: n, bytes: bytes}
		out[k].med.ack, out[k].min.ack = stat(func(t timing) time.Duration { return t.ack })
		out[k].med.decode, out[k].min.decode = stat(func(t timing) time.Duration { return t.decode })
		out[k].med.apply, out[k].min.apply = stat(func(t timing) time.Duration { return t.apply })
	}
	return out
}

// startCoreDNS runs bin/coredns with a meshdns block of body, waiting only
// until it serves DNS (its source may be waiting for a push); stop ends it.
func startCoreDNS(r *harness.Runner, body string) (*harness.CoreDNS, func()) {
	ports := harness.FreePorts(r, 2)
	addr := "127.0.0.1:" + strconv.Itoa(ports[0])
	metrics := "127.0.0.1:" + strconv.Itoa(ports[1])
	dir := r.TempDir()
	corefile := filepath.Join(dir, "Corefile")
	text := fmt.Sprintf(".:%d {\n\tbind 127.0.0.1\n\tprometheus %s\n\tmeshdns {\n%s\n\t}\n}\n", ports[0], metrics, body)
	if err := os.WriteFile(corefile, []byte(text), 0o644); err != nil {
		r.Fatalf("%v", err)
	}
	c := harness.StartCoreDNSWith(r, harness.CoreDNSConfig{Corefile: corefile, Addr: addr, MetricsAddr: metrics})
	return c, c.Stop
}

// lookupA is the sorted A answer of name, or the rcode or error.
func lookupA(addr, name string) string {
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	resp, _, err := (&dns.Client{Timeout: time.Second}).Exchange(m, addr)
	if err != nil {
		return err.Error()
	}
	if resp.Rcode != dns.RcodeSuccess {
		return dns.RcodeToString[resp.Rcode]
	}
	var ips []string
	for _, rr := range resp.Answer {
		if a, ok := rr.(*dns.A); ok {
			ips = append(ips, a.A.String())
		}
	}
	slices.Sort(ips)
	if len(ips) == 0 {
		return "NODATA"
	}
	return strings.Join(ips, " ")
}
