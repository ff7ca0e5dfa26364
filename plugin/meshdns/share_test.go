package meshdns

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func TestSearchExpansion(t *testing.T) {
	s := newSiblings([]string{"bookinfo.svc.cluster.local", "*.svc.cluster.local", "corp.internal."})
	for _, tc := range []struct {
		qname string
		want  bool
	}{
		{"www.example.com.corp.internal.", true},
		{"a.b.corp.internal.", true},
		{"db.corp.internal.", false}, // a short name: what search domains are for
		{"corp.internal.", false},
		{"www.example.com.", false},
		{"www.example.com.bookinfo.svc.cluster.local.", true},
		{"www.example.com.other.svc.cluster.local.", false}, // "*." entries are not shared
		{"www.example.com.xcorp.internal.", false},
	} {
		if got := s.expansion(tc.qname); got != tc.want {
			t.Errorf("%s: expansion = %v, want %v", tc.qname, got, tc.want)
		}
	}
	if newSiblings(defaultSearch("cluster.local", "")).expansion("www.example.com.") {
		t.Error("a name outside every search domain is an expansion")
	}
}

// slowUpstream is a resolver that answers after delay and counts the
// questions it gets: names under "exists." have an A record, all else is
// NXDOMAIN with an SOA.
type slowUpstream struct {
	delay time.Duration
	mu    sync.Mutex
	asked map[string]int // "name/type"
}

func (u *slowUpstream) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	q := r.Question[0]
	u.mu.Lock()
	u.asked[q.Name+"/"+dns.TypeToString[q.Qtype]]++
	u.mu.Unlock()
	time.Sleep(u.delay)
	m := new(dns.Msg)
	m.SetReply(r)
	m.RecursionAvailable = true
	switch {
	case !strings.Contains(q.Name, ".exists."):
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{&dns.SOA{Hdr: dns.RR_Header{Name: "corp.internal.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 60},
			Ns: "ns.corp.internal.", Mbox: "hostmaster.corp.internal.", Serial: 1, Refresh: 7200, Retry: 1800, Expire: 86400, Minttl: 60}}
	case q.Qtype == dns.TypeA:
		m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, 1)}}
	}
	w.WriteMsg(m)
}

func (u *slowUpstream) count(name string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.asked[name+"/A"] + u.asked[name+"/AAAA"]
}

// startSlowUpstream serves a slowUpstream on UDP until the test ends.
func startSlowUpstream(t *testing.T, delay time.Duration) (*slowUpstream, server) {
	t.Helper()
	up := &slowUpstream{delay: delay, asked: map[string]int{}}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	us := &dns.Server{PacketConn: pc, Handler: up}
	go us.ActivateAndServe()
	t.Cleanup(func() { us.Shutdown() })
	return up, server{udp: pc.LocalAddr().String()}
}

// TestSharedNXDomain sends A and AAAA at once, as glibc does, through a real
// server with forward to a slow upstream, and counts what reaches the
// upstream.
func TestSharedNXDomain(t *testing.T) {
	up, upAddr := startSlowUpstream(t, 300*time.Millisecond)
	block := `meshdns {
		file ` + meshPath + `
		namespace bookinfo
		search bookinfo.svc.cluster.local svc.cluster.local cluster.local corp.internal
		authoritative cluster.local
		fallthrough
	}`
	s := startMesh(t, block, upAddr)

	for _, tc := range []struct {
		name     string
		upstream int // questions that reach the upstream
		nxdomain bool
	}{
		{"www.example.com.corp.internal.", 1, true},
		{"www.exists.com.corp.internal.", 2, false}, // it exists: AAAA must still be asked
		{"db.corp.internal.", 2, true},              // a short name: not shared
		{"www.example.com.", 2, true},               // not a search expansion
	} {
		t.Run(tc.name, func(t *testing.T) {
			transports(t, func(t *testing.T, network string) {
				first, rest, _ := strings.Cut(tc.name, ".")
				name := first + "-" + network + "." + rest // a fresh name per transport
				before, passedBefore := resultTotal(t, "shared_nxdomain"), resultTotal(t, "fallthrough")
				var wg sync.WaitGroup
				replies, errs := make([]*dns.Msg, 2), make([]error, 2)
				for i, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
					wg.Go(func() {
						req := new(dns.Msg)
						req.SetQuestion(name, qtype)
						c := &dns.Client{Net: network, Timeout: 5 * time.Second}
						replies[i], _, errs[i] = c.Exchange(req, s.addr(network))
					})
				}
				wg.Wait()
				for _, err := range errs {
					if err != nil {
						t.Fatal(err)
					}
				}
				if got := up.count(name); got != tc.upstream {
					t.Errorf("%s: %d questions reached the upstream, want %d", name, got, tc.upstream)
				}
				for _, r := range replies {
					if nx := r.Rcode == dns.RcodeNameError; nx != tc.nxdomain {
						t.Errorf("%s %s: rcode %s", name, dns.TypeToString[r.Question[0].Qtype], dns.RcodeToString[r.Rcode])
					}
					if r.Rcode == dns.RcodeNameError && (len(r.Ns) != 1 || r.Ns[0].Header().Name != "corp.internal.") {
						t.Errorf("%s %s: authority %v, want the upstream's SOA", name, dns.TypeToString[r.Question[0].Qtype], r.Ns)
					}
					if r.Question[0].Name != name {
						t.Errorf("question %s, want %s", r.Question[0].Name, name)
					}
				}
				// Each query is counted once: passed on, or answered from its sibling.
				shared, passed := resultTotal(t, "shared_nxdomain")-before, resultTotal(t, "fallthrough")-passedBefore
				if want := float64(2 - tc.upstream); shared != want || passed != 2-want {
					t.Errorf("%s: counted %v shared_nxdomain and %v fallthrough, want %v and %v", name, shared, passed, want, 2-want)
				}
			})
		})
	}
}

// resultTotal sums the request counter of result over every server.
func resultTotal(t *testing.T, result string) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 64)
	go func() { requests.Collect(ch); close(ch) }()
	var sum float64
	for m := range ch {
		var pb dto.Metric
		if err := m.Write(&pb); err != nil {
			t.Fatal(err)
		}
		for _, l := range pb.GetLabel() {
			if l.GetName() == "result" && l.GetValue() == result {
				sum += pb.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// With max_fallthrough N, the query past N passed on at once is refused at
// once; mesh names are answered meanwhile, and the bound frees up as the
// upstream answers.
func TestMaxFallthrough(t *testing.T) {
	_, upAddr := startSlowUpstream(t, time.Second)
	s := startMesh(t, "meshdns {\n\tfile "+meshPath+"\n\tfallthrough\n\tmax_fallthrough 2\n}", upAddr)
	ask := func(name string) (*dns.Msg, time.Duration) {
		req := new(dns.Msg)
		req.SetQuestion(name, dns.TypeA)
		c := &dns.Client{Net: "udp", Timeout: 5 * time.Second}
		r, rtt, err := c.Exchange(req, s.udp)
		if err != nil {
			t.Error(err)
			return new(dns.Msg), rtt
		}
		return r, rtt
	}
	before := resultTotal(t, "limited")
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() { ask(fmt.Sprintf("w%d.exists.example.", i)) })
	}
	time.Sleep(200 * time.Millisecond) // both are upstream now
	if r, rtt := ask("w2.exists.example."); r.Rcode != dns.RcodeRefused || rtt > 500*time.Millisecond {
		t.Errorf("third query passed on: %s after %s, want REFUSED at once", dns.RcodeToString[r.Rcode], rtt)
	}
	if r, _ := ask("reviews.bookinfo.svc.cluster.local."); r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
		t.Errorf("a mesh name while the bound is reached: %v", r)
	}
	wg.Wait()
	if r, _ := ask("w3.exists.example."); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Errorf("after the upstream answered: %s %v, want the A record", dns.RcodeToString[r.Rcode], r.Answer)
	}
	if got := resultTotal(t, "limited") - before; got != 1 {
		t.Errorf("limited counted %v times, want 1", got)
	}
}
