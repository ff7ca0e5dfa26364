package table

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

var ip = netip.MustParseAddr

func testTable(t testing.TB, ns string) (*Table, SourceID) {
	t.Helper()
	tb := New(Config{
		Domain:    "cluster.local",
		Namespace: ns,
		Search:    []string{"*.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.example"},
		TTL:       30,
	})
	src := tb.AddSource("test")
	res := tb.Apply(src, []Entry{
		{Host: "reviews.bookinfo.svc.cluster.local", Registry: Kubernetes, Addrs: []netip.Addr{ip("10.96.0.10")},
			Ports: []Port{{Name: "http", Number: 9080, Protocol: TCP}}},
		{Host: "dual.bookinfo.svc.cluster.local", Registry: Kubernetes, Addrs: []netip.Addr{ip("fd00::10"), ip("10.96.0.11")}},
		{Host: "db.data.svc.cluster.local", Registry: Kubernetes, Addrs: []netip.Addr{ip("10.1.0.5"), ip("10.1.0.6"), ip("10.1.0.7")},
			Ports:     []Port{{Name: "pg", Number: 5432, Protocol: TCP}},
			Endpoints: []Endpoint{{Hostname: "db-0", Addr: ip("10.1.0.5")}, {Hostname: "db-1", Addr: ip("10.1.0.6")}, {Addr: ip("10.1.0.7")}}},
		{Host: "ext.bookinfo.svc.cluster.local", Registry: Kubernetes, Target: "example.org."},
		{Host: "api.example.com", Registry: External, Addrs: []netip.Addr{ip("240.240.0.1")}},
		{Host: "*.wild.example.com", Registry: External, Addrs: []netip.Addr{ip("240.240.0.2")}},
		{Host: "*.deep.wild.example.com", Registry: External, Addrs: []netip.Addr{ip("240.240.0.3")}},
		{Host: "exact.wild.example.com", Registry: External, Addrs: []netip.Addr{ip("240.240.0.4")}},
		{Host: "se.bookinfo.svc.cluster.local", Registry: External, Addrs: []netip.Addr{ip("240.240.0.5")}},
	}, nil)
	if len(res.Rejected) > 0 || res.Added != 9 {
		t.Fatalf("setup: %+v", res)
	}
	return tb, src
}

func TestLookup(t *testing.T) {
	tests := []struct {
		ns, q string
		kind  Kind
		owner string // the matched record's owner
		cut   int
	}{
		{"", "reviews.bookinfo.svc.cluster.local.", Hit, "reviews.bookinfo.svc.cluster.local.", 0},
		{"", "reviews.bookinfo.", Hit, "reviews.bookinfo.svc.cluster.local.", 0},
		{"", "reviews.bookinfo.svc.", Hit, "reviews.bookinfo.svc.cluster.local.", 0},
		{"", "reviews.", Miss, "", 0},
		{"bookinfo", "reviews.", Hit, "reviews.bookinfo.svc.cluster.local.", 0},
		{"other", "reviews.", Miss, "", 0},
		// ServiceEntries get no short names, even under the cluster domain.
		{"", "se.bookinfo.", Miss, "", 0},
		{"", "se.bookinfo.svc.cluster.local.", Hit, "se.bookinfo.svc.cluster.local.", 0},
		{"", "db-0.db.data.svc.cluster.local.", Hit, "db-0.db.data.svc.cluster.local.", 0},
		{"", "10-1-0-7.db.data.svc.cluster.local.", Hit, "10-1-0-7.db.data.svc.cluster.local.", 0},
		{"", "db-9.db.data.svc.cluster.local.", Miss, "", 0},
		{"", "api.example.com.", Hit, "api.example.com.", 0},
		{"", "a.wild.example.com.", Wildcard, "*.wild.example.com.", 0},
		{"", "a.b.c.wild.example.com.", Wildcard, "*.wild.example.com.", 0},
		{"", "x.deep.wild.example.com.", Wildcard, "*.deep.wild.example.com.", 0},
		{"", "exact.wild.example.com.", Hit, "exact.wild.example.com.", 0},
		{"", "wild.example.com.", Empty, "", 0},
		{"", "example.com.", Empty, "", 0},
		// Search-domain shortcuts: every domain, any namespace.
		{"", "reviews.bookinfo.default.svc.cluster.local.", Shortcut, "reviews.bookinfo.svc.cluster.local.", len("reviews.bookinfo.")},
		{"", "reviews.bookinfo.svc.cluster.local.default.svc.cluster.local.", Shortcut, "reviews.bookinfo.svc.cluster.local.", len("reviews.bookinfo.svc.cluster.local.")},
		{"", "reviews.bookinfo.cluster.local.", Shortcut, "reviews.bookinfo.svc.cluster.local.", len("reviews.bookinfo.")},
		{"", "api.example.com.default.svc.cluster.local.", Shortcut, "api.example.com.", len("api.example.com.")},
		{"", "api.example.com.corp.example.", Shortcut, "api.example.com.", len("api.example.com.")},
		{"", "a.wild.example.com.ns1.svc.cluster.local.", Shortcut, "*.wild.example.com.", len("a.wild.example.com.")},
		// A bare name under "<ns>.svc" is that namespace's service, not ours.
		{"bookinfo", "reviews.default.svc.cluster.local.", Miss, "", 0},
		{"bookinfo", "reviews.bookinfo.svc.cluster.local.", Hit, "reviews.bookinfo.svc.cluster.local.", 0},
		{"bookinfo", "reviews.corp.example.", Shortcut, "reviews.bookinfo.svc.cluster.local.", len("reviews.")},
		{"", "bookinfo.svc.cluster.local.", Empty, "", 0},
		{"", "svc.cluster.local.", Empty, "", 0},
		// Parents of short names are empty non-terminals too.
		{"", "bookinfo.", Empty, "", 0},
		{"", "bookinfo.svc.", Empty, "", 0},
		{"", "nope.", Miss, "", 0},
		{"", "nope.svc.", Miss, "", 0},
		{"", "nope.bookinfo.svc.cluster.local.", Miss, "", 0},
		{"", "www.google.com.", Miss, "", 0},
		{"", "www.google.com.default.svc.cluster.local.", Miss, "", 0},
		{"", "_http._tcp.reviews.bookinfo.svc.cluster.local.", Hit, "reviews.bookinfo.svc.cluster.local.", 0},
		{"", "_http._tcp.reviews.bookinfo.", Hit, "reviews.bookinfo.svc.cluster.local.", 0},
		{"", "_http._udp.reviews.bookinfo.svc.cluster.local.", Miss, "", 0},
		{"", "_grpc._tcp.reviews.bookinfo.svc.cluster.local.", Miss, "", 0},
		{"", ".", Miss, "", 0},
	}
	tables := map[string]*Table{}
	for _, tc := range tests {
		t.Run(tc.ns+"/"+tc.q, func(t *testing.T) {
			tb, ok := tables[tc.ns]
			if !ok {
				tb, _ = testTable(t, tc.ns)
				tables[tc.ns] = tb
			}
			m := tb.Lookup(tc.q)
			if m.Kind != tc.kind {
				t.Fatalf("kind = %v, want %v", m.Kind, tc.kind)
			}
			owner := ""
			if m.Record != nil {
				owner = m.Record.Owner()
			}
			if owner != tc.owner || m.Cut != tc.cut {
				t.Fatalf("owner, cut = %q, %d; want %q, %d", owner, m.Cut, tc.owner, tc.cut)
			}
		})
	}
}

func TestRecordAnswers(t *testing.T) {
	tb, _ := testTable(t, "")
	dual := tb.Lookup("dual.bookinfo.svc.cluster.local.").Record
	if got := rrStrings(dual.A()); !slices.Equal(got, []string{"dual.bookinfo.svc.cluster.local.\t30\tIN\tA\t10.96.0.11"}) {
		t.Errorf("A = %q", got)
	}
	if got := rrStrings(dual.AAAA()); !slices.Equal(got, []string{"dual.bookinfo.svc.cluster.local.\t30\tIN\tAAAA\tfd00::10"}) {
		t.Errorf("AAAA = %q", got)
	}
	if got := tb.Lookup("ext.bookinfo.svc.cluster.local.").Record.Target(); got != "example.org." {
		t.Errorf("Target = %q", got)
	}
	db := tb.Lookup("db.data.svc.cluster.local.").Record
	var eps []string
	for _, ep := range db.Endpoints() {
		eps = append(eps, ep.Owner())
	}
	want := []string{"10-1-0-7.db.data.svc.cluster.local.", "db-0.db.data.svc.cluster.local.", "db-1.db.data.svc.cluster.local."}
	if !slices.Equal(eps, want) {
		t.Errorf("endpoints = %q, want %q", eps, want)
	}
}

func rrStrings(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		out = append(out, rr.String())
	}
	return out
}

func TestPTR(t *testing.T) {
	tb, src := testTable(t, "")
	tests := []struct {
		rev  string
		want []string
	}{
		{"10.0.96.10.in-addr.arpa.", []string{"reviews.bookinfo.svc.cluster.local."}},
		{"0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.", []string{"dual.bookinfo.svc.cluster.local."}},
		{"5.0.1.10.in-addr.arpa.", []string{"db-0.db.data.svc.cluster.local."}},
		{"7.0.1.10.in-addr.arpa.", []string{"10-1-0-7.db.data.svc.cluster.local."}},
		{"2.240.240.240.in-addr.arpa.", nil}, // wildcards own no address
		{"9.9.9.9.in-addr.arpa.", nil},
	}
	for _, tc := range tests {
		a, ok := ParseReverse(tc.rev)
		if !ok {
			t.Fatalf("ParseReverse(%q) failed", tc.rev)
		}
		if got := tb.PTR(a); !slices.Equal(got, tc.want) {
			t.Errorf("PTR(%s) = %q, want %q", tc.rev, got, tc.want)
		}
	}
	// A second owner of an address, then removal of the first.
	tb.Apply(src, []Entry{{Host: "alias.example.com", Addrs: []netip.Addr{ip("10.96.0.10")}}}, nil)
	want := []string{"alias.example.com.", "reviews.bookinfo.svc.cluster.local."}
	if got := tb.PTR(ip("10.96.0.10")); !slices.Equal(got, want) {
		t.Errorf("PTR = %q, want %q", got, want)
	}
	tb.Apply(src, nil, []string{"reviews.bookinfo.svc.cluster.local"})
	if got := tb.PTR(ip("10.96.0.10")); !slices.Equal(got, []string{"alias.example.com."}) {
		t.Errorf("PTR after delete = %q", got)
	}
}

func TestParseReverse(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"1.0.0.127.in-addr.arpa.", "127.0.0.1"},
		{"255.255.255.255.in-addr.arpa", "255.255.255.255"},
		{"1.0.0.in-addr.arpa.", ""},
		{"1.0.0.0.127.in-addr.arpa.", ""},
		{"0.0.0.0..in-addr.arpa", ""},
		{".0.0.0.in-addr.arpa", ""},
		{"256.0.0.127.in-addr.arpa.", ""},
		{"01.0.0.127.in-addr.arpa.", ""},
		{"a.0.0.127.in-addr.arpa.", ""},
		{"in-addr.arpa.", ""},
		{"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.", "2001:db8::1"},
		{"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.ip6.arpa.", ""},
		{"g.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.", ""},
		{"example.com.", ""},
	}
	for _, tc := range tests {
		a, ok := ParseReverse(tc.in)
		got := ""
		if ok {
			got = a.String()
		}
		if got != tc.want {
			t.Errorf("ParseReverse(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestApplyCounts(t *testing.T) {
	tb := New(Config{Domain: "cluster.local", TTL: 30})
	src := tb.AddSource("s")
	e := Entry{Host: "A.Example.com.", Addrs: []netip.Addr{ip("1.1.1.1")}}
	steps := []struct {
		name    string
		upserts []Entry
		deletes []string
		want    Result
	}{
		{"add", []Entry{e}, nil, Result{Added: 1}},
		{"same again", []Entry{e}, nil, Result{Unchanged: 1}},
		{"same, other order of addresses", []Entry{{Host: "a.example.com", Addrs: []netip.Addr{ip("1.1.1.1"), ip("1.1.1.1")}}}, nil, Result{Unchanged: 1}},
		{"change", []Entry{{Host: "a.example.com", Addrs: []netip.Addr{ip("1.1.1.2")}}}, nil, Result{Changed: 1}},
		{"delete missing", nil, []string{"b.example.com"}, Result{}},
		{"delete", nil, []string{"a.example.com."}, Result{Deleted: 1}},
	}
	for _, s := range steps {
		got := tb.Apply(src, s.upserts, s.deletes)
		if fmt.Sprint(got) != fmt.Sprint(s.want) {
			t.Errorf("%s: %+v, want %+v", s.name, got, s.want)
		}
	}
}

func TestRejectKeepsPrevious(t *testing.T) {
	tests := []struct {
		name   string
		entry  Entry
		reason error
	}{
		{"bare wildcard", Entry{Host: "*", Addrs: []netip.Addr{ip("1.1.1.1")}}, ErrHost},
		{"inner wildcard", Entry{Host: "a.*.example.com", Addrs: []netip.Addr{ip("1.1.1.1")}}, ErrHost},
		{"long name", Entry{Host: fmt.Sprintf("%0300d.example.com", 0)}, ErrHost},
		{"long label", Entry{Host: fmt.Sprintf("%070d.example.com", 0)}, ErrHost},
		{"bad char", Entry{Host: "a b.example.com"}, ErrHost},
		{"empty label", Entry{Host: "a..example.com"}, ErrHost},
		{"leading dash", Entry{Host: "-a.example.com"}, ErrHost},
		{"invalid address", Entry{Host: "a.example.com", Addrs: []netip.Addr{{}}}, ErrAddress},
		{"unspecified address", Entry{Host: "a.example.com", Addrs: []netip.Addr{ip("0.0.0.0")}}, ErrAddress},
		{"zero port", Entry{Host: "a.example.com", Addrs: []netip.Addr{ip("1.1.1.1")}, Ports: []Port{{Name: "x"}}}, ErrPort},
		{"bad port name", Entry{Host: "a.example.com", Addrs: []netip.Addr{ip("1.1.1.1")}, Ports: []Port{{Name: "X Y", Number: 1}}}, ErrPort},
		{"too many ports", Entry{Host: "a.example.com", Addrs: []netip.Addr{ip("1.1.1.1")}, Ports: slices.Repeat([]Port{{Number: 1}}, maxPorts+1)}, ErrPort},
		{"bad target", Entry{Host: "a.example.com", Target: "*.example.org"}, ErrTarget},
		{"bad endpoint", Entry{Host: "a.example.com", Endpoints: []Endpoint{{Hostname: "a.b", Addr: ip("1.1.1.1")}}}, ErrEndpoint},
		{"wildcard endpoint", Entry{Host: "*.example.com", Endpoints: []Endpoint{{Addr: ip("1.1.1.1")}}}, ErrEndpoint},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tb := New(Config{Domain: "cluster.local", TTL: 30})
			src := tb.AddSource("s")
			good := Entry{Host: "a.example.com", Addrs: []netip.Addr{ip("1.1.1.1")}}
			tb.Apply(src, []Entry{good}, nil)
			res := tb.Apply(src, []Entry{tc.entry}, nil)
			if len(res.Rejected) != 1 || !errors.Is(res.Rejected[0].Err, tc.reason) || res.Rejected[0].Reason != tc.reason.Error() {
				t.Fatalf("result %+v, want a rejection for %v", res, tc.reason)
			}
			if m := tb.Lookup("a.example.com."); m.Kind != Hit || m.Record.A()[0].(*dns.A).A.String() != "1.1.1.1" {
				t.Fatalf("previous entry not served: %+v", m)
			}
		})
	}
}

func TestSourcePriority(t *testing.T) {
	tb := New(Config{Domain: "cluster.local", TTL: 30})
	first, second := tb.AddSource("first"), tb.AddSource("second")
	host := "svc.ns.svc.cluster.local"
	addr := func() string {
		return tb.Lookup(host + ".").Record.A()[0].(*dns.A).A.String()
	}
	tb.Apply(second, []Entry{{Host: host, Registry: Kubernetes, Addrs: []netip.Addr{ip("10.0.0.2")}}}, nil)
	if got := addr(); got != "10.0.0.2" {
		t.Fatalf("only second: %s", got)
	}
	tb.Apply(first, []Entry{{Host: host, Registry: Kubernetes, Addrs: []netip.Addr{ip("10.0.0.1")}}}, nil)
	if got := addr(); got != "10.0.0.1" {
		t.Fatalf("first wins: %s", got)
	}
	tb.Apply(second, []Entry{{Host: host, Registry: Kubernetes, Addrs: []netip.Addr{ip("10.0.0.3")}}}, nil)
	if got := addr(); got != "10.0.0.1" {
		t.Fatalf("second's change must not win: %s", got)
	}
	if got := tb.PTR(ip("10.0.0.3")); got != nil {
		t.Fatalf("losing address has PTR %q", got)
	}
	tb.Apply(first, nil, []string{host})
	if got := addr(); got != "10.0.0.3" {
		t.Fatalf("second promoted: %s", got)
	}
	if got := tb.PTR(ip("10.0.0.1")); got != nil {
		t.Fatalf("deleted address keeps PTR %q", got)
	}
	st := tb.Stats()
	if st[first].Entries != 0 || st[second].Entries != 1 || st[second].Names != 3 || st[first].Names != 0 {
		t.Fatalf("stats %+v", st)
	}
	res := tb.Replace(second, nil)
	if res.Deleted != 1 || tb.Lookup(host+".").Kind != Miss || tb.Lookup("ns.svc.cluster.local.").Kind != Miss {
		t.Fatalf("replace with nothing: %+v", res)
	}
}

func TestReplaceAppliesOnlyDifferences(t *testing.T) {
	tb := New(Config{Domain: "cluster.local", TTL: 30})
	src := tb.AddSource("s")
	entries := genEntries(100)
	if res := tb.Replace(src, entries); res.Added != 100 {
		t.Fatalf("first replace: %+v", res)
	}
	before := tb.Lookup(entries[1].Host + ".").Record
	entries[0].Addrs = []netip.Addr{ip("10.255.0.1")}
	res := tb.Replace(src, entries[:99])
	if res.Changed != 1 || res.Deleted != 1 || res.Unchanged != 98 {
		t.Fatalf("second replace: %+v", res)
	}
	if tb.Lookup(entries[1].Host+".").Record != before {
		t.Fatal("an unchanged entry was rebuilt")
	}
}

// A ServiceEntry host with nothing to answer is left to upstream DNS (as in
// Istio), a headless Service without ready endpoints is NXDOMAIN (Kubernetes
// DNS specification §2.4.1): neither is served.
func TestHostWithNothingToAnswerIsNotServed(t *testing.T) {
	tb := New(Config{Domain: "cluster.local", TTL: 30})
	src := tb.AddSource("s")
	tb.Apply(src, []Entry{{Host: "a.example.com", Addrs: []netip.Addr{ip("1.1.1.1")}},
		{Host: "k.ns.svc.cluster.local", Registry: Kubernetes, Addrs: []netip.Addr{ip("10.0.0.1")}, Endpoints: []Endpoint{{Hostname: "k-0", Addr: ip("10.0.0.1")}}}}, nil)
	res := tb.Apply(src, []Entry{{Host: "a.example.com"}, {Host: "k.ns.svc.cluster.local", Registry: Kubernetes, Ports: []Port{{Name: "http", Number: 80}}}}, nil)
	if res.Deleted != 2 {
		t.Fatalf("%+v", res)
	}
	for _, q := range []string{"a.example.com.", "k.ns.svc.cluster.local.", "k-0.k.ns.svc.cluster.local.", "_http._tcp.k.ns.svc.cluster.local.", "ns.svc.cluster.local."} {
		if m := tb.Lookup(q); m.Kind != Miss {
			t.Errorf("%s: %+v", q, m)
		}
	}
}

// TestConcurrentReadsAndUpdates runs lookups against constant updates; run with
// -race. Every lookup of a stable name must succeed throughout.
func TestConcurrentReadsAndUpdates(t *testing.T) {
	tb := New(Config{Domain: "cluster.local", TTL: 30, Search: []string{"*.svc.cluster.local"}})
	src := tb.AddSource("s")
	stable := genEntries(500)
	tb.Apply(src, stable, nil)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				e := stable[i%len(stable)]
				m := tb.Lookup(e.Host + ".")
				if m.Kind != Hit || len(m.Record.A()) != 1 {
					t.Errorf("lookup %s: %+v", e.Host, m)
					return
				}
				_ = m.Record.A()[0].String()
				tb.Lookup("churn-1.churn.svc.cluster.local.other.svc.cluster.local.")
				tb.PTR(e.Addrs[0])
			}
		}()
	}
	for i := 0; i < 2000; i++ {
		h := fmt.Sprintf("churn-%d.churn.svc.cluster.local", i%10)
		tb.Apply(src, []Entry{{Host: h, Registry: Kubernetes, Addrs: []netip.Addr{netip.AddrFrom4([4]byte{10, 200, byte(i >> 8), byte(i)})}}}, nil)
		if i%3 == 0 {
			tb.Apply(src, nil, []string{h})
		}
	}
	close(stop)
	wg.Wait()
}

// genEntries makes n ClusterIP services spread over n/100+1 namespaces.
func genEntries(n int) []Entry {
	out := make([]Entry, n)
	for i := range out {
		out[i] = Entry{
			Host:     fmt.Sprintf("svc-%d.ns-%d.svc.cluster.local", i, i/100),
			Registry: Kubernetes,
			Addrs:    []netip.Addr{netip.AddrFrom4([4]byte{10, byte(96 + i>>16), byte(i >> 8), byte(i)})},
			Ports:    []Port{{Name: "http", Number: 80, Protocol: TCP}},
		}
	}
	return out
}

func TestNameCount(t *testing.T) {
	tb, src := testTable(t, "bookinfo")
	// reviews, dual, ext: host + 2 short + bare = 4 each; db (namespace data):
	// host + 2 short + 3 endpoint names = 6; se, api, exact: 1; two wildcards: 1.
	if got := tb.Stats()[src].Names; got != 3*4+6+3+2 {
		t.Fatalf("names = %d", got)
	}
}

// A CNAME chain that loops or runs deeper than MaxChain never enters the
// table: in a batch, every entry on a circle and the heads of chains that
// are too long are refused; across batches, the entry that would close a
// circle or lengthen its own chain past the bound.
func TestChains(t *testing.T) {
	cn := func(host, target string) Entry { return Entry{Host: host, Registry: Kubernetes, Target: target} }
	chain := func(n int) []Entry { // c1 -> c2 -> ... -> cn -> end
		var es []Entry
		for i := 1; i <= n; i++ {
			next := fmt.Sprintf("c%d.ns.svc.cluster.local", i+1)
			if i == n {
				next = "end.ns.svc.cluster.local"
			}
			es = append(es, cn(fmt.Sprintf("c%d.ns.svc.cluster.local", i), next))
		}
		return es
	}
	end := Entry{Host: "end.ns.svc.cluster.local", Registry: Kubernetes, Addrs: []netip.Addr{ip("10.0.0.1")}}
	tests := []struct {
		name     string
		batches  [][]Entry
		rejected map[string]string // host -> reason, over all batches
		served   []string
	}{
		{"a circle of two in one batch", [][]Entry{{cn("a.example", "b.example"), cn("b.example", "a.example")}},
			map[string]string{"a.example": "cname_loop", "b.example": "cname_loop"}, nil},
		{"a host naming itself", [][]Entry{{cn("a.example", "A.Example.")}},
			map[string]string{"a.example": "cname_loop"}, nil},
		{"a circle through a short name", [][]Entry{{cn("a.ns.svc.cluster.local", "b.ns"), cn("b.ns.svc.cluster.local", "a.ns.svc")}},
			map[string]string{"a.ns.svc.cluster.local": "cname_loop", "b.ns.svc.cluster.local": "cname_loop"}, nil},
		{"a chain into a circle ends at it", [][]Entry{{cn("c.example", "a.example"), cn("a.example", "b.example"), cn("b.example", "a.example")}},
			map[string]string{"a.example": "cname_loop", "b.example": "cname_loop"}, []string{"c.example"}},
		{"a circle closed by a later batch", [][]Entry{{cn("a.example", "b.example")}, {cn("b.example", "a.example")}},
			map[string]string{"b.example": "cname_loop"}, []string{"a.example"}},
		{"eight CNAMEs are served", [][]Entry{append(chain(8), end)}, nil, []string{"c1.ns.svc.cluster.local", "c8.ns.svc.cluster.local"}},
		{"nine: the head is refused", [][]Entry{append(chain(9), end)},
			map[string]string{"c1.ns.svc.cluster.local": "cname_depth"}, []string{"c2.ns.svc.cluster.local", "c9.ns.svc.cluster.local"}},
		{"nine, head added last", [][]Entry{append(chain(9)[1:], end), chain(9)[:1]},
			map[string]string{"c1.ns.svc.cluster.local": "cname_depth"}, []string{"c2.ns.svc.cluster.local"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tb := New(Config{Domain: "cluster.local", TTL: 30})
			src := tb.AddSource("s")
			got := map[string]string{}
			for _, b := range tc.batches {
				for _, r := range tb.Apply(src, b, nil).Rejected {
					got[r.Host] = r.Reason
				}
			}
			if len(got) != len(tc.rejected) {
				t.Errorf("rejected %v, want %v", got, tc.rejected)
			}
			for h, reason := range tc.rejected {
				if got[h] != reason {
					t.Errorf("%s: rejected %q, want %q", h, got[h], reason)
				}
				if m := tb.Lookup(h + "."); m.Kind != Miss {
					t.Errorf("%s served: %+v", h, m)
				}
			}
			for _, h := range tc.served {
				if m := tb.Lookup(h + "."); m.Kind != Hit {
					t.Errorf("%s not served: %+v", h, m)
				}
			}
		})
	}
}

// A source that wins a host back may not close a circle with it either.
func TestChainOnPromotion(t *testing.T) {
	tb := New(Config{Domain: "cluster.local", TTL: 30})
	first, second := tb.AddSource("first"), tb.AddSource("second")
	tb.Apply(second, []Entry{{Host: "b.example", Target: "a.example"}}, nil)
	tb.Apply(first, []Entry{{Host: "b.example", Addrs: []netip.Addr{ip("10.0.0.1")}}, {Host: "a.example", Target: "b.example"}}, nil)
	res := tb.Apply(first, nil, []string{"b.example"})
	if len(res.Rejected) != 1 || res.Rejected[0].Reason != "cname_loop" || tb.Lookup("b.example.").Kind != Miss {
		t.Fatalf("%+v, b.example %+v", res, tb.Lookup("b.example."))
	}
	if tb.Lookup("a.example.").Kind != Hit {
		t.Fatal("a.example lost")
	}
}

// The reverse names above a served address exist, as empty non-terminals,
// until the last address under them goes.
func TestReverseParent(t *testing.T) {
	tb := New(Config{Domain: "cluster.local", TTL: 30})
	src := tb.AddSource("s")
	tb.Apply(src, []Entry{
		{Host: "a.example", Addrs: []netip.Addr{ip("10.96.1.30"), ip("fd00:10:96::20")}},
		{Host: "b.example", Addrs: []netip.Addr{ip("10.96.1.30")}},
	}, nil)
	v6 := "0.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.1.0.0.0.0.d.f.ip6.arpa."
	tests := []struct {
		name string
		want bool
	}{
		{"1.96.10.in-addr.arpa.", true},
		{"96.10.in-addr.arpa", true},
		{"10.in-addr.arpa.", true},
		{"2.96.10.in-addr.arpa.", false},
		{"11.in-addr.arpa.", false},
		{"in-addr.arpa.", false},
		{"30.1.96.10.in-addr.arpa.", false}, // the address itself: a PTR name
		{"01.96.10.in-addr.arpa.", false},
		{v6[2:], true},
		{v6[len(v6)-len("d.f.ip6.arpa."):], true},
		{"f.ip6.arpa.", true},
		{"e.ip6.arpa.", false},
		{"x.f.ip6.arpa.", false},
	}
	check := func(b bool) {
		t.Helper()
		for _, tc := range tests {
			if got := tb.ReverseParent(tc.name); got != (tc.want && b) {
				t.Errorf("ReverseParent(%q) = %v, want %v", tc.name, got, tc.want && b)
			}
		}
	}
	check(true)
	tb.Apply(src, nil, []string{"a.example"})
	if !tb.ReverseParent("1.96.10.in-addr.arpa.") || tb.ReverseParent("f.ip6.arpa.") {
		t.Error("b.example still has 10.96.1.30; nobody has fd00:10:96::20")
	}
	tb.Apply(src, nil, []string{"b.example"})
	check(false)
}

func TestMulticlusterEndpointNames(t *testing.T) {
	tb := New(Config{Domain: "cluster.local", TTL: 30})
	src := tb.AddSource("test")
	res := tb.Apply(src, []Entry{{Host: "db.data.svc.clusterset.local", Registry: Kubernetes,
		Addrs:     []netip.Addr{ip("10.1.0.5"), ip("10.2.0.5"), ip("10.2.0.6")},
		Ports:     []Port{{Name: "pg", Number: 5432, Protocol: TCP}},
		Endpoints: []Endpoint{{Hostname: "db-0", Addr: ip("10.1.0.5"), Cluster: "c1"}, {Hostname: "db-0", Addr: ip("10.2.0.5"), Cluster: "c2"}, {Addr: ip("10.2.0.6"), Cluster: "c2"}}}}, nil)
	if len(res.Rejected) > 0 {
		t.Fatalf("rejected: %+v", res.Rejected)
	}
	tests := []struct {
		q     string
		kind  Kind
		owner string
	}{
		{"db-0.c1.db.data.svc.clusterset.local.", Hit, "db-0.c1.db.data.svc.clusterset.local."},
		{"db-0.c2.db.data.svc.clusterset.local.", Hit, "db-0.c2.db.data.svc.clusterset.local."},
		{"10-2-0-6.c2.db.data.svc.clusterset.local.", Hit, "10-2-0-6.c2.db.data.svc.clusterset.local."},
		// Multicluster DNS specification §2.4.4: no name for one cluster's
		// backends; the name exists (names below it do), so NODATA.
		{"c1.db.data.svc.clusterset.local.", Empty, ""},
		{"c3.db.data.svc.clusterset.local.", Miss, ""},
		{"db-0.db.data.svc.clusterset.local.", Miss, ""},
		{"db-0.c3.db.data.svc.clusterset.local.", Miss, ""},
		{"10-2-0-6.c1.db.data.svc.clusterset.local.", Miss, ""},
	}
	for _, tt := range tests {
		m := tb.Lookup(tt.q)
		owner := ""
		if m.Record != nil {
			owner = m.Record.Owner()
		}
		if m.Kind != tt.kind || owner != tt.owner {
			t.Errorf("Lookup(%s) = %v %q, want %v %q", tt.q, m.Kind, owner, tt.kind, tt.owner)
		}
	}
	if ptr, want := tb.PTR(ip("10.2.0.5")), []string{"db-0.c2.db.data.svc.clusterset.local."}; !slices.Equal(ptr, want) {
		t.Errorf("PTR 10.2.0.5 = %v, want %v", ptr, want)
	}
	if _, err := Normalize(Entry{Host: "a.b.svc.clusterset.local", Endpoints: []Endpoint{{Addr: ip("10.0.0.1"), Cluster: "a.b"}}}); !errors.Is(err, ErrEndpoint) {
		t.Errorf("a cluster of two labels: err %v, want %v", err, ErrEndpoint)
	}
}
