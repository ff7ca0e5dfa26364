package meshdns

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/meshdns/meshdns/plugin/source"
	"github.com/meshdns/meshdns/plugin/table"
)

// The sample mesh, testdata/mesh.json:
//
//	reviews.bookinfo.svc.cluster.local  Kubernetes 10.0.0.10 fd00::10, ports http/9080 grpc/9090
//	details.bookinfo.svc.cluster.local  Kubernetes 10.0.0.11 (IPv4 only), port http/9080
//	ratings.bookinfo.svc.cluster.local  Kubernetes fd00::12 (IPv6 only)
//	noaddr.bookinfo.svc.cluster.local   Kubernetes, no address at all (not served)
//	pool.bookinfo.svc.cluster.local     Kubernetes 10.0.1.1 ... 10.0.1.6
//	ext.bookinfo.svc.cluster.local      ExternalName -> www.example.org (not in the mesh)
//	alias.bookinfo.svc.cluster.local    ExternalName -> details.bookinfo.svc.cluster.local
//	db.data.svc.cluster.local           headless: db-0 10.1.0.1, db-1 10.1.0.2, 10.1.0.3, fd00:1::4; port mysql/3306
//	legacy.ops.svc.cluster.local        External (a ServiceEntry under the cluster domain) 240.240.0.9
//	api.example.com                     External 240.240.0.1 2001:2::1, port https/443
//	api-alias.example.com               External 240.240.0.1 (shares an address with api)
//	*.wild.example.com                  External 240.240.1.1
//	*.deep.wild.example.com             External 240.240.1.2
//	exact.wild.example.com              External 240.240.1.3
var meshPath = mustAbs("testdata/mesh.json")

func mustAbs(p string) string {
	abs, err := filepath.Abs(p)
	if err != nil {
		panic(err)
	}
	return abs
}

// RR constructors with the default TTL of 30 s.

func a(owner, ip string) dns.RR         { return test.A(owner + " 30 IN A " + ip) }
func aaaa(owner, ip string) dns.RR      { return test.AAAA(owner + " 30 IN AAAA " + ip) }
func cname(owner, target string) dns.RR { return test.CNAME(owner + " 30 IN CNAME " + target) }
func ptr(owner, target string) dns.RR   { return test.PTR(owner + " 30 IN PTR " + target) }

func srv(owner string, weight, port int, target string) dns.RR {
	return test.SRV(fmt.Sprintf("%s 30 IN SRV 0 %d %d %s", owner, weight, port, target))
}

// soa is the SOA meshdns puts in negative answers for apex (serial ignored).
func soa(apex string) dns.RR {
	ns, mbox := "ns.dns."+apex, "hostmaster."+apex
	if apex == "." {
		ns, mbox = "ns.dns.", "hostmaster."
	}
	return test.SOA(fmt.Sprintf("%s 30 IN SOA %s %s 0 7200 1800 86400 30", apex, ns, mbox))
}

// arpa is the reverse name of ip.
func arpa(ip string) string {
	name, err := dns.ReverseAddr(ip)
	if err != nil {
		panic(err)
	}
	return name
}

var (
	soaCluster = soa("cluster.local.")
	soaRoot    = soa(".")
)

// Case constructors: meshdns answers are always authoritative.

func hit(qname string, qtype uint16, answer ...dns.RR) test.Case {
	return test.Case{Qname: qname, Qtype: qtype, Rcode: dns.RcodeSuccess, Authoritative: true, Answer: answer}
}

// nodata is NOERROR with an SOA in the authority section (RFC 2308); answer
// holds the CNAMEs that led there, if any.
func nodata(qname string, qtype uint16, ns dns.RR, answer ...dns.RR) test.Case {
	return test.Case{Qname: qname, Qtype: qtype, Rcode: dns.RcodeSuccess, Authoritative: true, Answer: answer, Ns: []dns.RR{ns}}
}

func nxdomain(qname string, qtype uint16, ns dns.RR) test.Case {
	return test.Case{Qname: qname, Qtype: qtype, Rcode: dns.RcodeNameError, Authoritative: true, Ns: []dns.RR{ns}}
}

// question is a query meshdns must hand to the next plugin.
type question struct {
	name  string
	qtype uint16
}

// suite is a meshdns Corefile block and what it answers. cases are answered
// by meshdns itself, identically in unit and wire tests; next are handed to
// the next plugin (a marker handler in unit tests, forward to a second CoreDNS
// server over the wire); wire cases need the rest of a real server.
type suite struct {
	name  string
	block string // "MESH" stands for the sample mesh's path
	cases []test.Case
	next  []question
	wire  []test.Case
}

func (s suite) corefileBlock() string { return strings.ReplaceAll(s.block, "MESH", meshPath) }

// suiteBlock is the Corefile block of the named suite.
func suiteBlock(name string) string {
	for _, s := range suites {
		if s.name == name {
			return s.corefileBlock()
		}
	}
	panic("no suite " + name)
}

const (
	reviews = "reviews.bookinfo.svc.cluster.local."
	details = "details.bookinfo.svc.cluster.local."
	ratings = "ratings.bookinfo.svc.cluster.local."
	db      = "db.data.svc.cluster.local."
)

// suites covers the plugin's behaviours, one Corefile block each; a comment
// heads each group of cases with the behaviour it checks.
var suites = []suite{
	{
		name: "namespace",
		block: `meshdns {
			file MESH
			namespace bookinfo
			authoritative cluster.local
			fallthrough
		}`,
		cases: []test.Case{
			// Kubernetes hosts: FQDN, name.ns, name.ns.svc, and the bare name in the configured namespace.
			hit(reviews, dns.TypeA, a(reviews, "10.0.0.10")),
			hit("reviews.bookinfo.", dns.TypeA, a("reviews.bookinfo.", "10.0.0.10")),
			hit("reviews.bookinfo.svc.", dns.TypeA, a("reviews.bookinfo.svc.", "10.0.0.10")),
			hit("reviews.", dns.TypeA, a("reviews.", "10.0.0.10")),
			hit("db.data.", dns.TypeA, a("db.data.", "10.1.0.1"), a("db.data.", "10.1.0.2"), a("db.data.", "10.1.0.3")),
			// A ServiceEntry host is served exactly, even under the cluster domain.
			hit("legacy.ops.svc.cluster.local.", dns.TypeA, a("legacy.ops.svc.cluster.local.", "240.240.0.9")),
			nxdomain("legacy.ops.bookinfo.svc.cluster.local.", dns.TypeA, soaCluster),

			// Search-domain shortcut for every default search domain: CNAME to the FQDN plus its records.
			hit("reviews.bookinfo.bookinfo.svc.cluster.local.", dns.TypeA,
				cname("reviews.bookinfo.bookinfo.svc.cluster.local.", reviews), a(reviews, "10.0.0.10")),
			hit("reviews.bookinfo.default.svc.cluster.local.", dns.TypeA,
				cname("reviews.bookinfo.default.svc.cluster.local.", reviews), a(reviews, "10.0.0.10")),
			hit("reviews.bookinfo.svc.cluster.local.default.svc.cluster.local.", dns.TypeA,
				cname("reviews.bookinfo.svc.cluster.local.default.svc.cluster.local.", reviews), a(reviews, "10.0.0.10")),
			hit("reviews.bookinfo.svc.cluster.local.svc.cluster.local.", dns.TypeA,
				cname("reviews.bookinfo.svc.cluster.local.svc.cluster.local.", reviews), a(reviews, "10.0.0.10")),
			hit("reviews.bookinfo.svc.cluster.local.cluster.local.", dns.TypeA,
				cname("reviews.bookinfo.svc.cluster.local.cluster.local.", reviews), a(reviews, "10.0.0.10")),
			// The CNAME target is the real FQDN even when the expanded name is a short name.
			hit("reviews.bookinfo.cluster.local.", dns.TypeA,
				cname("reviews.bookinfo.cluster.local.", reviews), a(reviews, "10.0.0.10")),
			hit("reviews.bookinfo.svc.svc.cluster.local.", dns.TypeA,
				cname("reviews.bookinfo.svc.svc.cluster.local.", reviews), a(reviews, "10.0.0.10")),
			// The bare name (namespace bookinfo) with the svc.<domain> search domain.
			hit("reviews.svc.cluster.local.", dns.TypeA,
				cname("reviews.svc.cluster.local.", reviews), a(reviews, "10.0.0.10")),
			hit("reviews.bookinfo.bookinfo.svc.cluster.local.", dns.TypeAAAA,
				cname("reviews.bookinfo.bookinfo.svc.cluster.local.", reviews), aaaa(reviews, "fd00::10")),
			hit("api.example.com.bookinfo.svc.cluster.local.", dns.TypeA,
				cname("api.example.com.bookinfo.svc.cluster.local.", "api.example.com."), a("api.example.com.", "240.240.0.1")),
			hit("api.example.com.cluster.local.", dns.TypeAAAA,
				cname("api.example.com.cluster.local.", "api.example.com."), aaaa("api.example.com.", "2001:2::1")),
			// A shortcut to a name without the asked family: the CNAME, then NODATA.
			nodata("details.bookinfo.bookinfo.svc.cluster.local.", dns.TypeAAAA, soaCluster,
				cname("details.bookinfo.bookinfo.svc.cluster.local.", details)),
			// A bare name under another namespace's search domain is that namespace's service: not a shortcut.
			nxdomain("reviews.default.svc.cluster.local.", dns.TypeA, soaCluster),
			nxdomain("details.default.svc.cluster.local.", dns.TypeA, soaCluster),

			// Wildcards: the owner is the question, the most specific wins, deeper names match.
			hit("foo.wild.example.com.", dns.TypeA, a("foo.wild.example.com.", "240.240.1.1")),
			hit("a.b.wild.example.com.", dns.TypeA, a("a.b.wild.example.com.", "240.240.1.1")),
			hit("x.deep.wild.example.com.", dns.TypeA, a("x.deep.wild.example.com.", "240.240.1.2")),
			hit("y.x.deep.wild.example.com.", dns.TypeA, a("y.x.deep.wild.example.com.", "240.240.1.2")),
			// An exact name beats the wildcard, but does not cover its own children.
			hit("exact.wild.example.com.", dns.TypeA, a("exact.wild.example.com.", "240.240.1.3")),
			hit("sub.exact.wild.example.com.", dns.TypeA, a("sub.exact.wild.example.com.", "240.240.1.1")),
			nodata("foo.wild.example.com.", dns.TypeAAAA, soaRoot),
			// A shortcut reaching a wildcard: CNAME to the stripped name, which owns the A record.
			hit("foo.wild.example.com.bookinfo.svc.cluster.local.", dns.TypeA,
				cname("foo.wild.example.com.bookinfo.svc.cluster.local.", "foo.wild.example.com."),
				a("foo.wild.example.com.", "240.240.1.1")),
			hit("z.deep.wild.example.com.cluster.local.", dns.TypeA,
				cname("z.deep.wild.example.com.cluster.local.", "z.deep.wild.example.com."),
				a("z.deep.wild.example.com.", "240.240.1.2")),

			// A and AAAA; NODATA with an SOA (never NXDOMAIN) for a missing family or another type.
			hit(reviews, dns.TypeAAAA, aaaa(reviews, "fd00::10")),
			hit(ratings, dns.TypeAAAA, aaaa(ratings, "fd00::12")),
			nodata(ratings, dns.TypeA, soaCluster),
			nodata(details, dns.TypeAAAA, soaCluster),
			// A headless Service without ready endpoints (Kubernetes DNS specification §2.4.1).
			nxdomain("noaddr.bookinfo.svc.cluster.local.", dns.TypeA, soaCluster),
			nodata(reviews, dns.TypeTXT, soaCluster),
			nodata(reviews, dns.TypeMX, soaCluster),
			nodata("reviews.bookinfo.", dns.TypeTXT, soaRoot),
			hit("api.example.com.", dns.TypeAAAA, aaaa("api.example.com.", "2001:2::1")),
			nodata("api.example.com.", dns.TypeTXT, soaRoot),

			// SRV in the kubernetes plugin's form, and at the host for all ports.
			hit("_http._tcp."+reviews, dns.TypeSRV, srv("_http._tcp."+reviews, 100, 9080, reviews)),
			hit("_grpc._tcp.reviews.bookinfo.", dns.TypeSRV, srv("_grpc._tcp.reviews.bookinfo.", 100, 9090, reviews)),
			hit(reviews, dns.TypeSRV, srv(reviews, 100, 9080, reviews), srv(reviews, 100, 9090, reviews)),
			hit("_https._tcp.api.example.com.", dns.TypeSRV, srv("_https._tcp.api.example.com.", 100, 443, "api.example.com.")),
			// Headless: one target per endpoint name, hostname or dashed address.
			hit("_mysql._tcp."+db, dns.TypeSRV,
				srv("_mysql._tcp."+db, 25, 3306, "10-1-0-3."+db),
				srv("_mysql._tcp."+db, 25, 3306, "db-0."+db),
				srv("_mysql._tcp."+db, 25, 3306, "db-1."+db),
				srv("_mysql._tcp."+db, 25, 3306, "fd00-1--4."+db)),
			hit(db, dns.TypeSRV,
				srv(db, 25, 3306, "10-1-0-3."+db), srv(db, 25, 3306, "db-0."+db),
				srv(db, 25, 3306, "db-1."+db), srv(db, 25, 3306, "fd00-1--4."+db)),
			// The SRV name exists, so other types are NODATA; a port the service lacks does not exist.
			nodata("_http._tcp."+reviews, dns.TypeA, soaCluster),
			nxdomain("_http._udp."+reviews, dns.TypeSRV, soaCluster),
			nodata("ratings.bookinfo.svc.cluster.local.", dns.TypeSRV, soaCluster),

			// PTR for every served address, endpoint names for headless services.
			hit(arpa("10.0.0.10"), dns.TypePTR, ptr(arpa("10.0.0.10"), reviews)),
			hit(arpa("fd00::10"), dns.TypePTR, ptr(arpa("fd00::10"), reviews)),
			hit(arpa("fd00::12"), dns.TypePTR, ptr(arpa("fd00::12"), ratings)),
			hit(arpa("240.240.0.1"), dns.TypePTR,
				ptr(arpa("240.240.0.1"), "api-alias.example.com."), ptr(arpa("240.240.0.1"), "api.example.com.")),
			hit(arpa("2001:2::1"), dns.TypePTR, ptr(arpa("2001:2::1"), "api.example.com.")),
			hit(arpa("10.1.0.1"), dns.TypePTR, ptr(arpa("10.1.0.1"), "db-0."+db)),
			hit(arpa("10.1.0.3"), dns.TypePTR, ptr(arpa("10.1.0.3"), "10-1-0-3."+db)),
			hit(arpa("fd00:1::4"), dns.TypePTR, ptr(arpa("fd00:1::4"), "fd00-1--4."+db)),

			// ExternalName to a mesh name: the chain continues inside meshdns.
			hit("alias.bookinfo.svc.cluster.local.", dns.TypeA,
				cname("alias.bookinfo.svc.cluster.local.", details), a(details, "10.0.0.11")),
			hit("alias.bookinfo.", dns.TypeA, cname("alias.bookinfo.", details), a(details, "10.0.0.11")),
			hit("alias.bookinfo.svc.cluster.local.", dns.TypeCNAME, cname("alias.bookinfo.svc.cluster.local.", details)),
			hit("ext.bookinfo.svc.cluster.local.", dns.TypeCNAME, cname("ext.bookinfo.svc.cluster.local.", "www.example.org.")),
			// A chain that ends without the asked type is NODATA, with the SOA of its last name.
			nodata("alias.bookinfo.svc.cluster.local.", dns.TypeAAAA, soaCluster, cname("alias.bookinfo.svc.cluster.local.", details)),
			hit("alias.bookinfo.bookinfo.svc.cluster.local.", dns.TypeA,
				cname("alias.bookinfo.bookinfo.svc.cluster.local.", "alias.bookinfo.svc.cluster.local."),
				cname("alias.bookinfo.svc.cluster.local.", details), a(details, "10.0.0.11")),

			// Headless: every endpoint address, and per-endpoint names.
			hit(db, dns.TypeA, a(db, "10.1.0.1"), a(db, "10.1.0.2"), a(db, "10.1.0.3")),
			hit(db, dns.TypeAAAA, aaaa(db, "fd00:1::4")),
			hit("db-0."+db, dns.TypeA, a("db-0."+db, "10.1.0.1")),
			hit("db-1."+db, dns.TypeA, a("db-1."+db, "10.1.0.2")),
			hit("10-1-0-3."+db, dns.TypeA, a("10-1-0-3."+db, "10.1.0.3")),
			hit("fd00-1--4."+db, dns.TypeAAAA, aaaa("fd00-1--4."+db, "fd00:1::4")),
			nodata("fd00-1--4."+db, dns.TypeA, soaCluster),
			nxdomain("db-9."+db, dns.TypeA, soaCluster),

			// Case-insensitive lookup; the answer keeps the question's case.
			hit("ReViews.BookInfo.svc.cluster.local.", dns.TypeA, a("ReViews.BookInfo.svc.cluster.local.", "10.0.0.10")),
			hit("REVIEWS.bookinfo.", dns.TypeAAAA, aaaa("REVIEWS.bookinfo.", "fd00::10")),
			hit("Foo.Wild.Example.COM.", dns.TypeA, a("Foo.Wild.Example.COM.", "240.240.1.1")),
			hit("_HTTP._Tcp.Reviews.Bookinfo.svc.cluster.local.", dns.TypeSRV,
				srv("_HTTP._Tcp.Reviews.Bookinfo.svc.cluster.local.", 100, 9080, reviews)),
			hit("ReViews.BookInfo.BookInfo.svc.cluster.local.", dns.TypeA,
				cname("ReViews.BookInfo.BookInfo.svc.cluster.local.", reviews), a(reviews, "10.0.0.10")),

			// authoritative beats fallthrough: NXDOMAIN, and NODATA for empty non-terminals.
			nxdomain("nope.bookinfo.svc.cluster.local.", dns.TypeA, soaCluster),
			nxdomain("nope.cluster.local.", dns.TypeAAAA, soaCluster),
			nodata("bookinfo.svc.cluster.local.", dns.TypeA, soaCluster),
			nodata("svc.cluster.local.", dns.TypeA, soaCluster),
			nodata("data.svc.cluster.local.", dns.TypeSRV, soaCluster),
			// An empty non-terminal is NODATA in a fallthrough zone too (RFC 8020).
			nodata("wild.example.com.", dns.TypeA, soaRoot),
			nodata("_tcp."+reviews, dns.TypeSRV, soaCluster),
			nodata("_tcp.reviews.bookinfo.", dns.TypeSRV, soaRoot),
			nxdomain("_udp."+reviews, dns.TypeSRV, soaCluster),
			// A served address's reverse name owns its PTR alone; the names above it exist.
			nodata(arpa("10.0.0.10"), dns.TypeTXT, soaRoot),
			nodata("0.0.10.in-addr.arpa.", dns.TypePTR, soaRoot),
			nodata("0.0.d.f.ip6.arpa.", dns.TypePTR, soaRoot),
			nodata("1.0.0.0.0.0.d.f.ip6.arpa.", dns.TypeSOA, soaRoot),

			// ANY: the name's addresses, or an ExternalName's CNAME (RFC 8482).
			hit(details, dns.TypeANY, a(details, "10.0.0.11")),
			hit("alias.bookinfo.svc.cluster.local.", dns.TypeANY, cname("alias.bookinfo.svc.cluster.local.", details)),
			// An ExternalName host owns its CNAME only: no SRV names below it (RFC 2181 §10.1).
			nxdomain("_http._tcp.alias.bookinfo.svc.cluster.local.", dns.TypeSRV, soaCluster),
			// The Kubernetes DNS schema version.
			hit("dns-version.cluster.local.", dns.TypeTXT, test.TXT(`dns-version.cluster.local. 28800 IN TXT "1.1.0"`)),
			nodata("dns-version.cluster.local.", dns.TypeA, soaCluster),
			// A label with an escaped dot is one label: not a name of the table.
			nxdomain("reviews\\.bookinfo.svc.cluster.local.", dns.TypeA, soaCluster),
		},
		// Unknown names outside the authoritative zones fall through.
		next: []question{
			{"nope.example.org.", dns.TypeA},
			{"www.example.org.", dns.TypeA},
			{"api.example.net.", dns.TypeAAAA},
			{"legacy.ops.", dns.TypeA},     // a ServiceEntry has no short names
			{"legacy.ops.svc.", dns.TypeA}, // nor the .svc one
			{"db.", dns.TypeA},             // bare names only for the configured namespace
			{arpa("240.240.1.1"), dns.TypePTR},
			{arpa("192.0.2.1"), dns.TypePTR},
		},
		wire: []test.Case{
			// A chain that leaves the table ends as the rest of the server answers its last name
			// (RFC 6604): here NXDOMAIN, with that server's SOA.
			{Qname: "ext.bookinfo.svc.cluster.local.", Qtype: dns.TypeTXT, Authoritative: true, Rcode: dns.RcodeNameError,
				Answer: []dns.RR{cname("ext.bookinfo.svc.cluster.local.", "www.example.org.")},
				Ns:     []dns.RR{test.SOA(". 60 IN SOA upstream.test. hostmaster.upstream.test. 1 7200 1800 86400 60")}},
			// ExternalName to an external name: the A record comes from the rest of the server (forward).
			{Qname: "ext.bookinfo.svc.cluster.local.", Qtype: dns.TypeA, Authoritative: true, Answer: []dns.RR{
				cname("ext.bookinfo.svc.cluster.local.", "www.example.org."), test.A("www.example.org. 60 IN A 192.0.2.80"),
			}},
			{Qname: "ext.bookinfo.", Qtype: dns.TypeAAAA, Authoritative: true, Answer: []dns.RR{
				cname("ext.bookinfo.", "www.example.org."), test.AAAA("www.example.org. 60 IN AAAA 2001:db8::80"),
			}},
			// The same through a search-domain shortcut.
			{Qname: "ext.bookinfo.bookinfo.svc.cluster.local.", Qtype: dns.TypeA, Authoritative: true, Answer: []dns.RR{
				cname("ext.bookinfo.bookinfo.svc.cluster.local.", "ext.bookinfo.svc.cluster.local."),
				cname("ext.bookinfo.svc.cluster.local.", "www.example.org."),
				test.A("www.example.org. 60 IN A 192.0.2.80"),
			}},
		},
	},
	{
		name: "plain",
		block: `meshdns {
			file MESH
		}`,
		cases: []test.Case{
			// No namespace: no bare names.
			nxdomain("reviews.", dns.TypeA, soaRoot),
			hit("reviews.bookinfo.", dns.TypeA, a("reviews.bookinfo.", "10.0.0.10")),
			hit("details.bookinfo.svc.", dns.TypeA, a("details.bookinfo.svc.", "10.0.0.11")),
			// ServiceEntry hosts: exact only.
			nxdomain("legacy.ops.", dns.TypeA, soaRoot),
			nxdomain("legacy.ops.svc.", dns.TypeA, soaRoot),
			// Shortcuts work for any namespace's search domains without a namespace.
			hit("details.bookinfo.data.svc.cluster.local.", dns.TypeA,
				cname("details.bookinfo.data.svc.cluster.local.", details), a(details, "10.0.0.11")),
			// ... but the bare name needs the namespace.
			nxdomain("reviews.svc.cluster.local.", dns.TypeA, soaCluster),
			nxdomain("reviews.bookinfo.svc.cluster.local.example.org.", dns.TypeA, soaRoot),
			// Without fallthrough, unknown names get NXDOMAIN, with the cluster domain's or the zone's SOA.
			nxdomain("nope.example.org.", dns.TypeA, soaRoot),
			nxdomain("nope.bookinfo.svc.cluster.local.", dns.TypeA, soaCluster),
			nxdomain(arpa("192.0.2.1"), dns.TypePTR, soaRoot),
			// Empty non-terminals: NODATA.
			nodata("bookinfo.svc.cluster.local.", dns.TypeA, soaCluster),
			nodata("bookinfo.svc.", dns.TypeA, soaRoot),
			nodata("bookinfo.", dns.TypeA, soaRoot),
			nodata("wild.example.com.", dns.TypeA, soaRoot),
			nodata("example.com.", dns.TypeAAAA, soaRoot),
		},
	},
	{
		name: "search",
		block: `meshdns {
			file MESH
			search corp.example.com
		}`,
		cases: []test.Case{
			// A custom search list replaces the defaults.
			hit("reviews.bookinfo.corp.example.com.", dns.TypeA,
				cname("reviews.bookinfo.corp.example.com.", reviews), a(reviews, "10.0.0.10")),
			hit("api.example.com.corp.example.com.", dns.TypeA,
				cname("api.example.com.corp.example.com.", "api.example.com."), a("api.example.com.", "240.240.0.1")),
			hit("foo.wild.example.com.corp.example.com.", dns.TypeA,
				cname("foo.wild.example.com.corp.example.com.", "foo.wild.example.com."), a("foo.wild.example.com.", "240.240.1.1")),
			nxdomain("reviews.bookinfo.bookinfo.svc.cluster.local.", dns.TypeA, soaCluster),
			nxdomain("reviews.bookinfo.svc.cluster.local.cluster.local.", dns.TypeA, soaCluster),
			nxdomain("nope.corp.example.com.", dns.TypeA, soaRoot),
		},
	},
	{
		name: "zones",
		block: `meshdns cluster.local example.org {
			file MESH
			fallthrough example.org
		}`,
		cases: []test.Case{
			hit(reviews, dns.TypeA, a(reviews, "10.0.0.10")),
			nxdomain("nope.cluster.local.", dns.TypeA, soaCluster),
			nodata("svc.cluster.local.", dns.TypeA, soaCluster),
			// PTR is answered for served addresses whatever the zones.
			hit(arpa("10.0.0.10"), dns.TypePTR, ptr(arpa("10.0.0.10"), reviews)),
		},
		next: []question{
			// Names outside the plugin's zones go to the next plugin, even mesh names.
			{"api.example.com.", dns.TypeA},
			{"foo.wild.example.com.", dns.TypeA},
			{"www.example.net.", dns.TypeA},
			// fallthrough example.org
			{"www.example.org.", dns.TypeA},
			{arpa("192.0.2.1"), dns.TypePTR},
		},
	},
	{
		name: "authoritative-everywhere",
		block: `meshdns {
			file MESH
			authoritative
			fallthrough
		}`,
		cases: []test.Case{
			// authoritative without zones covers all the plugin's zones, and beats fallthrough.
			// The SOA is the authoritative zone's, here the root.
			nxdomain("www.example.org.", dns.TypeA, soaRoot),
			nxdomain("nope.bookinfo.svc.cluster.local.", dns.TypeA, soaRoot),
			nodata("wild.example.com.", dns.TypeA, soaRoot),
			hit("api.example.com.", dns.TypeA, a("api.example.com.", "240.240.0.1")),
		},
	},
}

// newMesh builds the plugin from a Corefile block as setup does, loads its
// sources, and puts next behind it.
func newMesh(t testing.TB, block string, next test.Handler) *MeshDNS {
	t.Helper()
	c := caddy.NewTestController("dns", block)
	c.ServerBlockKeys = []string{"."}
	m, err := parse(c)
	if err != nil {
		t.Fatalf("parse %q: %v", block, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	for _, s := range m.sources {
		if err := s.src.Start(ctx, s); err != nil {
			t.Fatalf("start %s: %v", s.name, err)
		}
	}
	m.Next = next
	return m
}

// nextPlugin stands for the rest of the chain in unit tests: it answers
// every question with TXT "next", non-authoritatively.
var nextPlugin = test.HandlerFunc(func(_ context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Answer = []dns.RR{&dns.TXT{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET}, Txt: []string{"next"}}}
	w.WriteMsg(m)
	return dns.RcodeSuccess, nil
})

func nextCase(q question) test.Case {
	return test.Case{Qname: q.name, Qtype: q.qtype, Answer: []dns.RR{test.TXT(q.name + ` 0 IN TXT "next"`)}}
}

// serve runs one query through ServeDNS and returns the reply written.
func serve(t *testing.T, m *MeshDNS, req *dns.Msg) (*dns.Msg, int) {
	t.Helper()
	rec := dnstest.NewRecorder(&test.ResponseWriter{})
	rcode, err := m.ServeDNS(context.Background(), rec, req)
	if err != nil {
		t.Fatalf("ServeDNS: %v", err)
	}
	return rec.Msg, rcode
}

func caseName(tc test.Case) string {
	return strings.TrimSuffix(tc.Qname, ".") + "/" + dns.TypeToString[tc.Qtype]
}

// check compares a reply with tc: the question, rcode, AA and TC flags, the
// order of the CNAME chain, the three sections (in any order) and the SOA
// fields negative caching depends on.
func check(resp *dns.Msg, tc test.Case) error {
	if resp == nil {
		return errors.New("no reply")
	}
	if len(resp.Question) != 1 || resp.Question[0].Name != dns.Fqdn(tc.Qname) || resp.Question[0].Qtype != tc.Qtype {
		return fmt.Errorf("question is %v, want %s %s", resp.Question, tc.Qname, dns.TypeToString[tc.Qtype])
	}
	if resp.Authoritative != tc.Authoritative {
		return fmt.Errorf("AA is %t, want %t", resp.Authoritative, tc.Authoritative)
	}
	if resp.Truncated != tc.Truncated {
		return fmt.Errorf("TC is %t, want %t", resp.Truncated, tc.Truncated)
	}
	if err := chainOrder(resp); err != nil {
		return fmt.Errorf("%w\n%v", err, resp)
	}
	if tc.Qtype == dns.TypeSRV && tc.Extra == nil {
		// Address records for SRV targets are allowed, not required.
		resp.Extra = nil
	}
	want := tc
	want.Answer, want.Ns, want.Extra = sorted(tc.Answer), sorted(tc.Ns), sorted(tc.Extra)
	if err := test.SortAndCheck(resp, want); err != nil {
		return fmt.Errorf("%w\n%v", err, resp)
	}
	for i, rr := range want.Ns {
		w, ok := rr.(*dns.SOA)
		if !ok {
			continue
		}
		g := resp.Ns[i].(*dns.SOA)
		if g.Mbox != w.Mbox || g.Minttl != w.Minttl || g.Refresh != w.Refresh || g.Retry != w.Retry || g.Expire != w.Expire {
			return fmt.Errorf("SOA is %v, want %v (any serial)", g, w)
		}
	}
	return nil
}

func sorted(rrs []dns.RR) []dns.RR {
	rrs = slices.Clone(rrs)
	sort.Sort(test.RRSet(rrs))
	return rrs
}

// chainOrder checks the answer section in wire order: each record is owned by
// the question or by the target of the CNAME before it, exactly as spelled.
func chainOrder(resp *dns.Msg) error {
	owner := resp.Question[0].Name
	for _, rr := range resp.Answer {
		if rr.Header().Name != owner {
			return fmt.Errorf("answer %v: owner should be %q", rr, owner)
		}
		if c, ok := rr.(*dns.CNAME); ok {
			owner = c.Target
		}
	}
	return nil
}

// Every case of the suites through ServeDNS, with a marker handler as the
// next plugin.
func TestServeDNSAnswersSuites(t *testing.T) {
	for _, s := range suites {
		t.Run(s.name, func(t *testing.T) {
			m := newMesh(t, s.corefileBlock(), nextPlugin)
			for _, tc := range s.cases {
				t.Run(caseName(tc), func(t *testing.T) {
					resp, _ := serve(t, m, tc.Msg())
					if err := check(resp, tc); err != nil {
						t.Error(err)
					}
				})
			}
			for _, q := range s.next {
				tc := nextCase(q)
				t.Run("next/"+caseName(tc), func(t *testing.T) {
					resp, _ := serve(t, m, tc.Msg())
					if err := check(resp, tc); err != nil {
						t.Error(err)
					}
				})
			}
		})
	}
}

// Only the first question is looked at, and only it is in the reply.
func TestServeDNSFirstQuestionOnly(t *testing.T) {
	m := newMesh(t, suiteBlock("namespace"), nextPlugin)
	for _, tc := range []struct {
		questions []dns.Question
		want      test.Case
	}{
		{
			questions: []dns.Question{{Name: reviews, Qtype: dns.TypeA, Qclass: dns.ClassINET}, {Name: "api.example.com.", Qtype: dns.TypeA, Qclass: dns.ClassINET}},
			want:      hit(reviews, dns.TypeA, a(reviews, "10.0.0.10")),
		},
		{
			questions: []dns.Question{{Name: "nope.cluster.local.", Qtype: dns.TypeA, Qclass: dns.ClassINET}, {Name: reviews, Qtype: dns.TypeA, Qclass: dns.ClassINET}},
			want:      nxdomain("nope.cluster.local.", dns.TypeA, soaCluster),
		},
	} {
		t.Run(caseName(tc.want), func(t *testing.T) {
			req := new(dns.Msg)
			req.Id = dns.Id()
			req.RecursionDesired = true
			req.Question = tc.questions
			resp, _ := serve(t, m, req)
			if err := check(resp, tc.want); err != nil {
				t.Error(err)
			}
			if resp.Id != req.Id || !resp.Response || !resp.RecursionDesired {
				t.Errorf("header: id %d response %t rd %t, want id %d, a response with RD copied", resp.Id, resp.Response, resp.RecursionDesired, req.Id)
			}
		})
	}
}

// Address records are shuffled per query, and always complete.
func TestServeDNSShuffle(t *testing.T) {
	m := newMesh(t, suiteBlock("namespace"), nextPlugin)
	want := []string{"10.0.1.1", "10.0.1.2", "10.0.1.3", "10.0.1.4", "10.0.1.5", "10.0.1.6"}
	firsts := map[string]int{}
	for range 60 {
		resp, _ := serve(t, m, new(dns.Msg).SetQuestion("pool.bookinfo.svc.cluster.local.", dns.TypeA))
		got := answerIPs(resp)
		firsts[got[0]]++
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Fatalf("answer %v, want every address of %v", got, want)
		}
	}
	// 60 unshuffled answers would all start alike; shuffled ones do so with p = 6^-59.
	if len(firsts) < 2 {
		t.Errorf("the first record never changed over 60 queries: %v", firsts)
	}
}

func answerIPs(resp *dns.Msg) []string {
	var ips []string
	for _, rr := range resp.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			ips = append(ips, rr.A.String())
		case *dns.AAAA:
			ips = append(ips, rr.AAAA.String())
		}
	}
	return ips
}

// idleSource never loads, like an xDS source waiting for its first push.
type idleSource struct{}

func (idleSource) Name() string                             { return "idle" }
func (idleSource) Start(context.Context, source.Sink) error { return nil }

// Until every source has loaded once: SERVFAIL in the plugin's zones and
// not ready; afterwards, answers.
func TestServeDNSNotReady(t *testing.T) {
	m := &MeshDNS{
		Zones:  []string{"cluster.local."},
		Next:   nextPlugin,
		table:  table.New(table.Config{Domain: "cluster.local", TTL: 30}),
		domain: "cluster.local.",
		ttl:    30,
	}
	m.addSource(idleSource{})
	if err := m.sources[0].src.Start(context.Background(), m.sources[0]); err != nil {
		t.Fatal(err)
	}
	// Entries alone do not make a source loaded: only Synced does.
	m.sources[0].Replace([]table.Entry{{Host: "reviews.bookinfo.svc.cluster.local", Registry: table.Kubernetes, Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.10")}}}, nil)

	before := counterValue(t, requests, "", "not_ready")
	for _, q := range []question{{reviews, dns.TypeA}, {"nope.cluster.local.", dns.TypeA}, {"reviews.bookinfo.", dns.TypeA}} {
		if m.Ready() {
			t.Fatal("Ready() is true before the source synced")
		}
		resp, rcode := serve(t, m, new(dns.Msg).SetQuestion(q.name, q.qtype))
		if q.name == "reviews.bookinfo." {
			// Outside the plugin's zones: the next plugin, loaded or not.
			if err := check(resp, nextCase(q)); err != nil {
				t.Errorf("%s: %v", q.name, err)
			}
			continue
		}
		// The server writes SERVFAIL for the returned rcode.
		if resp != nil || rcode != dns.RcodeServerFailure {
			t.Errorf("%s: rcode %s and reply %v, want SERVFAIL returned and nothing written", q.name, dns.RcodeToString[rcode], resp)
		}
	}
	if got := counterValue(t, requests, "", "not_ready") - before; got != 2 {
		t.Errorf("not_ready requests went up by %v, want 2", got)
	}

	m.sources[0].Synced()
	if !m.Ready() {
		t.Fatal("Ready() is false after every source synced")
	}
	resp, _ := serve(t, m, new(dns.Msg).SetQuestion(reviews, dns.TypeA))
	if err := check(resp, hit(reviews, dns.TypeA, a(reviews, "10.0.0.10"))); err != nil {
		t.Error(err)
	}
}

// With several sources, every one must have loaded.
func TestReadyNeedsEverySource(t *testing.T) {
	m := newMesh(t, suiteBlock("plain"), nextPlugin)
	if !m.Ready() {
		t.Fatal("not ready after the file source loaded")
	}
	m.addSource(idleSource{})
	if m.Ready() {
		t.Fatal("ready although the second source never synced")
	}
	resp, rcode := serve(t, m, new(dns.Msg).SetQuestion(reviews, dns.TypeA))
	if resp != nil || rcode != dns.RcodeServerFailure {
		t.Errorf("rcode %s and reply %v, want SERVFAIL", dns.RcodeToString[rcode], resp)
	}
	m.sources[1].Synced()
	if !m.Ready() {
		t.Fatal("not ready after both sources synced")
	}
}

// Every result is counted under its label.
func TestServeDNSRequestMetrics(t *testing.T) {
	m := newMesh(t, suiteBlock("namespace"), nextPlugin)
	for _, tc := range []struct {
		result string
		q      question
	}{
		{"hit", question{reviews, dns.TypeA}},
		{"hit", question{arpa("10.0.0.10"), dns.TypePTR}},
		{"shortcut", question{"reviews.bookinfo.bookinfo.svc.cluster.local.", dns.TypeA}},
		{"wildcard", question{"foo.wild.example.com.", dns.TypeA}},
		{"nodata", question{details, dns.TypeAAAA}},
		{"nodata", question{"details.bookinfo.bookinfo.svc.cluster.local.", dns.TypeAAAA}},
		{"nodata", question{"bookinfo.svc.cluster.local.", dns.TypeA}},
		{"nxdomain", question{"nope.cluster.local.", dns.TypeA}},
		{"fallthrough", question{"nope.example.org.", dns.TypeA}},
	} {
		t.Run(tc.result+"/"+tc.q.name, func(t *testing.T) {
			before := map[string]float64{}
			for _, r := range resultNames {
				before[r] = counterValue(t, requests, "", r)
			}
			serve(t, m, new(dns.Msg).SetQuestion(tc.q.name, tc.q.qtype))
			for _, r := range resultNames {
				want := 0.0
				if r == tc.result {
					want = 1
				}
				if got := counterValue(t, requests, "", r) - before[r]; got != want {
					t.Errorf("requests_total{result=%q} went up by %v, want %v", r, got, want)
				}
			}
		})
	}
}

// counterValue reads one counter of vec.
func counterValue(t *testing.T, vec *prometheus.CounterVec, labels ...string) float64 {
	t.Helper()
	var out dto.Metric
	if err := vec.WithLabelValues(labels...).Write(&out); err != nil {
		t.Fatal(err)
	}
	return out.GetCounter().GetValue()
}
