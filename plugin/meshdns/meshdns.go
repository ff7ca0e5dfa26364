// Package meshdns is the CoreDNS plugin that answers service-mesh names from
// the in-memory table fed by its sources.
package meshdns

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/pkg/fall"
	"github.com/coredns/coredns/plugin/pkg/upstream"
	"github.com/coredns/coredns/request"
	"github.com/miekg/dns"

	"github.com/meshdns/meshdns/plugin/table"
)

// MeshDNS is the plugin handler.
type MeshDNS struct {
	Next plugin.Handler
	// Zones the plugin answers for.
	Zones []string
	// Authoritative zones: unknown names there get NXDOMAIN, never fall through.
	Authoritative []string
	Fall          fall.F

	table    *table.Table
	domain   string // cluster domain with trailing dot
	ttl      uint32
	sources  []*sink
	upstream *upstream.Upstream
	counters counters
	soas     map[string]*soaCache // by apex, made by setSOAs
	siblings *siblings            // nil without search domains to share NXDOMAINs under
	// versionName is "dns-version.<domain>", the Kubernetes DNS schema
	// version's name.
	versionName string
	// listen are the server's own addresses, for its name server's name;
	// none when it listens on every address.
	listen []netip.Addr
	// noCapture is `capture off`: see sink.withoutVIPs.
	noCapture bool
	// maxPassed is max_fallthrough (0: no bound); passed counts the queries
	// passed on to the next plugin now.
	maxPassed int64
	passed    atomic.Int64
}

// Name implements plugin.Handler.
func (m *MeshDNS) Name() string { return pluginName }

// Ready implements the ready plugin's Readiness: every source loaded once.
func (m *MeshDNS) Ready() bool {
	for _, s := range m.sources {
		if !s.synced.Load() {
			return false
		}
	}
	return true
}

// ServeDNS implements plugin.Handler. After the checks every query needs
// (a well-formed question, a zone of ours, sources loaded), it answers by the
// precedence in the README: an exact name, a wildcard, a search-domain
// short-cut, and last what the table does not serve. The table's Lookup
// decides which rule matches; each rule is a method below.
//
// Every query runs on a fresh goroutine stack, and a large frame makes Go
// grow that stack, which costs more than the answer. So ServeDNS and the
// methods of the common answers keep small frames, and what builds a
// dns.Msg lives in methods of its own (answerChain, chaseOutside, write).
func (m *MeshDNS) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	if len(r.Question) == 0 { // the server refuses these; a test or another plugin may not
		return dns.RcodeFormatError, nil
	}
	if len(r.Extra) > 0 && badOPT(r) {
		return dns.RcodeFormatError, nil
	}
	// The question as sent, lower-cased: names with escapes are looked up
	// apart, so the costlier request.Request.Name() buys nothing here.
	q := r.Question[0]
	qname := strings.ToLower(q.Name)
	if q.Qtype == dns.TypePTR && plainQuery(r) {
		if owners := m.ptrOwners(qname); len(owners) > 0 {
			return m.write(ctx, w, r, resultHit, dns.RcodeSuccess, ptrs(q.Name, m.ttl, owners), nil)
		}
	}
	zone := matchZone(m.Zones, qname)
	if zone == "" {
		return plugin.NextOrFailure(m.Name(), m.Next, ctx, w, r)
	}
	if !m.Ready() {
		m.counters.inc(ctx, resultNotReady)
		return dns.RcodeServerFailure, nil
	}
	var match table.Match
	if strings.IndexByte(qname, '\\') < 0 {
		match = m.table.Lookup(qname)
	} else {
		match = m.escaped(qname)
	}
	if !plainQuery(r) || q.Qtype == dns.TypeAXFR || q.Qtype == dns.TypeIXFR {
		return m.refuse(ctx, w, r, qname, match)
	}
	switch match.Kind {
	case table.Hit:
		return m.exact(ctx, w, r, zone, match)
	case table.Wildcard:
		return m.wildcard(ctx, w, r, zone, match)
	case table.Shortcut:
		return m.shortcut(ctx, w, r, zone, match)
	}
	return m.unknown(ctx, w, r, qname, zone, match.Kind == table.Empty)
}

// exact answers a name the table serves: a host, one of its short names, an
// endpoint name, or an SRV name of one of those.
func (m *MeshDNS) exact(ctx context.Context, w dns.ResponseWriter, r *dns.Msg, zone string, match table.Match) (int, error) {
	return m.served(ctx, w, r, resultHit, zone, match)
}

// wildcard answers a name a "*.suffix" host covers; the owner is the name
// asked.
func (m *MeshDNS) wildcard(ctx context.Context, w dns.ResponseWriter, r *dns.Msg, zone string, match table.Match) (int, error) {
	return m.served(ctx, w, r, resultWildcard, zone, match)
}

// served answers the question's own name, whose record match found: A and
// AAAA from the record's wire form (writeAddrs), anything else as a dns.Msg
// (answerChain).
func (m *MeshDNS) served(ctx context.Context, w dns.ResponseWriter, r *dns.Msg, res result, zone string, match table.Match) (int, error) {
	if ok, err := m.writeAddrs(ctx, w, r, res, match); ok {
		return rcodeOf(err), err
	}
	return m.answerChain(ctx, w, r, res, zone, r.Question[0].Name, match, nil)
}

// shortcut answers "H.<search domain>" with a CNAME to the real name of H
// plus its records, saving the client the rest of its search walk.
func (m *MeshDNS) shortcut(ctx context.Context, w dns.ResponseWriter, r *dns.Msg, zone string, match table.Match) (int, error) {
	asked, qtype := r.Question[0].Name, r.Question[0].Qtype
	target := match.Record.Owner()
	if match.Record.Wildcard() {
		target = asked[:match.Cut]
	}
	answer := make([]dns.RR, 1, 4)
	answer[0] = &dns.CNAME{Hdr: hdr(asked, dns.TypeCNAME, m.ttl), Target: target}
	if qtype == dns.TypeCNAME || qtype == dns.TypeANY {
		return m.write(ctx, w, r, resultShortcut, dns.RcodeSuccess, answer, nil)
	}
	return m.answerChain(ctx, w, r, resultShortcut, zone, target, match, answer)
}

// unknown handles names the table does not serve: the apex of a zone meshdns
// is the authority for, the names of its name server, the Kubernetes DNS
// schema version, empty non-terminals (which exist but own no records) and
// unknown names.
func (m *MeshDNS) unknown(ctx context.Context, w dns.ResponseWriter, r *dns.Msg, qname, zone string, empty bool) (int, error) {
	if apex := m.apex(qname); apex != "" {
		return m.atApex(ctx, w, r, apex)
	}
	if qname == m.versionName {
		return m.version(ctx, w, r, SchemaVersion, m.domain)
	}
	if qname == clustersetVersionName && m.servesClusterset() {
		return m.version(ctx, w, r, MulticlusterSchemaVersion, zone)
	}
	if m.nameServer(qname) {
		return m.nsAddrs(ctx, w, r)
	}
	// An empty non-terminal is NODATA even where unknown names fall through:
	// upstream it would be NXDOMAIN, which RFC 8020 resolvers take to mean
	// that the names below it, which meshdns serves, do not exist.
	if empty || m.nameServerParent(qname) || m.reverseExists(qname) {
		return m.write(ctx, w, r, resultNoData, dns.RcodeSuccess, nil, m.soa(qname, zone))
	}
	if m.fallsThrough(qname) {
		return m.passOn(ctx, w, r, qname)
	}
	return m.write(ctx, w, r, resultNXDomain, dns.RcodeNameError, nil, m.soa(qname, zone))
}

// answerChain answers the question with what name, whose record match found,
// owns, after the records already in answer (a shortcut's CNAME). A CNAME
// chain is followed through the table, then through the rest of the server;
// the reply's rcode and negative SOA are those of the last name in the chain
// (RFC 6604, RFC 2308).
func (m *MeshDNS) answerChain(ctx context.Context, w dns.ResponseWriter, r *dns.Msg, res result, zone, name string, match table.Match, answer []dns.RR) (int, error) {
	qtype := r.Question[0].Qtype
	for range table.MaxChain + 1 {
		target := match.Record.Target()
		if target == "" {
			n := len(answer)
			answer = m.records(name, qtype, match, answer)
			if len(answer) > n {
				return m.write(ctx, w, r, res, dns.RcodeSuccess, answer, nil)
			}
			owner := strings.ToLower(name)
			if z := matchZone(m.Zones, owner); z != "" {
				zone = z
			}
			return m.write(ctx, w, r, resultNoData, dns.RcodeSuccess, answer, m.soa(owner, zone))
		}
		answer = append(answer, &dns.CNAME{Hdr: hdr(name, dns.TypeCNAME, m.ttl), Target: target})
		// RFC 8482: a CNAME is an answer to ANY on its own.
		if qtype == dns.TypeCNAME || qtype == dns.TypeANY {
			return m.write(ctx, w, r, res, dns.RcodeSuccess, answer, nil)
		}
		next := m.table.Lookup(target)
		if next.Kind != table.Hit && next.Kind != table.Wildcard {
			return m.chaseOutside(ctx, w, r, res, target, next.Kind, answer)
		}
		match, name = next, target
	}
	// A loop the table did not see (it refuses those it does).
	m.counters.inc(ctx, resultServFail)
	return dns.RcodeServerFailure, nil
}

// records appends to answer what name (the matched record's name, in the
// case the client used) owns of qtype; the record has no CNAME target.
func (m *MeshDNS) records(name string, qtype uint16, match table.Match, answer []dns.RR) []dns.RR {
	rec := match.Record
	switch {
	case match.SRV > 0:
		if qtype == dns.TypeSRV || qtype == dns.TypeANY {
			return append(answer, srvs(name, m.ttl, rec, match)...)
		}
	case qtype == dns.TypeA || qtype == dns.TypeAAAA:
		if len(answer) == 0 {
			return addrs(name, rec.Addrs(qtype)) // often the shared records themselves
		}
		return append(answer, addrs(name, rec.Addrs(qtype))...)
	case qtype == dns.TypeANY:
		// RFC 8482 allows a subset; a host owns nothing but its addresses.
		answer = append(answer, addrs(name, rec.A())...)
		return append(answer, addrs(name, rec.AAAA())...)
	case qtype == dns.TypeSRV && !rec.Wildcard():
		return append(answer, srvs(name, m.ttl, rec, match)...)
	}
	return answer
}

// chaseOutside finishes a CNAME chain whose target the table does not serve
// (kind says how the lookup matched it). Where meshdns is the authority for
// the target it answers itself, as for a query of its own; otherwise the
// rest of the server resolves it, as the kubernetes plugin does.
func (m *MeshDNS) chaseOutside(ctx context.Context, w dns.ResponseWriter, r *dns.Msg, res result, target string, kind table.Kind, answer []dns.RR) (int, error) {
	if zone := matchZone(m.Zones, target); zone != "" && (kind == table.Empty || kind == table.Miss && !m.fallsThrough(target)) {
		if kind == table.Empty {
			return m.write(ctx, w, r, resultNoData, dns.RcodeSuccess, answer, m.soa(target, zone))
		}
		return m.write(ctx, w, r, resultNXDomain, dns.RcodeNameError, answer, m.soa(target, zone))
	}
	qtype := r.Question[0].Qtype
	resp, err := m.upstream.Lookup(ctx, request.Request{W: w, Req: r}, target, qtype)
	if err != nil || resp == nil || (resp.Rcode != dns.RcodeSuccess && resp.Rcode != dns.RcodeNameError) {
		m.counters.inc(ctx, resultServFail)
		return dns.RcodeServerFailure, nil
	}
	answer = append(answer, resp.Answer...)
	if resp.Rcode == dns.RcodeNameError {
		return m.write(ctx, w, r, resultNXDomain, dns.RcodeNameError, answer, soaOf(resp.Ns))
	}
	if !owns(resp.Answer, qtype) {
		return m.write(ctx, w, r, resultNoData, dns.RcodeSuccess, answer, soaOf(resp.Ns))
	}
	return m.write(ctx, w, r, res, dns.RcodeSuccess, answer, nil)
}

// writeAddrs answers an A or AAAA question for a name with such records as
// wire bytes (see wire.go), and reports whether it did.
func (m *MeshDNS) writeAddrs(ctx context.Context, w dns.ResponseWriter, r *dns.Msg, res result, match table.Match) (bool, error) {
	qtype := r.Question[0].Qtype
	if (qtype != dns.TypeA && qtype != dns.TypeAAAA) || match.SRV > 0 || match.Record.Target() != "" {
		return false, nil
	}
	rrs, size := match.Record.WireAddrs(qtype)
	ok, err := writeRaw(w, r, rrs, size)
	if !ok {
		return false, nil
	}
	m.counters.inc(ctx, res)
	if err != nil {
		return true, plugin.Error(pluginName, err)
	}
	return true, nil
}

// write sends the reply. Building it by hand rather than with SetReply saves
// an allocation: the question is the request's own.
func (m *MeshDNS) write(ctx context.Context, w dns.ResponseWriter, r *dns.Msg, res result, rcode int, answer, ns []dns.RR) (int, error) {
	msg := &dns.Msg{
		MsgHdr: dns.MsgHdr{
			Id:               r.Id,
			Response:         true,
			Opcode:           r.Opcode,
			Authoritative:    true,
			RecursionDesired: r.RecursionDesired,
			// meshdns stands in for the node's resolver, with forward behind it.
			RecursionAvailable: r.RecursionDesired,
			CheckingDisabled:   r.CheckingDisabled,
			Rcode:              rcode,
		},
		Question: r.Question[:1],
		Answer:   answer,
		Ns:       ns,
	}
	m.counters.inc(ctx, res)
	if err := w.WriteMsg(msg); err != nil {
		return rcodeOf(err), plugin.Error(pluginName, err)
	}
	return rcodeOf(nil), nil
}

// rcodeOf is what ServeDNS returns once a reply was written, or failed to be.
func rcodeOf(err error) int {
	if err != nil {
		return dns.RcodeServerFailure
	}
	// Like plugin/file and plugin/kubernetes: the reply is written.
	return dns.RcodeSuccess
}

// escaped looks up a name with escaped octets in a label ("a\.b.example.",
// "\000.example."): no table name has such a label, so only a wildcard can
// cover it, through the labels after the last escaped one.
func (m *MeshDNS) escaped(qname string) table.Match {
	labels := dns.SplitDomainName(qname)
	plain := len(labels)
	for plain > 0 && strings.IndexByte(labels[plain-1], '\\') < 0 {
		plain--
	}
	if plain == len(labels) {
		return table.Match{}
	}
	return m.table.Covering(strings.Join(labels[plain:], "."))
}

// badOPT reports whether r's EDNS is malformed (RFC 6891 §6.1.1): more than
// one OPT record, or one owned by a name other than the root. The server
// checks only the version of the first.
func badOPT(r *dns.Msg) bool {
	n := 0
	for _, rr := range r.Extra {
		if rr.Header().Rrtype == dns.TypeOPT {
			if n++; n > 1 || rr.Header().Name != "." {
				return true
			}
		}
	}
	return false
}

// plainQuery reports whether r is a query of class IN, the only kind of
// question meshdns has data for.
func plainQuery(r *dns.Msg) bool {
	return r.Opcode == dns.OpcodeQuery && r.Question[0].Qclass == dns.ClassINET
}

func (m *MeshDNS) ptrOwners(qname string) []string {
	if addr, ok := table.ParseReverse(qname); ok {
		return m.table.PTR(addr)
	}
	return nil
}

// refuse answers what meshdns holds no data for: another opcode (NOTIMP),
// another class or a zone transfer (REFUSED). A name meshdns does not know,
// where unknown names fall through, goes on to the next plugin as usual.
func (m *MeshDNS) refuse(ctx context.Context, w dns.ResponseWriter, r *dns.Msg, qname string, match table.Match) (int, error) {
	if match.Kind == table.Miss && m.fallsThrough(qname) && m.apex(qname) == "" {
		m.counters.inc(ctx, resultFallthrough)
		return plugin.NextOrFailure(m.Name(), m.Next, ctx, w, r)
	}
	rcode := dns.RcodeRefused
	if r.Opcode != dns.OpcodeQuery {
		rcode = dns.RcodeNotImplemented
	}
	// Written here rather than by the server, which echoes RD and CD only
	// for a QUERY.
	msg := new(dns.Msg)
	msg.SetRcode(r, rcode)
	msg.RecursionDesired, msg.CheckingDisabled = r.RecursionDesired, r.CheckingDisabled
	m.counters.inc(ctx, resultRefused)
	if err := w.WriteMsg(msg); err != nil {
		return rcodeOf(err), plugin.Error(pluginName, err)
	}
	return rcodeOf(nil), nil
}

// fallsThrough reports whether an unknown name goes on to the next plugin.
func (m *MeshDNS) fallsThrough(qname string) bool {
	return matchZone(m.Authoritative, qname) == "" && matchZone(m.Fall.Zones, qname) != ""
}

// reverseExists reports whether qname is the reverse name of a served
// address (asked for another type than PTR) or a name above one.
func (m *MeshDNS) reverseExists(qname string) bool {
	if !strings.HasSuffix(qname, ".arpa.") {
		return false
	}
	return len(m.ptrOwners(qname)) > 0 || m.table.ReverseParent(qname)
}

// owns reports whether rrs hold a record of qtype.
func owns(rrs []dns.RR, qtype uint16) bool {
	for _, rr := range rrs {
		if rr.Header().Rrtype == qtype {
			return true
		}
	}
	return false
}

// soaOf returns the SOA of an upstream's negative answer, for ours.
func soaOf(ns []dns.RR) []dns.RR {
	for _, rr := range ns {
		if rr.Header().Rrtype == dns.TypeSOA {
			return []dns.RR{rr}
		}
	}
	return nil
}

// addrs returns rrs owned by name, shuffled. The precomputed records are
// shared when their owner is already name; they are never modified.
func addrs(name string, rrs []dns.RR) []dns.RR {
	if len(rrs) == 0 {
		return nil
	}
	if rrs[0].Header().Name != name {
		out := make([]dns.RR, len(rrs))
		for i, rr := range rrs {
			out[i] = withOwner(rr, name)
		}
		rrs = out
	} else if len(rrs) > 1 {
		rrs = append([]dns.RR(nil), rrs...)
	}
	rand.Shuffle(len(rrs), func(i, j int) { rrs[i], rrs[j] = rrs[j], rrs[i] })
	return rrs
}

func withOwner(rr dns.RR, name string) dns.RR {
	switch rr := rr.(type) {
	case *dns.A:
		c := *rr
		c.Hdr.Name = name
		return &c
	case *dns.AAAA:
		c := *rr
		c.Hdr.Name = name
		return &c
	}
	c := dns.Copy(rr)
	c.Header().Name = name
	return c
}

// srvs answers "_port._proto.<name>" or "<name>" SRV queries in the form of
// the CoreDNS kubernetes plugin: one record per port and endpoint name (or the
// host itself), sharing the weight. SRV has no protocol, so ports that differ
// only by theirs give one set of records (RFC 2181 §5.1: no duplicates).
func srvs(owner string, ttl uint32, rec *table.Record, match table.Match) []dns.RR {
	targets := rec.Endpoints()
	if len(targets) == 0 {
		targets = []*table.Record{rec}
	}
	var out []dns.RR
	ports := rec.Ports()
	for i, p := range ports {
		if !match.Selects(p) || slices.ContainsFunc(ports[:i], func(q table.Port) bool { return q.Number == p.Number && match.Selects(q) }) {
			continue
		}
		weight := uint16(max(1, 100/len(targets)))
		for _, t := range targets {
			target := t.Owner()
			if t.Target() != "" {
				target = t.Target()
			}
			out = append(out, &dns.SRV{Hdr: hdr(owner, dns.TypeSRV, ttl), Priority: 0, Weight: weight, Port: p.Number, Target: target})
		}
	}
	return out
}

func ptrs(owner string, ttl uint32, names []string) []dns.RR {
	out := make([]dns.RR, len(names))
	for i, n := range names {
		out[i] = &dns.PTR{Hdr: hdr(owner, dns.TypePTR, ttl), Ptr: n}
	}
	return out
}

// matchZone returns the longest of zones that contains name, or "". Both are
// lower case with a trailing dot. Unlike plugin.Zones.Matches it does not
// allocate, which matters on every query.
func matchZone(zones []string, name string) string {
	best := ""
	for _, z := range zones {
		if len(z) > len(best) && inZone(z, name) {
			best = z
		}
	}
	return best
}

func inZone(zone, name string) bool {
	if zone == "." || name == zone {
		return true
	}
	i := len(name) - len(zone) - 1
	return strings.HasSuffix(name, zone) && name[i] == '.' && !escapedAt(name, i)
}

// escapedAt reports whether name[i] is escaped by the backslashes before it
// ("a\.b" is one label), so it does not end a label.
func escapedAt(name string, i int) bool {
	n := 0
	for i--; i >= 0 && name[i] == '\\'; i-- {
		n++
	}
	return n%2 == 1
}

func hdr(name string, rrtype uint16, ttl uint32) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: rrtype, Class: dns.ClassINET, Ttl: ttl}
}
