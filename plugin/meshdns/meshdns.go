// Package meshdns is the CoreDNS plugin that answers service-mesh names from
// the in-memory table fed by its sources.
package meshdns

import (
	"context"
	"math/rand/v2"

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

// maxChain bounds CNAME chains followed inside the table.
const maxChain = 8

// ServeDNS implements plugin.Handler.
func (m *MeshDNS) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	state := request.Request{W: w, Req: r}
	qname, qtype := state.Name(), state.QType()
	zone := plugin.Zones(m.Zones).Matches(qname)

	if qtype == dns.TypePTR {
		if addr, ok := table.ParseReverse(qname); ok {
			if owners := m.table.PTR(addr); len(owners) > 0 {
				return m.write(ctx, w, r, resultHit, ptrs(r.Question[0].Name, m.ttl, owners), nil)
			}
		}
	}
	if zone == "" {
		return plugin.NextOrFailure(m.Name(), m.Next, ctx, w, r)
	}
	if !m.Ready() {
		m.counters.inc(ctx, resultNotReady)
		return dns.RcodeServerFailure, nil
	}

	match := m.table.Lookup(qname)
	asked := r.Question[0].Name
	switch match.Kind {
	case table.Hit, table.Wildcard:
		res := resultHit
		if match.Kind == table.Wildcard {
			res = resultWildcard
		}
		answer := m.answer(ctx, state, asked, qtype, match, nil)
		return m.reply(ctx, w, r, res, answer, zone, asked)
	case table.Shortcut:
		// Answer "H.<search domain>" with a CNAME to the real name of H plus
		// its records, saving the client the rest of its search walk.
		target := match.Record.Owner()
		if match.Record.Wildcard() {
			target = asked[:match.Cut]
		}
		cname := &dns.CNAME{Hdr: hdr(asked, dns.TypeCNAME, m.ttl), Target: target}
		answer := []dns.RR{cname}
		if qtype != dns.TypeCNAME {
			answer = m.answer(ctx, state, target, qtype, match, answer)
		}
		return m.reply(ctx, w, r, resultShortcut, answer, zone, target)
	}

	// Unknown names, and empty non-terminals which exist but own no records.
	if plugin.Zones(m.Authoritative).Matches(qname) == "" && m.Fall.Through(qname) {
		m.counters.inc(ctx, resultFallthrough)
		return plugin.NextOrFailure(m.Name(), m.Next, ctx, w, r)
	}
	if match.Kind == table.Empty {
		return m.write(ctx, w, r, resultNoData, nil, m.soa(qname, zone, asked))
	}
	return m.write(ctx, w, r, resultNXDomain, nil, m.soa(qname, zone, ""))
}

// reply writes answer, or NODATA with an SOA when there is nothing of qtype.
func (m *MeshDNS) reply(ctx context.Context, w dns.ResponseWriter, r *dns.Msg, res result, answer []dns.RR, zone, owner string) (int, error) {
	if len(answer) == 0 || (res == resultShortcut && len(answer) == 1 && r.Question[0].Qtype != dns.TypeCNAME) {
		return m.write(ctx, w, r, resultNoData, answer, m.soa(dns.CanonicalName(owner), zone, owner))
	}
	return m.write(ctx, w, r, res, answer, nil)
}

// answer appends to answer what name (the matched record's name, in the case
// the client used) has of qtype.
func (m *MeshDNS) answer(ctx context.Context, state request.Request, name string, qtype uint16, match table.Match, answer []dns.RR) []dns.RR {
	rec := match.Record
	if match.SRV > 0 {
		if qtype == dns.TypeSRV {
			return append(answer, srvs(name, m.ttl, rec, match)...)
		}
		return answer
	}
	for range maxChain {
		target := rec.Target()
		if target == "" {
			break
		}
		answer = append(answer, &dns.CNAME{Hdr: hdr(name, dns.TypeCNAME, m.ttl), Target: target})
		if qtype != dns.TypeA && qtype != dns.TypeAAAA {
			return answer
		}
		next := m.table.Lookup(dns.CanonicalName(target))
		if next.Kind != table.Hit && next.Kind != table.Wildcard {
			// Not ours: resolve it through the rest of the server, as the
			// kubernetes plugin does for ExternalName services.
			if resp, err := m.upstream.Lookup(ctx, state, target, qtype); err == nil && resp != nil {
				answer = append(answer, resp.Answer...)
			}
			return answer
		}
		rec, name = next.Record, target
	}
	switch qtype {
	case dns.TypeA, dns.TypeAAAA:
		return append(answer, addrs(name, rec.Addrs(qtype))...)
	case dns.TypeSRV:
		if !rec.Wildcard() {
			return append(answer, srvs(name, m.ttl, rec, match)...)
		}
	}
	return answer
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
// host itself), sharing the weight.
func srvs(owner string, ttl uint32, rec *table.Record, match table.Match) []dns.RR {
	targets := rec.Endpoints()
	if len(targets) == 0 {
		targets = []*table.Record{rec}
	}
	var out []dns.RR
	for _, p := range rec.Ports() {
		if !match.Selects(p) {
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

func hdr(name string, rrtype uint16, ttl uint32) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: rrtype, Class: dns.ClassINET, Ttl: ttl}
}

// soa returns the SOA for a negative answer: the most specific authoritative
// zone, else the cluster domain, else the plugin zone; for NODATA at the root
// zone, the name itself (owner) rather than claiming the root.
func (m *MeshDNS) soa(qname, zone, owner string) []dns.RR {
	apex := plugin.Zones(m.Authoritative).Matches(qname)
	switch {
	case apex != "":
	case dns.IsSubDomain(m.domain, qname):
		apex = m.domain
	case zone != "." || owner == "":
		apex = zone
	default:
		apex = owner
	}
	mbox := "hostmaster." + apex
	if apex == "." {
		mbox = "hostmaster."
	}
	return []dns.RR{&dns.SOA{
		Hdr:     hdr(apex, dns.TypeSOA, m.ttl),
		Ns:      dnsNS(apex),
		Mbox:    mbox,
		Serial:  uint32(m.table.Updated().Unix()),
		Refresh: 7200,
		Retry:   1800,
		Expire:  86400,
		Minttl:  m.ttl,
	}}
}

func dnsNS(apex string) string {
	if apex == "." {
		return "ns.dns."
	}
	return "ns.dns." + apex
}

// write sends the reply. Building it by hand rather than with SetReply saves
// an allocation: the question is the request's own.
func (m *MeshDNS) write(ctx context.Context, w dns.ResponseWriter, r *dns.Msg, res result, answer, ns []dns.RR) (int, error) {
	msg := &dns.Msg{
		MsgHdr: dns.MsgHdr{
			Id:               r.Id,
			Response:         true,
			Opcode:           r.Opcode,
			Authoritative:    true,
			RecursionDesired: r.RecursionDesired,
			CheckingDisabled: r.CheckingDisabled,
		},
		Question: r.Question[:1],
		Answer:   answer,
		Ns:       ns,
	}
	if res == resultNXDomain {
		msg.Rcode = dns.RcodeNameError
	}
	m.counters.inc(ctx, res)
	if err := w.WriteMsg(msg); err != nil {
		return dns.RcodeServerFailure, plugin.Error(pluginName, err)
	}
	// Like plugin/file and plugin/kubernetes: the reply is written.
	return dns.RcodeSuccess, nil
}
