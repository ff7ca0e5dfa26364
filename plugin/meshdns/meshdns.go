// Package meshdns is the CoreDNS plugin that answers service-mesh names from
// the in-memory table fed by its sources.
package meshdns

import (
	"context"
	"math/rand/v2"
	"strings"

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
	if len(r.Question) == 0 { // the server refuses these; a test or another plugin may not
		return dns.RcodeFormatError, nil
	}
	state := request.Request{W: w, Req: r}
	// The question as sent, lower-cased: names with escapes match nothing
	// in the table, so the costlier state.Name() buys nothing here.
	qname, qtype := strings.ToLower(r.Question[0].Name), state.QType()
	zone := matchZone(m.Zones, qname)

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
		answer := make([]dns.RR, 1, 4)
		answer[0] = cname
		if qtype != dns.TypeCNAME {
			answer = m.answer(ctx, state, target, qtype, match, answer)
		}
		return m.reply(ctx, w, r, resultShortcut, answer, zone, target)
	}

	// Unknown names, and empty non-terminals which exist but own no records.
	if matchZone(m.Authoritative, qname) == "" && matchZone(m.Fall.Zones, qname) != "" {
		m.counters.inc(ctx, resultFallthrough)
		return plugin.NextOrFailure(m.Name(), m.Next, ctx, w, r)
	}
	if match.Kind == table.Empty {
		return m.write(ctx, w, r, resultNoData, nil, m.soa(qname, zone))
	}
	return m.write(ctx, w, r, resultNXDomain, nil, m.soa(qname, zone))
}

// reply writes answer, or NODATA with an SOA when there is nothing of qtype.
func (m *MeshDNS) reply(ctx context.Context, w dns.ResponseWriter, r *dns.Msg, res result, answer []dns.RR, zone, owner string) (int, error) {
	// A chain of CNAMEs that ends without the asked type is NODATA too; its
	// SOA is that of the last name in the chain.
	last := len(answer) - 1
	if last >= 0 && (answer[last].Header().Rrtype != dns.TypeCNAME || r.Question[0].Qtype == dns.TypeCNAME) {
		return m.write(ctx, w, r, res, answer, nil)
	}
	if last >= 0 {
		owner = answer[last].(*dns.CNAME).Target
	}
	owner = strings.ToLower(owner)
	if z := matchZone(m.Zones, owner); z != "" {
		zone = z
	}
	return m.write(ctx, w, r, resultNoData, answer, m.soa(owner, zone))
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
		if len(answer) == 0 {
			return addrs(name, rec.Addrs(qtype)) // often the shared records themselves
		}
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
	return zone == "." || name == zone || (strings.HasSuffix(name, zone) && name[len(name)-len(zone)-1] == '.')
}

func hdr(name string, rrtype uint16, ttl uint32) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: rrtype, Class: dns.ClassINET, Ttl: ttl}
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
			// meshdns stands in for the node's resolver, with forward behind it.
			RecursionAvailable: r.RecursionDesired,
			CheckingDisabled:   r.CheckingDisabled,
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
