package conformance

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// Entries that can never be served are skipped one by one at load, counted
// in coredns_meshdns_rejected_total, and the rest of the table serves. Each
// file gets a server of its own, so a server that refuses to start on one
// of them does not hide what the other shows.

const (
	rejectedFile = "testdata/rejected.json"
	invalidFile  = "testdata/invalid-names.json"
	// longHost leaves room for no endpoint label of 63 octets: such an
	// endpoint's name would be 255 characters, over the 253 a name can have.
	longHost = "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee." +
		"fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff." +
		"ggggggggggggggggggggggggggggggggggggggggggggg.svc.cluster.local."
)

func bookinfo(name string) string { return name + ".bookinfo.svc.cluster.local." }

// TestRejectedChainsAndEndpoints: an ExternalName loop, a chain deeper than
// 8, and an endpoint whose name would be too long. Within one full state
// every entry on a circle is refused (cname_loop) and an entry leading into
// one is served, its chain ending at the circle; of a chain, the head whose
// own chain is over 8 CNAMEs is refused (cname_depth) and the shorter
// chains behind it are served.
func TestRejectedChainsAndEndpoints(t *testing.T) {
	t.Parallel()
	s := startServer(t, rejectedFile, nil)
	checkRejected(t, s, rejectedFile, map[string]string{"cname_loop": "2", "cname_depth": "1", "invalid_endpoint": "1"},
		"loop-a.bookinfo", "loop-b.bookinfo", "deep-1.bookinfo", strings.Repeat("h", 63))

	nx := want{rcode: dns.RcodeNameError, ns: list(soa(clusterLocal))}
	// deep-2 -> ... -> deep-9 -> reviews is 8 CNAMEs: not deeper than 8.
	var chain []string
	for i := 2; i <= 9; i++ {
		next := bookinfo(fmt.Sprintf("deep-%d", i+1))
		if i == 9 {
			next = reviews
		}
		chain = append(chain, cname(bookinfo(fmt.Sprintf("deep-%d", i)), next))
	}
	chain = append(chain, a(reviews, "10.96.1.11"))
	for _, c := range []tcase{
		{name: "the rest of the table serves", q: query{name: reviews, qtype: dns.TypeA},
			want: want{answer: list(a(reviews, "10.96.1.11"))}},
		{name: "RFC 6604 §2: loop-a, in the loop loop-a -> loop-b -> loop-a, is not served", q: query{name: bookinfo("loop-a"), qtype: dns.TypeA}, want: nx},
		{name: "RFC 6604 §2: loop-b, in the same loop, is not served", q: query{name: bookinfo("loop-b"), qtype: dns.TypeA}, want: nx},
		{name: "RFC 6604 §2, RFC 2308 §2.1: into-loop, leading into the loop, is served: its CNAME to loop-a, then NXDOMAIN",
			q:    query{name: bookinfo("into-loop"), qtype: dns.TypeA},
			want: with(nx, func(w *want) { w.answer = list(cname(bookinfo("into-loop"), bookinfo("loop-a"))) })},
		{name: "RFC 6604 §2: deep-1, 9 CNAMEs from an address, is not served", q: query{name: bookinfo("deep-1"), qtype: dns.TypeA}, want: nx},
		{name: "RFC 6604 §2: deep-2, 8 CNAMEs from an address, is served to the end of its chain",
			q: query{name: bookinfo("deep-2"), qtype: dns.TypeA}, want: want{answer: chain}},
		{name: "RFC 1035 §2.3.4: the endpoint with a name that fits is served", q: query{name: "ok-0." + longHost, qtype: dns.TypeA},
			want: want{answer: list(a("ok-0."+longHost, "10.244.9.2"))}},
		{name: "RFC 1035 §2.3.4: SRV of the host names only the endpoint whose name fits", q: query{name: longHost, qtype: dns.TypeSRV},
			want: want{answer: list(srv(longHost, 80, "ok-0."+longHost))}},
	} {
		s.run(t, c)
	}
}

// TestRejectedNames: hosts whose names are no DNS names (a label over 63
// octets, an empty label, over 253 characters), a target that is none, and
// a port name that is no label.
func TestRejectedNames(t *testing.T) {
	t.Parallel()
	s := startServer(t, invalidFile, nil)
	checkRejected(t, s, invalidFile, map[string]string{"invalid_host": "3", "invalid_target": "1", "invalid_port": "1"},
		strings.Repeat("l", 64), "empty..bookinfo", strings.Repeat("n", 50), "badtarget.bookinfo", "badport.bookinfo")
	for _, c := range []tcase{
		{name: "the rest of the table serves", q: query{name: reviews, qtype: dns.TypeA},
			want: want{answer: list(a(reviews, "10.96.1.11"))}},
		{name: "RFC 1035 §2.3.4: an ExternalName whose target has a label over 63 octets is not served",
			q: query{name: bookinfo("badtarget"), qtype: dns.TypeA}, want: want{rcode: dns.RcodeNameError, ns: list(soa(clusterLocal))}},
	} {
		s.run(t, c)
	}
}

// checkRejected checks coredns_meshdns_rejected_total of file's source by
// reason, and that the log names each skipped entry.
func checkRejected(t *testing.T, s *server, file string, want map[string]string, skipped ...string) {
	t.Helper()
	abs, err := filepath.Abs(file)
	if err != nil {
		t.Fatal(err)
	}
	for reason, n := range want {
		metric := fmt.Sprintf(`coredns_meshdns_rejected_total{reason=%q,source="file:%s"}`, reason, abs)
		if got := s.dns.Metric(metric); got != n {
			t.Errorf("%s = %q, want %s", metric, got, n)
		}
	}
	log := s.dns.Log(200)
	for _, name := range skipped {
		if !strings.Contains(log, name) {
			t.Errorf("no log line names the skipped entry %s", name)
		}
	}
}
