package conformance

import (
	"testing"

	"github.com/miekg/dns"
)

// Names in testdata/mesh.json.
const (
	clusterLocal = "cluster.local."
	reviews      = "reviews.bookinfo.svc.cluster.local."     // dual-stack, port http/TCP
	ratings      = "ratings.bookinfo.svc.cluster.local."     // IPv4 only
	multi        = "multi.bookinfo.svc.cluster.local."       // dual-stack, TCP, UDP and SCTP ports
	dup          = "dup.bookinfo.svc.cluster.local."         // an address listed twice
	medium       = "medium.bookinfo.svc.cluster.local."      // 10 IPv4 addresses
	big          = "big.bookinfo.svc.cluster.local."         // 100 IPv4, 150 IPv6 addresses
	mysql        = "mysql.db.svc.cluster.local."             // headless
	nope         = "nope.bookinfo.svc.cluster.local."        // not in the table
	extTable     = "ext-table.bookinfo.svc.cluster.local."   // -> reviews
	extChain     = "ext-chain.bookinfo.svc.cluster.local."   // -> ext-table -> reviews
	extNoAAAA    = "ext-noaaaa.bookinfo.svc.cluster.local."  // -> ratings
	extUnknown   = "ext-unknown.bookinfo.svc.cluster.local." // -> nope
	extOK        = "ext-ok.bookinfo.svc.cluster.local."      // -> ok.example, answered upstream
	extNX        = "ext-nx.bookinfo.svc.cluster.local."      // -> nx.example, NXDOMAIN upstream
	extNoData    = "ext-nodata.bookinfo.svc.cluster.local."  // -> nodata.example, NODATA upstream
	extServfail  = "ext-servfail.bookinfo.svc.cluster.local."
	extRefused   = "ext-refused.bookinfo.svc.cluster.local."
	extSilent    = "ext-silent.bookinfo.svc.cluster.local." // -> silent.example, never answered
	// shortcut is reviews.bookinfo with the search domain of namespace
	// bookinfo appended: meshdns answers it with a CNAME to reviews.
	shortcut = "reviews.bookinfo.bookinfo.svc.cluster.local."
)

func cases(t *testing.T) []tcase {
	var all []tcase
	for _, group := range [][]tcase{
		rfc1035Cases(t), rfc2181Cases(t), rfc2308Cases(), rfc4592Cases(), rfc6604Cases(),
		rfc6891Cases(t), rfc7766Cases(t), rfc8020Cases(), rfc8482Cases(), kubernetesCases(),
	} {
		all = append(all, group...)
	}
	return all
}

// rfc1035Cases: names, labels, header, classes, opcodes, the zone apex and
// the UDP size limit (RFC 1034, 1035 and the RFCs that define the opcodes).
func rfc1035Cases(t *testing.T) []tcase {
	reviewsA := list(a(reviews, "10.96.1.11"))
	notimp := want{rcode: dns.RcodeNotImplemented, errorReply: true}
	refused := want{rcode: dns.RcodeRefused, errorReply: true}
	// The server's behaviour, not meshdns's: miekg/dns's server rejects a
	// message whose QDCOUNT is not 1 (FORMERR) or whose opcode is neither
	// QUERY nor NOTIFY (NOTIMP) before CoreDNS sees it, and its reply is the
	// bare header: no question to echo (noQuestion).
	formerr := want{rcode: dns.RcodeFormatError, errorReply: true, noQuestion: true}
	upd := &dns.A{Hdr: dns.RR_Header{Name: "x.cluster.local.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 30}, A: []byte{192, 0, 2, 1}}
	ixfrSOA := &dns.SOA{Hdr: dns.RR_Header{Name: clusterLocal, Rrtype: dns.TypeSOA, Class: dns.ClassINET},
		Ns: "ns.dns.cluster.local.", Mbox: "hostmaster.cluster.local.", Serial: 1}
	return []tcase{
		{name: "RFC 1035 §4.1.1: the ID is echoed, QR and AA are set, RD is echoed",
			q: query{name: reviews, qtype: dns.TypeA}, want: want{answer: reviewsA}},
		{name: "RFC 1035 §4.1.1: RD=0 and CD=1 are echoed, AD and Z are 0 though the query set them",
			q: query{name: reviews, qtype: dns.TypeA, noRD: true, cd: true, ad: true, z: true}, want: want{answer: reviewsA}},
		{name: "RFC 1034 §3.1: names match case-insensitively, the A owner keeps the question's 0x20 case",
			q:    query{name: "ReViEwS.BookInfo.SVC.cluster.LOCAL.", qtype: dns.TypeA},
			want: want{answer: list(a("ReViEwS.BookInfo.SVC.cluster.LOCAL.", "10.96.1.11"))}},
		{name: "RFC 1034 §3.1: an SRV owner keeps the question's 0x20 case",
			q:    query{name: "_HTTP._Tcp.Reviews.bookinfo.svc.cluster.local.", qtype: dns.TypeSRV},
			want: want{answer: list(srv("_HTTP._Tcp.Reviews.bookinfo.svc.cluster.local.", 9080, reviews))}},
		{name: "RFC 1034 §3.1: a wildcard answer's owner keeps the question's 0x20 case",
			q:    query{name: "Q.Wild.EXAMPLE.", qtype: dns.TypeA},
			want: want{answer: list(a("Q.Wild.EXAMPLE.", "240.240.0.20"))}},
		{name: "RFC 1034 §3.1: an NXDOMAIN echoes the question's 0x20 case",
			q:    query{name: "NoPe.BookInfo.svc.cluster.local.", qtype: dns.TypeA},
			want: want{rcode: dns.RcodeNameError, ns: list(soa(clusterLocal))}},
		// QDCOUNT 0 and 2: FORMERR from miekg/dns's server (the server's
		// behaviour, not meshdns's), without a question (see formerr).
		{name: "RFC 1035 §4.1.2: a query with QDCOUNT 0 is FORMERR",
			q: query{qtype: dns.TypeA}, want: formerr},
		{name: "RFC 1035 §4.1.2: a query with QDCOUNT 2 is FORMERR",
			q: query{name: reviews, qtype: dns.TypeA, second: ratings}, want: formerr},
		// QR=1: miekg/dns's server drops it (the server's behaviour).
		{name: "RFC 1035 §4.1.1: a message with QR=1 gets no reply",
			q: query{name: reviews, qtype: dns.TypeA, qr: true}, want: want{noReply: true}},
		// IQUERY, STATUS, UPDATE: NOTIMP from miekg/dns's server (the
		// server's behaviour, not meshdns's), whose reply has no question
		// (noQuestion). NOTIFY reaches meshdns, which answers NOTIMP itself,
		// question echoed.
		{name: "RFC 3425 §3: opcode IQUERY (1) is NOTIMP",
			q: query{name: reviews, qtype: dns.TypeA, opcode: dns.OpcodeIQuery}, want: with(notimp, noQuestion)},
		{name: "RFC 1035 §4.1.1: opcode STATUS (2) is NOTIMP",
			q: query{name: reviews, qtype: dns.TypeA, opcode: dns.OpcodeStatus}, want: with(notimp, noQuestion)},
		{name: "RFC 2136 §2: opcode UPDATE (5) is NOTIMP",
			q:    query{name: clusterLocal, qtype: dns.TypeSOA, opcode: dns.OpcodeUpdate, ns: []dns.RR{upd}},
			want: with(notimp, noQuestion)},
		{name: "RFC 1996 §3: NOTIFY (4) for a mesh name is NOTIMP",
			q: query{name: reviews, qtype: dns.TypeSOA, opcode: dns.OpcodeNotify, aa: true}, want: notimp},
		{name: "RFC 1996 §3: NOTIFY (4) for the authoritative zone cluster.local is NOTIMP",
			q: query{name: clusterLocal, qtype: dns.TypeSOA, opcode: dns.OpcodeNotify, aa: true}, want: notimp},
		// Classes: meshdns holds IN data only, and refuses another class
		// for every name it answers itself (mesh names, its empty
		// non-terminals, its authoritative zones, their apexes). With
		// forward in the block CoreDNS's server lets such queries through to
		// the plugins, so these REFUSED are meshdns's own.
		{name: "RFC 1035 §3.2.4: class CH at a mesh name is REFUSED",
			q: query{name: reviews, qtype: dns.TypeA, class: dns.ClassCHAOS}, want: refused},
		{name: "RFC 1035 §3.2.4: class HS at a mesh name is REFUSED",
			q: query{name: reviews, qtype: dns.TypeA, class: dns.ClassHESIOD}, want: refused},
		{name: "RFC 2136 §1.3: class NONE at a mesh name is REFUSED",
			q: query{name: reviews, qtype: dns.TypeA, class: dns.ClassNONE}, want: refused},
		{name: "RFC 1035 §3.2.5: class ANY at a mesh name is REFUSED",
			q: query{name: reviews, qtype: dns.TypeA, class: dns.ClassANY}, want: refused},
		{name: "RFC 1035 §3.2.4: class CH at a name a wildcard covers is REFUSED",
			q: query{name: "q.wild.example.", qtype: dns.TypeA, class: dns.ClassCHAOS}, want: refused},
		{name: "RFC 1035 §3.2.4: class CH at an empty non-terminal of the authoritative zone is REFUSED",
			q: query{name: "bookinfo.svc.cluster.local.", qtype: dns.TypeA, class: dns.ClassCHAOS}, want: refused},
		{name: "RFC 1035 §3.2.4: class CH at an empty non-terminal where unknown names fall through (bookinfo.) is REFUSED",
			q: query{name: "bookinfo.", qtype: dns.TypeA, class: dns.ClassCHAOS}, want: refused},
		{name: "RFC 1035 §3.2.4: class CH at an unknown name of the authoritative zone is REFUSED, not passed on",
			q: query{name: nope, qtype: dns.TypeA, class: dns.ClassCHAOS}, want: refused},
		{name: "RFC 1035 §3.2.4: class CH at the authoritative zone's apex is REFUSED",
			q: query{name: clusterLocal, qtype: dns.TypeSOA, class: dns.ClassCHAOS}, want: refused},
		// A name meshdns does not know, where unknown names fall through,
		// goes on to forward as any other query: what forward does with a CH
		// question is forward's business (as in stock CoreDNS with forward).
		// The upstream answers it as it answers every name under example.
		{name: "RFC 1035 §3.2.4: class CH at a name meshdns does not know, where unknown names fall through, is passed on",
			q:    query{name: "www.example.", qtype: dns.TypeA, class: dns.ClassCHAOS},
			want: want{rcode: dns.RcodeNameError, ns: list(upSOA), forwarded: true, up: list("www.example. CH A")}},
		{name: "RFC 2181 §11: a label holding an escaped dot matches no table name (NXDOMAIN, cluster.local's SOA)",
			q:    query{name: `reviews\.bookinfo.svc.cluster.local.`, qtype: dns.TypeA},
			want: want{rcode: dns.RcodeNameError, ns: list(soa(clusterLocal))}},
		{name: "RFC 2181 §11: a label holding an escaped dot makes no search-domain short-cut",
			q:    query{name: `reviews.bookinfo\.svc.cluster.local.`, qtype: dns.TypeA},
			want: want{rcode: dns.RcodeNameError, ns: list(soa(clusterLocal))}},
		{name: "RFC 2181 §11: a label holding a binary octet matches no table name",
			q:    query{name: `reviews\000.bookinfo.svc.cluster.local.`, qtype: dns.TypeA},
			want: want{rcode: dns.RcodeNameError, ns: list(soa(clusterLocal))}},
		// foo\.cluster.local. is the labels "foo.cluster" and "local": it is
		// in the zone local., not cluster.local., so it falls through to the
		// upstream (whose NXDOMAIN carries the root's SOA) and is not
		// answered with cluster.local's SOA.
		{name: "RFC 2181 §11: a name whose escaped dot precedes a zone suffix (foo\\.cluster.local.) is not in that zone, it is passed on",
			q:    query{name: `foo\.cluster.local.`, qtype: dns.TypeA},
			want: want{rcode: dns.RcodeNameError, ns: list(rootSOA), forwarded: true, up: list(`foo\.cluster.local. A`)}},
		{name: "RFC 1034 §4.3.2: SOA at the authoritative zone's apex is answered",
			q:    query{name: clusterLocal, qtype: dns.TypeSOA},
			want: want{answer: list(soa(clusterLocal)), ns: unchecked, extra: unchecked}},
		{name: "RFC 1034 §4.3.2: NS at the authoritative zone's apex is answered",
			q:    query{name: clusterLocal, qtype: dns.TypeNS},
			want: want{answer: list(rr(clusterLocal, "NS ns.dns.cluster.local.")), ns: unchecked, extra: unchecked}},
		{name: "RFC 2308 §2.2: another type at the authoritative zone's apex is NODATA with its SOA",
			q: query{name: clusterLocal, qtype: dns.TypeA}, want: want{ns: list(soa(clusterLocal))}},
		{name: "RFC 1034 §4.2.1, RFC 2181 §10.3: the apex's NS target ns.dns.cluster.local has an A, the server's bind address",
			q: query{name: "ns.dns." + clusterLocal, qtype: dns.TypeA}, want: want{answer: list(a("ns.dns."+clusterLocal, "127.0.0.1"))}},
		{name: "RFC 2308 §2.2: ns.dns.cluster.local has no AAAA (the server binds no IPv6 address), NODATA",
			q: query{name: "ns.dns." + clusterLocal, qtype: dns.TypeAAAA}, want: want{ns: list(soa(clusterLocal))}},
		{name: "RFC 8020 §2: dns.cluster.local, above the NS target, is an empty non-terminal, NODATA",
			q: query{name: "dns." + clusterLocal, qtype: dns.TypeA}, want: want{ns: list(soa(clusterLocal))}},
		{name: "RFC 5936 §2.2.1: AXFR of the authoritative zone is REFUSED",
			q: query{name: clusterLocal, qtype: dns.TypeAXFR}, want: refused},
		{name: "RFC 5936 §2.2.1: AXFR of a mesh name is REFUSED",
			q: query{name: reviews, qtype: dns.TypeAXFR}, want: refused},
		{name: "RFC 1995 §3: IXFR of the authoritative zone is REFUSED",
			q: query{name: clusterLocal, qtype: dns.TypeIXFR, ns: []dns.RR{ixfrSOA}}, want: refused},
		{name: "RFC 1035 §4.2.1 (UDP only): without EDNS a large answer is cut to 512 octets, whole records, TC=1",
			only: "udp", q: query{name: big, qtype: dns.TypeA},
			want: want{answer: tableAddrs(t, meshFile, "big.bookinfo.svc.cluster.local", big, dns.TypeA), truncated: true}},
		{name: "RFC 1035 §4.2.2 (TCP only): the same large question over TCP gets every record",
			only: "tcp", q: query{name: big, qtype: dns.TypeA},
			want: want{answer: tableAddrs(t, meshFile, "big.bookinfo.svc.cluster.local", big, dns.TypeA)}},
	}
}

func with(w want, f func(*want)) want {
	f(&w)
	return w
}

func noQuestion(w *want) { w.noQuestion = true }

// rfc2181Cases: RRsets and CNAMEs.
func rfc2181Cases(t *testing.T) []tcase {
	mysqlSRV := "_mysql._tcp." + mysql
	return []tcase{
		{name: "RFC 2181 §5.2: the 100 A records of one RRset all have the configured TTL",
			q:    query{name: big, qtype: dns.TypeA, edns: 4096},
			want: want{answer: tableAddrs(t, meshFile, "big.bookinfo.svc.cluster.local", big, dns.TypeA)}},
		{name: "RFC 2181 §5.2: the SRV records of a headless service all have the configured TTL",
			q: query{name: mysqlSRV, qtype: dns.TypeSRV},
			want: want{answer: list(
				srv(mysqlSRV, 3306, "mysql-0."+mysql),
				srv(mysqlSRV, 3306, "mysql-1."+mysql),
				srv(mysqlSRV, 3306, "10-244-3-7."+mysql),
			)}},
		{name: "RFC 2181 §5.1: an address listed twice in the table is answered once",
			q: query{name: dup, qtype: dns.TypeA}, want: want{answer: list(a(dup, "10.96.2.1"), a(dup, "10.96.2.2"))}},
		{name: "RFC 2181 §5.1: a headless service's addresses and endpoints give each address once",
			q:    query{name: mysql, qtype: dns.TypeA},
			want: want{answer: list(a(mysql, "10.244.1.5"), a(mysql, "10.244.2.6"), a(mysql, "10.244.3.7"))}},
		{name: "RFC 2181 §10.1: A at an ExternalName is its CNAME, then the target's A under the target's name",
			q:    query{name: extTable, qtype: dns.TypeA},
			want: want{answer: list(cname(extTable, reviews), a(reviews, "10.96.1.11"))}},
		{name: "RFC 2181 §10.1: SRV at an ExternalName is its CNAME and the target's SRV, never its own ports",
			q:    query{name: extTable, qtype: dns.TypeSRV},
			want: want{answer: list(cname(extTable, reviews), srv(reviews, 9080, reviews))}},
	}
}

// rfc2308Cases: negative answers. Chains that end in a name error are here;
// the rest of RFC 6604 is in rfc6604Cases.
func rfc2308Cases() []tcase {
	nx := func(answer ...string) want {
		return want{rcode: dns.RcodeNameError, answer: answer, ns: list(soa(clusterLocal))}
	}
	return []tcase{
		{name: "RFC 2308 §2.1, §3: NXDOMAIN has no answer and one SOA of the authoritative zone, TTL = its MINIMUM",
			q: query{name: nope, qtype: dns.TypeA}, want: nx()},
		{name: "RFC 2308 §2.2, §3: NODATA for a family the host lacks has no answer and the same SOA",
			q: query{name: ratings, qtype: dns.TypeAAAA}, want: want{ns: list(soa(clusterLocal))}},
		{name: "RFC 2308 §2.2: NODATA for a type meshdns never serves (TXT) carries the SOA",
			q: query{name: reviews, qtype: dns.TypeTXT}, want: want{ns: list(soa(clusterLocal))}},
		{name: "RFC 2308 §2.2: NODATA at a short name outside the cluster domain carries the plugin zone's SOA",
			q: query{name: "ratings.bookinfo.", qtype: dns.TypeAAAA}, want: want{ns: list(soa("."))}},
		{name: "RFC 2308 §2.2: NODATA at a name a wildcard covers carries the plugin zone's SOA",
			q: query{name: "q.wild.example.", qtype: dns.TypeAAAA}, want: want{ns: list(soa("."))}},
		{name: "RFC 2308 §2.1, RFC 6604 §2: a CNAME to an unknown name of the authoritative zone is NXDOMAIN, the CNAME, that zone's SOA",
			q: query{name: extUnknown, qtype: dns.TypeA}, want: nx(cname(extUnknown, nope))},
		{name: "RFC 2308 §2.1, RFC 6604 §2: a CNAME to a name the upstream says is NXDOMAIN is NXDOMAIN, the CNAME, the upstream's SOA",
			q:    query{name: extNX, qtype: dns.TypeA},
			want: want{rcode: dns.RcodeNameError, answer: list(cname(extNX, "nx.example.")), ns: list(upSOA), up: list("nx.example. A")}},
	}
}

// rfc4592Cases: wildcards, and where meshdns follows Istio instead.
func rfc4592Cases() []tcase {
	wild := func(owner, ip string) want { return want{answer: list(a(owner, ip))} }
	return []tcase{
		{name: "RFC 4592 §3.3.1: *.wild.example covers a name one label below it, owned by the question name",
			q: query{name: "q.wild.example.", qtype: dns.TypeA}, want: wild("q.wild.example.", "240.240.0.20")},
		{name: "RFC 4592 §3.3.1: *.wild.example covers a deeper name",
			q: query{name: "q.r.wild.example.", qtype: dns.TypeA}, want: wild("q.r.wild.example.", "240.240.0.20")},
		{name: "RFC 4592 §2.2.2, RFC 8020 §2: the wildcard's parent wild.example is an empty non-terminal, NODATA",
			q: query{name: "wild.example.", qtype: dns.TypeA}, want: want{ns: list(soa("."))}},
		{name: "RFC 4592 §2.3: *.wild.example asked literally is answered",
			q: query{name: "*.wild.example.", qtype: dns.TypeA}, want: wild("*.wild.example.", "240.240.0.20")},
		{name: "RFC 4592 §2.2.1: a host of its own (x.y.wild.example) is not synthesised from the wildcard",
			q: query{name: "x.y.wild.example.", qtype: dns.TypeA}, want: wild("x.y.wild.example.", "240.240.0.22")},
		{name: "RFC 4592 §3.3.1, deliberately Istio's: the most specific wildcard (*.a.wild.example) wins",
			q: query{name: "b.a.wild.example.", qtype: dns.TypeA}, want: wild("b.a.wild.example.", "240.240.0.21")},
		{name: "RFC 4592 §3.3.1, deliberately Istio's: the most specific wildcard wins for deeper names too",
			q: query{name: "c.b.a.wild.example.", qtype: dns.TypeA}, want: wild("c.b.a.wild.example.", "240.240.0.21")},
		{name: "RFC 4592 §2.2.2, deliberately Istio's: a name below the existing y.wild.example is answered from *.wild.example",
			q: query{name: "z.y.wild.example.", qtype: dns.TypeA}, want: wild("z.y.wild.example.", "240.240.0.20")},
		{name: "RFC 4592 §2.2.2, deliberately Istio's: the empty non-terminal y.wild.example is answered from *.wild.example",
			q: query{name: "y.wild.example.", qtype: dns.TypeA}, want: wild("y.wild.example.", "240.240.0.20")},
		{name: "RFC 4592 §2.2.2, deliberately Istio's: a.wild.example, parent of *.a.wild.example, is answered from *.wild.example",
			q: query{name: "a.wild.example.", qtype: dns.TypeA}, want: wild("a.wild.example.", "240.240.0.20")},
		// a\.wild.example. is the labels "a.wild" and "example": a child of
		// example., not below wild.example, so no wildcard hit. meshdns does
		// not know it and passes it on; the upstream's NXDOMAIN shows it.
		{name: "RFC 4592 §3.3.1, RFC 2181 §11: *.wild.example does not cover a\\.wild.example. (labels \"a.wild\", \"example\"), it is passed on",
			q:    query{name: `a\.wild.example.`, qtype: dns.TypeA},
			want: want{rcode: dns.RcodeNameError, ns: list(upSOA), forwarded: true, up: list(`a\.wild.example. A`)}},
	}
}

// rfc6604Cases: CNAME chains of ExternalName hosts.
func rfc6604Cases() []tcase {
	viaUp := func(qtype uint16) want {
		return want{answer: list(cname(extOK, "ok.example."), upAnswer(qtype)), up: list("ok.example. " + dns.TypeToString[qtype])}
	}
	servfail := func(question string) want {
		return want{rcode: dns.RcodeServerFailure, errorReply: true, answer: unchecked, ns: unchecked, up: list(question)}
	}
	return []tcase{
		{name: "RFC 6604 §2: AAAA at an ExternalName to a served name is the CNAME, then the target's AAAA",
			q:    query{name: extTable, qtype: dns.TypeAAAA},
			want: want{answer: list(cname(extTable, reviews), aaaa(reviews, "fd00:10:96::b"))}},
		{name: "RFC 6604 §2: a chain of two ExternalNames is followed to the target's records",
			q:    query{name: extChain, qtype: dns.TypeA},
			want: want{answer: list(cname(extChain, extTable), cname(extTable, reviews), a(reviews, "10.96.1.11"))}},
		{name: "RFC 6604 §2: a CNAME to a served name without the type is NOERROR, the CNAME, the target zone's SOA (not the root's)",
			q:    query{name: extNoAAAA, qtype: dns.TypeAAAA},
			want: want{answer: list(cname(extNoAAAA, ratings)), ns: list(soa(clusterLocal))}},
		{name: "RFC 6604 §2, §3: A at an ExternalName to an upstream name is the CNAME and the upstream's A, AA=1",
			q: query{name: extOK, qtype: dns.TypeA}, want: viaUp(dns.TypeA)},
		{name: "RFC 6604 §2: AAAA at an ExternalName to an upstream name is the CNAME and the upstream's AAAA",
			q: query{name: extOK, qtype: dns.TypeAAAA}, want: viaUp(dns.TypeAAAA)},
		{name: "RFC 6604 §2: TXT at an ExternalName is chased upstream too",
			q: query{name: extOK, qtype: dns.TypeTXT}, want: viaUp(dns.TypeTXT)},
		{name: "RFC 6604 §2: MX at an ExternalName is chased upstream too",
			q: query{name: extOK, qtype: dns.TypeMX}, want: viaUp(dns.TypeMX)},
		{name: "RFC 6604 §2: SRV at an ExternalName is chased upstream too",
			q: query{name: extOK, qtype: dns.TypeSRV}, want: viaUp(dns.TypeSRV)},
		{name: "RFC 6604 §2: an upstream NODATA is NOERROR, the CNAME, the upstream's SOA",
			q:    query{name: extNoData, qtype: dns.TypeA},
			want: want{answer: list(cname(extNoData, "nodata.example.")), ns: list(upSOA), up: list("nodata.example. A")}},
		{name: "RFC 6604 §2: an upstream SERVFAIL for the target is SERVFAIL",
			q: query{name: extServfail, qtype: dns.TypeA}, want: servfail("servfail.example. A")},
		{name: "RFC 6604 §2: an upstream REFUSED for the target is SERVFAIL",
			q: query{name: extRefused, qtype: dns.TypeA}, want: servfail("refused.example. A")},
		{name: "RFC 6604 §2: an upstream that never answers for the target is SERVFAIL",
			q: query{name: extSilent, qtype: dns.TypeA}, want: with(servfail("silent.example. A"), func(w *want) { w.slow = true })},
		{name: "RFC 6604 §2: a CNAME question at an ExternalName gets the CNAME only",
			q:    query{name: extOK, qtype: dns.TypeCNAME},
			want: want{answer: list(cname(extOK, "ok.example.")), notUp: list("ok.example. CNAME")}},
		{name: "RFC 6604 §2: a CNAME question at a chain gets its first CNAME only",
			q: query{name: extChain, qtype: dns.TypeCNAME}, want: want{answer: list(cname(extChain, extTable))}},
	}
}

// rfc6891Cases: EDNS.
func rfc6891Cases(t *testing.T) []tcase {
	reviewsA := list(a(reviews, "10.96.1.11"))
	return []tcase{
		{name: "RFC 6891 §7: no OPT in the query, no OPT in the reply",
			q: query{name: reviews, qtype: dns.TypeA}, want: want{answer: reviewsA}},
		{name: "RFC 6891 §6.1.1: an OPT in the query gets exactly one OPT, version 0, in the reply",
			q: query{name: reviews, qtype: dns.TypeA, edns: 1232}, want: want{answer: reviewsA}},
		{name: "RFC 3225 §3: DO=1 is echoed on an answer",
			q: query{name: reviews, qtype: dns.TypeA, edns: 1232, do: true}, want: want{answer: reviewsA}},
		{name: "RFC 3225 §3: DO=1 is echoed on an NXDOMAIN",
			q:    query{name: nope, qtype: dns.TypeA, edns: 1232, do: true},
			want: want{rcode: dns.RcodeNameError, ns: list(soa(clusterLocal))}},
		{name: "RFC 3225 §3: DO=1 is echoed on a CNAME chain answered upstream",
			q:    query{name: extOK, qtype: dns.TypeA, edns: 1232, do: true},
			want: want{answer: list(cname(extOK, "ok.example."), upAnswer(dns.TypeA)), up: list("ok.example. A")}},
		// The server's behaviour, not meshdns's: CoreDNS's server answers
		// BADVERS itself (edns.Version) before any plugin runs, and its OPT
		// never carries DO; so this query does not set DO, and AA is left
		// open (errorReply).
		{name: "RFC 6891 §6.1.3: EDNS version 1 is BADVERS, with an OPT of version 0",
			q:    query{name: reviews, qtype: dns.TypeA, edns: 1232, version: 1},
			want: want{rcode: dns.RcodeBadVers, errorReply: true}},
		{name: "RFC 6891 §6.1.1: a query with two OPT records is FORMERR",
			q:    query{name: reviews, qtype: dns.TypeA, edns: 1232, twoOPT: true},
			want: want{rcode: dns.RcodeFormatError, errorReply: true, noOPT: true, answer: unchecked, ns: unchecked}},
		{name: "RFC 6891 §6.1.2: an OPT owned by a name other than the root is FORMERR",
			q:    query{name: reviews, qtype: dns.TypeA, edns: 1232, optName: "example."},
			want: want{rcode: dns.RcodeFormatError, errorReply: true, noOPT: true, answer: unchecked, ns: unchecked}},
		{name: "RFC 6891 §6.2.5: an advertised UDP size below 512 is treated as 512",
			q:    query{name: medium, qtype: dns.TypeA, edns: 100},
			want: want{answer: tableAddrs(t, meshFile, "medium.bookinfo.svc.cluster.local", medium, dns.TypeA)}},
		{name: "RFC 6891 §6.2.3 (UDP only): a reply never exceeds an advertised 1232 octets, TC=1 when records were dropped",
			only: "udp", q: query{name: big, qtype: dns.TypeA, edns: 1232},
			want: want{answer: tableAddrs(t, meshFile, "big.bookinfo.svc.cluster.local", big, dns.TypeA), truncated: true}},
		{name: "RFC 6891 §6.2.3 (UDP only): a reply never exceeds an advertised 4096 octets, TC=1 when records were dropped",
			only: "udp", q: query{name: big, qtype: dns.TypeAAAA, edns: 4096},
			want: want{answer: tableAddrs(t, meshFile, "big.bookinfo.svc.cluster.local", big, dns.TypeAAAA), truncated: true}},
		{name: "RFC 6891 §6.1.2: an unknown EDNS option is ignored and not echoed",
			q: query{name: reviews, qtype: dns.TypeA, edns: 1232, option: true}, want: want{answer: reviewsA}},
		{name: "RFC 6891 §6.1.2: an unknown EDNS option is ignored on a negative answer too",
			q:    query{name: ratings, qtype: dns.TypeAAAA, edns: 1232, option: true},
			want: want{ns: list(soa(clusterLocal))}},
	}
}

// rfc7766Cases: TCP; pipelining and connection reuse are in tcp_test.go.
func rfc7766Cases(t *testing.T) []tcase {
	return []tcase{
		{name: "RFC 7766 §5 (TCP only): a large answer is never truncated, whatever UDP size the query advertises",
			only: "tcp", q: query{name: big, qtype: dns.TypeAAAA, edns: 4096},
			want: want{answer: tableAddrs(t, meshFile, "big.bookinfo.svc.cluster.local", big, dns.TypeAAAA)}},
	}
}

// rfc8020Cases: ancestors of served names exist; nothing exists below an
// NXDOMAIN.
func rfc8020Cases() []tcase {
	// An empty non-terminal where unknown names fall through (bookinfo.,
	// wild.example) is NODATA too, with the SOA of the apex rule (the plugin
	// zone's, .): upstream it would be NXDOMAIN, which denies the names
	// below it that meshdns serves.
	nodata := func(apex string) want { return want{ns: list(soa(apex))} }
	nx := want{rcode: dns.RcodeNameError, ns: list(soa(clusterLocal))}
	return []tcase{
		{name: "RFC 8020 §2: the ancestor bookinfo.svc.cluster.local is NODATA, not NXDOMAIN",
			q: query{name: "bookinfo.svc.cluster.local.", qtype: dns.TypeA}, want: nodata(clusterLocal)},
		{name: "RFC 8020 §2: the ancestor svc.cluster.local is NODATA, not NXDOMAIN",
			q: query{name: "svc.cluster.local.", qtype: dns.TypeA}, want: nodata(clusterLocal)},
		{name: "RFC 8020 §2: _tcp.reviews.bookinfo.svc.cluster.local, above _http._tcp.reviews..., is NODATA",
			q: query{name: "_tcp." + reviews, qtype: dns.TypeSRV}, want: nodata(clusterLocal)},
		{name: "RFC 8020 §2: _udp.multi.bookinfo.svc.cluster.local, above a UDP port, is NODATA",
			q: query{name: "_udp." + multi, qtype: dns.TypeSRV}, want: nodata(clusterLocal)},
		{name: "RFC 8020 §2: _sctp.multi.bookinfo.svc.cluster.local, above an SCTP port, is NODATA",
			q: query{name: "_sctp." + multi, qtype: dns.TypeSRV}, want: nodata(clusterLocal)},
		{name: "RFC 8020 §2: the short form _tcp.reviews.bookinfo. is NODATA",
			q: query{name: "_tcp.reviews.bookinfo.", qtype: dns.TypeSRV}, want: nodata(".")},
		{name: "RFC 8020 §2: bookinfo., above the short name reviews.bookinfo., is NODATA",
			q: query{name: "bookinfo.", qtype: dns.TypeA}, want: nodata(".")},
		{name: "RFC 8020 §2: bookinfo.svc., above the short name reviews.bookinfo.svc., is NODATA",
			q: query{name: "bookinfo.svc.", qtype: dns.TypeA}, want: nodata(".")},
		{name: "RFC 8020 §2: below the NXDOMAIN nope.bookinfo.svc.cluster.local nothing answers",
			q: query{name: "x." + nope, qtype: dns.TypeA}, want: nx},
		{name: "RFC 8020 §2: _udp.reviews.bookinfo.svc.cluster.local, with no UDP port, is NXDOMAIN",
			q: query{name: "_udp." + reviews, qtype: dns.TypeSRV}, want: nx},
		{name: "RFC 8020 §2: _http._udp.reviews.bookinfo.svc.cluster.local, below that NXDOMAIN, is NXDOMAIN",
			q: query{name: "_http._udp." + reviews, qtype: dns.TypeSRV}, want: nx},
	}
}

// rfc8482Cases: ANY.
func rfc8482Cases() []tcase {
	httpSRV := "_http._tcp." + reviews
	return []tcase{
		{name: "RFC 8482 §4.1: ANY at a served host is its A and AAAA RRsets",
			q:    query{name: reviews, qtype: dns.TypeANY},
			want: want{answer: list(a(reviews, "10.96.1.11"), aaaa(reviews, "fd00:10:96::b"))}},
		{name: "RFC 8482 §4.1: ANY at a name a wildcard covers is its A RRset",
			q: query{name: "q.wild.example.", qtype: dns.TypeANY}, want: want{answer: list(a("q.wild.example.", "240.240.0.20"))}},
		{name: "RFC 8482 §4.1: ANY at an ExternalName is its CNAME only",
			q: query{name: extTable, qtype: dns.TypeANY}, want: want{answer: list(cname(extTable, reviews))}},
		{name: "RFC 8482 §4.1: ANY at an SRV name is its SRV RRset",
			q: query{name: httpSRV, qtype: dns.TypeANY}, want: want{answer: list(srv(httpSRV, 9080, reviews))}},
		{name: "RFC 8482 §4.1: ANY at an empty non-terminal is NODATA",
			q: query{name: "bookinfo.svc.cluster.local.", qtype: dns.TypeANY}, want: want{ns: list(soa(clusterLocal))}},
		{name: "RFC 8482 §4.1: ANY at the authoritative zone's apex is its SOA and NS",
			q:    query{name: clusterLocal, qtype: dns.TypeANY},
			want: want{answer: list(soa(clusterLocal), rr(clusterLocal, "NS ns.dns.cluster.local.")), ns: unchecked, extra: unchecked}},
		{name: "RFC 8482 §4.1: ANY at a search-domain short-cut (reviews.bookinfo.bookinfo.svc.cluster.local) is its CNAME only",
			q:    query{name: shortcut, qtype: dns.TypeANY},
			want: want{answer: list(cname(shortcut, reviews))}},
	}
}

// kubernetesCases: the cluster domain's own record from the Kubernetes DNS
// specification, served whatever the source (the rest of that
// specification is test/kubernetes's).
func kubernetesCases() []tcase {
	version := "dns-version." + clusterLocal
	return []tcase{
		{name: "Kubernetes DNS spec 1.1.0 §2.2: dns-version.cluster.local TXT is \"1.1.0\", TTL 28800",
			q: query{name: version, qtype: dns.TypeTXT}, want: want{answer: list(version + ` 28800 IN TXT "1.1.0"`)}},
	}
}
