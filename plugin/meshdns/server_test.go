package meshdns

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coredns/coredns/plugin/ready"
	"github.com/coredns/coredns/plugin/test"
	coretest "github.com/coredns/coredns/test"
	"github.com/miekg/dns"

	"github.com/meshdns/meshdns/plugin/source/file"
	"github.com/meshdns/meshdns/plugin/table"
)

// The ready plugin finds meshdns through this interface.
var _ ready.Readiness = (*MeshDNS)(nil)

// upstreamCorefile is the second server that meshdns's server forwards to: it
// knows www.example.org and api.example.com (with an address the mesh does not
// have), and answers NXDOMAIN with its own SOA for everything else, so
// every answer shows where it came from.
const upstreamCorefile = `.:0 {
	bind 127.0.0.1
	template IN A example.org {
		match "^www\.example\.org\.$"
		answer "{{ .Name }} 60 IN A 192.0.2.80"
		fallthrough
	}
	template IN AAAA example.org {
		match "^www\.example\.org\.$"
		answer "{{ .Name }} 60 IN AAAA 2001:db8::80"
		fallthrough
	}
	template IN A example.com {
		match "^api\.example\.com\.$"
		answer "{{ .Name }} 60 IN A 192.0.2.99"
		fallthrough
	}
	template ANY ANY {
		rcode NXDOMAIN
		authority ". 60 IN SOA upstream.test. hostmaster.upstream.test. 1 7200 1800 86400 60"
	}
}`

// upstreamCase is what a question forwarded to the upstream server gets.
func upstreamCase(q question) test.Case {
	tc := test.Case{Qname: q.name, Qtype: q.qtype, Authoritative: true}
	switch {
	case q.name == "www.example.org." && q.qtype == dns.TypeA:
		tc.Answer = []dns.RR{test.A("www.example.org. 60 IN A 192.0.2.80")}
	case q.name == "api.example.com." && q.qtype == dns.TypeA:
		tc.Answer = []dns.RR{test.A("api.example.com. 60 IN A 192.0.2.99")}
	default:
		tc.Rcode = dns.RcodeNameError
		tc.Ns = []dns.RR{test.SOA(". 60 IN SOA upstream.test. hostmaster.upstream.test. 1 7200 1800 86400 60")}
	}
	return tc
}

// server is a running in-process CoreDNS; UDP and TCP listen on different ports.
type server struct{ udp, tcp string }

func (s server) addr(network string) string {
	if network == "tcp" {
		return s.tcp
	}
	return s.udp
}

// startServer starts CoreDNS from a Corefile and stops it when the test ends.
func startServer(t testing.TB, corefile string) server {
	t.Helper()
	inst, udp, tcp, err := coretest.CoreDNSServerAndPorts(corefile)
	if err != nil {
		t.Fatalf("starting CoreDNS: %v\n%s", err, corefile)
	}
	t.Cleanup(func() {
		// Stop alone leaves the plugins' goroutines and listeners running.
		inst.ShutdownCallbacks()
		inst.Stop()
	})
	return server{udp: udp, tcp: tcp}
}

// startMesh starts a server with a meshdns block that forwards what meshdns
// hands on to upstream (over UDP whatever the client's transport, since
// upstream's UDP and TCP ports differ).
func startMesh(t testing.TB, block string, upstream server, extra ...string) server {
	t.Helper()
	return startServer(t, fmt.Sprintf(`.:0 {
	bind 127.0.0.1
	%s
	%s
	forward . %s {
		prefer_udp
	}
}`, strings.Join(extra, "\n\t"), block, upstream.udp))
}

// transports runs f as a subtest over UDP and over TCP.
func transports(t *testing.T, f func(t *testing.T, network string)) {
	t.Helper()
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) { f(t, network) })
	}
}

func exchange(t *testing.T, s server, network string, req *dns.Msg) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: network, Timeout: 5 * time.Second}
	resp, _, err := c.Exchange(req, s.addr(network))
	if err != nil {
		t.Fatalf("%s %v: %v", network, req.Question, err)
	}
	return resp
}

// wireCheck asks tc's question over UDP and TCP and checks both replies.
func wireCheck(t *testing.T, s server, tc test.Case) {
	t.Helper()
	transports(t, func(t *testing.T, network string) {
		if err := check(exchange(t, s, network, tc.Msg()), tc); err != nil {
			t.Error(err)
		}
	})
}

// Every behaviour of the suites, over the wire, with forward to a second server as the next plugin.
func TestWireAnswersSuites(t *testing.T) {
	upstream := startServer(t, upstreamCorefile)
	for _, s := range suites {
		t.Run(s.name, func(t *testing.T) {
			srv := startMesh(t, s.corefileBlock(), upstream)
			for _, tc := range s.cases {
				t.Run(caseName(tc), func(t *testing.T) { wireCheck(t, srv, tc) })
			}
			for _, q := range s.next {
				tc := upstreamCase(q)
				t.Run("next/"+caseName(tc), func(t *testing.T) { wireCheck(t, srv, tc) })
			}
			for _, tc := range s.wire {
				t.Run("wire/"+caseName(tc), func(t *testing.T) { wireCheck(t, srv, tc) })
			}
		})
	}
}

// A query with two questions never reaches meshdns: the DNS server
// library refuses it with FORMERR (ServeDNS answers only the first; see
// TestServeDNSFirstQuestionOnly).
func TestWireRefusesTwoQuestions(t *testing.T) {
	srv := startMesh(t, suiteBlock("namespace"), startServer(t, upstreamCorefile))
	transports(t, func(t *testing.T, network string) {
		req := new(dns.Msg).SetQuestion(reviews, dns.TypeA)
		req.Question = append(req.Question, dns.Question{Name: "api.example.com.", Qtype: dns.TypeA, Qclass: dns.ClassINET})
		if resp := exchange(t, srv, network, req); resp.Rcode != dns.RcodeFormatError || len(resp.Answer) != 0 {
			t.Errorf("rcode %s with %d answers, want FORMERR and none", dns.RcodeToString[resp.Rcode], len(resp.Answer))
		}
	})
}

// Address records are shuffled per query; the set is always complete.
func TestWireShuffle(t *testing.T) {
	srv := startMesh(t, suiteBlock("namespace"), startServer(t, upstreamCorefile))
	want := []string{"10.0.1.1", "10.0.1.2", "10.0.1.3", "10.0.1.4", "10.0.1.5", "10.0.1.6"}
	transports(t, func(t *testing.T, network string) {
		firsts := map[string]int{}
		for range 40 {
			resp := exchange(t, srv, network, new(dns.Msg).SetQuestion("pool.bookinfo.svc.cluster.local.", dns.TypeA))
			got := answerIPs(resp)
			if len(got) == 0 {
				t.Fatalf("empty answer: %v", resp)
			}
			firsts[got[0]]++
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Fatalf("answer %v, want every address of %v", got, want)
			}
		}
		if len(firsts) < 2 {
			t.Errorf("the first record never changed over 40 queries: %v", firsts)
		}
	})
}

// Truncation: a headless service with 100 endpoints does not fit in 512 bytes.
func TestWireTruncation(t *testing.T) {
	const host = "big.data.svc.cluster.local"
	e := table.Entry{Host: host, Registry: table.Kubernetes}
	var all []string
	for i := 1; i <= 100; i++ {
		ip := netip.AddrFrom4([4]byte{10, 2, byte(i / 256), byte(i % 256)})
		e.Addrs = append(e.Addrs, ip)
		e.Endpoints = append(e.Endpoints, table.Endpoint{Addr: ip})
		all = append(all, ip.String())
	}
	slices.Sort(all)
	data, err := file.Marshal([]table.Entry{e})
	if err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(t.TempDir(), "big.json")
	if err := os.WriteFile(big, data, 0o644); err != nil {
		t.Fatal(err)
	}
	srv := startMesh(t, fmt.Sprintf("meshdns {\n\t\tfile %s\n\t\tfile %s\n\t}", meshPath, big), startServer(t, upstreamCorefile))

	for _, tc := range []struct {
		name     string
		network  string
		bufsize  uint16 // 0: no EDNS0
		complete bool   // every record, no TC
	}{
		{"udp-truncated", "udp", 0, false},
		{"udp-edns0-4096-complete", "udp", 4096, true},
		{"tcp-complete", "tcp", 0, true},
		{"tcp-edns0-4096-complete", "tcp", 4096, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := new(dns.Msg).SetQuestion(host+".", dns.TypeA)
			if tc.bufsize > 0 {
				req.SetEdns0(tc.bufsize, false)
			}
			resp := exchange(t, srv, tc.network, req)
			if resp.Rcode != dns.RcodeSuccess || !resp.Authoritative {
				t.Fatalf("rcode %s AA %t, want NOERROR and AA", dns.RcodeToString[resp.Rcode], resp.Authoritative)
			}
			for _, rr := range resp.Answer {
				if rr.Header().Name != host+"." || rr.Header().Rrtype != dns.TypeA {
					t.Fatalf("unexpected record %v", rr)
				}
			}
			got := answerIPs(resp)
			slices.Sort(got)
			if resp.Truncated == tc.complete {
				t.Errorf("TC is %t, want %t", resp.Truncated, !tc.complete)
			}
			if tc.complete {
				if !slices.Equal(got, all) {
					t.Errorf("got %d records, want all %d", len(got), len(all))
				}
				if size := wireLen(t, resp); tc.network == "udp" && size <= dns.MinMsgSize {
					t.Errorf("reply of %d bytes with EDNS0 %d, want more than %d", size, tc.bufsize, dns.MinMsgSize)
				}
			} else {
				if len(got) == 0 || len(got) >= len(all) || !isSubset(got, all) {
					t.Errorf("got %d records %v, want some but not all of the %d", len(got), got, len(all))
				}
				if size := wireLen(t, resp); size > dns.MinMsgSize {
					t.Errorf("truncated reply is %d bytes, want at most %d", size, dns.MinMsgSize)
				}
			}
			if (tc.bufsize > 0) != (resp.IsEdns0() != nil) {
				t.Errorf("OPT in the reply: %v, want one only when the query had EDNS0", resp.IsEdns0())
			}
		})
	}
}

// wireLen is the size of resp packed with name compression, as servers send
// it (resp.Len() of a received message is the uncompressed size).
func wireLen(t *testing.T, resp *dns.Msg) int {
	t.Helper()
	m := resp.Copy()
	m.Compress = true
	buf, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return len(buf)
}

func isSubset(sub, all []string) bool {
	for _, s := range sub {
		if _, ok := slices.BinarySearch(all, s); !ok {
			return false
		}
	}
	return true
}

// freeAddr returns a loopback TCP address nobody listens on (for the ready
// and prometheus plugins, which need a fixed port).
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// eventually retries f for up to 5 s, then fails with its last error.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// The ready plugin reports OK once the sources have loaded.
func TestWireReady(t *testing.T) {
	addr := freeAddr(t)
	srv := startMesh(t, suiteBlock("plain"), startServer(t, upstreamCorefile), "ready "+addr)
	eventually(t, "GET /ready", func() error {
		resp, err := http.Get("http://" + addr + "/ready")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || string(body) != "OK" {
			return fmt.Errorf("status %d %q, want 200 OK", resp.StatusCode, body)
		}
		return nil
	})
	wireCheck(t, srv, hit(reviews, dns.TypeA, a(reviews, "10.0.0.10")))
}

// writeFile replaces path atomically, so the reloader never reads half a file.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// File reload: changes are served, a malformed file is rejected and
// counted while the last good table keeps serving, a good file is served again.
func TestWireFileReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mesh.json")
	const (
		svcA = "a.reload.svc.cluster.local."
		svcB = "b.reload.svc.cluster.local."
		svcC = "c.reload.svc.cluster.local."
	)
	writeFile(t, path, `{"table": {"a.reload.svc.cluster.local": {"registry": "Kubernetes", "ips": ["10.9.0.1"]}}}`)
	srv := startMesh(t, fmt.Sprintf("meshdns {\n\t\tfile %s reload 100ms\n\t}", path), startServer(t, upstreamCorefile))

	// served reports whether every case is answered as expected over UDP and TCP.
	served := func(cases ...test.Case) func() error {
		return func() error {
			for _, tc := range cases {
				for _, network := range []string{"udp", "tcp"} {
					if err := check(exchange(t, srv, network, tc.Msg()), tc); err != nil {
						return fmt.Errorf("%s %s: %w", network, caseName(tc), err)
					}
				}
			}
			return nil
		}
	}
	must := func(what string, f func() error) {
		t.Helper()
		if err := f(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	must("initial file", served(
		hit(svcA, dns.TypeA, a(svcA, "10.9.0.1")),
		nxdomain(svcB, dns.TypeA, soaCluster),
	))

	writeFile(t, path, `{"table": {
		"a.reload.svc.cluster.local": {"registry": "Kubernetes", "ips": ["10.9.0.2"]},
		"b.reload.svc.cluster.local": {"registry": "Kubernetes", "ips": ["10.9.0.3"]}}}`)
	good := served(
		hit(svcA, dns.TypeA, a(svcA, "10.9.0.2")),
		hit("b.reload.", dns.TypeA, a("b.reload.", "10.9.0.3")),
	)
	eventually(t, "changed file", good)

	before := counterValue(t, rejected, "file:"+path, "parse")
	writeFile(t, path, `{"table": {"a.reload.svc.cluster.local": {"ips": ["10.9.0.9"]`)
	eventually(t, "malformed file counted", func() error {
		if got := counterValue(t, rejected, "file:"+path, "parse"); got != before+1 {
			return fmt.Errorf(`rejected_total{reason="parse"} is %v, want %v`, got, before+1)
		}
		return nil
	})
	must("last good table after a malformed file", good)

	writeFile(t, path, `{"table": {"c.reload.svc.cluster.local": {"registry": "Kubernetes", "ips": ["10.9.0.4"]}}}`)
	eventually(t, "good file after a malformed one", served(
		hit(svcC, dns.TypeA, a(svcC, "10.9.0.4")),
		nxdomain(svcA, dns.TypeA, soaCluster),
		nxdomain(svcB, dns.TypeA, soaCluster),
	))
	if got := counterValue(t, rejected, "file:"+path, "parse"); got != before+1 {
		t.Errorf(`rejected_total{reason="parse"} is %v after a good file, want %v`, got, before+1)
	}
}

// Metrics on the prometheus plugin's endpoint: requests by result, and
// the table's size by source.
func TestWireMetrics(t *testing.T) {
	// A private copy of the mesh, so its source label is this test's alone.
	data, err := os.ReadFile(meshPath)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "mesh.json")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	metricsAddr := freeAddr(t)
	block := fmt.Sprintf(`meshdns {
		file %s
		authoritative cluster.local
		fallthrough
	}`, path)
	srv := startMesh(t, block, startServer(t, upstreamCorefile), "prometheus "+metricsAddr)
	// The server label is the listen address as configured: every server of
	// these tests has it, so only deltas count (the tests do not run in parallel).
	const server = "dns://127.0.0.1:0"

	var snap scraped
	eventually(t, "scrape", func() (err error) { snap, err = scrape(metricsAddr); return err })
	src := "file:" + path
	for _, g := range []struct {
		name   string
		labels []string
		want   float64
	}{
		// noaddr, with nothing to answer, is not served.
		{"coredns_meshdns_entries", []string{"source", src}, 13},
		// 7 Kubernetes hosts with 3 names each (no namespace: no bare
		// names), 4 endpoint names, 6 External hosts.
		{"coredns_meshdns_names", []string{"source", src}, 31},
		{"coredns_meshdns_updates_total", []string{"source", src, "op", "add"}, 13},
		{"coredns_meshdns_source_up", []string{"source", src}, 1},
	} {
		if got, ok := snap.get(g.name, g.labels...); !ok || got != g.want {
			t.Errorf("%s%q = %v (present %t), want %v", g.name, g.labels, got, ok, g.want)
		}
	}
	if got, _ := snap.get("coredns_meshdns_last_update_timestamp_seconds", "source", src); got < float64(time.Now().Add(-time.Hour).Unix()) {
		t.Errorf("last_update_timestamp_seconds = %v, want about now", got)
	}

	for _, tc := range []struct {
		result string
		q      question
	}{
		{"hit", question{reviews, dns.TypeA}},
		{"hit", question{arpa("10.0.0.10"), dns.TypePTR}},
		{"shortcut", question{"reviews.bookinfo.bookinfo.svc.cluster.local.", dns.TypeA}},
		{"wildcard", question{"foo.wild.example.com.", dns.TypeA}},
		{"nodata", question{details, dns.TypeAAAA}},
		{"nodata", question{"bookinfo.svc.cluster.local.", dns.TypeA}},
		{"nxdomain", question{"nope.bookinfo.svc.cluster.local.", dns.TypeA}},
		{"fallthrough", question{"www.example.org.", dns.TypeA}},
	} {
		t.Run(tc.result+"/"+caseName(test.Case{Qname: tc.q.name, Qtype: tc.q.qtype}), func(t *testing.T) {
			before, err := scrape(metricsAddr)
			if err != nil {
				t.Fatal(err)
			}
			transports(t, func(t *testing.T, network string) {
				exchange(t, srv, network, new(dns.Msg).SetQuestion(tc.q.name, tc.q.qtype))
			})
			after, err := scrape(metricsAddr)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range resultNames {
				want := 0.0
				if r == tc.result {
					want = 2 // once per transport
				}
				b, _ := before.get("coredns_meshdns_requests_total", "server", server, "result", r)
				a, _ := after.get("coredns_meshdns_requests_total", "server", server, "result", r)
				if a-b != want {
					t.Errorf("requests_total{server=%q,result=%q} went up by %v, want %v", server, r, a-b, want)
				}
			}
		})
	}
}

var (
	sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$`)
	labelPair  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)
)

// scraped is one scrape of a prometheus text exposition.
type scraped []sample

type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// scrape fetches the metrics the prometheus plugin serves at addr.
func scrape(addr string) (scraped, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	var out scraped
	for _, line := range strings.Split(string(body), "\n") {
		m := sampleLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			continue
		}
		s := sample{name: m[1], labels: map[string]string{}, value: v}
		for _, p := range labelPair.FindAllStringSubmatch(m[2], -1) {
			s.labels[p[1]] = p[2]
		}
		out = append(out, s)
	}
	return out, nil
}

// get returns the sample of name whose labels include the given name/value pairs.
func (ms scraped) get(name string, labels ...string) (float64, bool) {
	for _, s := range ms {
		if s.name != name {
			continue
		}
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			match = match && s.labels[labels[i]] == labels[i+1]
		}
		if match {
			return s.value, true
		}
	}
	return 0, false
}
