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
	siblings *siblings            // nil without search domains to share NXDOMAINs under
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

// ServeDNS implements plugin.Handler. It stays small, and the rarer paths
// live in functions of their own: every query runs on a fresh goroutine
// stack, and a large frame here makes Go grow that stack, which costs more
// than the answer.
func (m *MeshDNS) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	if len(r.Question) == 0 { // the server refuses these; a test or another plugin may not
		return dns.RcodeFormatError, nil
	}
	// The question as sent, lower-cased: names with escapes match nothing in
	// the table, so the costlier request.Request.Name() buys nothing here.
	qname := strings.ToLower(r.Question[0].Name)
	if r.Question[0].Qtype == dns.TypePTR {
		if owners := m.ptrOwners(qname); len(owners) > 0 {
			return m.write(ctx, w, r, resultHit, ptrs(r.Question[0].Name, m.ttl, owners), nil)
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
	match := m.table.Lookup(qname)
	switch match.Kind {
	case table.Hit, table.Wildcard:
		res := resultHit
		if match.Kind == table.Wildcard {
			res = resultWildcard
		}
		if ok, err := m.writeAddrs(ctx, w, r, res, match); ok {
			return rcodeOf(err), err
		}
		asked := r.Question[0].Name
		return m.reply(ctx, w, r, res, m.answer(ctx, w, r, asked, r.Question[0].Qtype, match, nil), zone, asked)
	case table.Shortcut:
		return m.shortcut(ctx, w, r, match, zone)
	}
	return m.unknown(ctx, w, r, qname, zone, match.Kind == table.Empty)
}

func (m *MeshDNS) ptrOwners(qname string) []string {
	if addr, ok := table.ParseReverse(qname); ok {
		return m.table.PTR(addr)
	}
	return nil
}

// shortcut answers "H.<search domain>" with a CNAME to the real name of H
// plus its records, saving the client the rest of its search walk.
func (m *MeshDNS) shortcut(ctx context.Context, w dns.ResponseWriter, r *dns.Msg, match table.Match, zone string) (int, error) {
	asked, qtype := r.Question[0].Name, r.Question[0].Qtype
	target := match.Record.Owner()
	if match.Record.Wildcard() {
		target = asked[:match.Cut]
	}
	answer := make([]dns.RR, 1, 4)
	answer[0] = &dns.CNAME{Hdr: hdr(asked, dns.TypeCNAME, m.ttl), Target: target}
	if qtype != dns.TypeCNAME {
		answer = m.answer(ctx, w, r, target, qtype, match, answer)
	}
	return m.reply(ctx, w, r, resultShortcut, answer, zone, target)
}

// unknown handles names the table does not serve, and empty non-terminals,
// which exist but own no records.
func (m *MeshDNS) unknown(ctx context.Context, w dns.ResponseWriter, r *dns.Msg, qname, zone string, empty bool) (int, error) {
	if matchZone(m.Authoritative, qname) == "" && matchZone(m.Fall.Zones, qname) != "" {
		return m.passOn(ctx, w, r, qname)
	}
	if empty {
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
func (m *MeshDNS) answer(ctx context.Context, w dns.ResponseWriter, r *dns.Msg, name string, qtype uint16, match table.Match, answer []dns.RR) []dns.RR {
	rec := match.Record
	switch {
	case match.SRV > 0:
		if qtype == dns.TypeSRV {
			return append(answer, srvs(name, m.ttl, rec, match)...)
		}
		return answer
	case rec.Target() != "":
		return m.chase(ctx, w, r, name, qtype, match, answer)
	case qtype == dns.TypeA || qtype == dns.TypeAAAA:
		if len(answer) == 0 {
			return addrs(name, rec.Addrs(qtype)) // often the shared records themselves
		}
		return append(answer, addrs(name, rec.Addrs(qtype))...)
	case qtype == dns.TypeSRV && !rec.Wildcard():
		return append(answer, srvs(name, m.ttl, rec, match)...)
	}
	return answer
}

// chase follows an ExternalName's CNAME chain: inside the table while the
// targets are ours, then through the rest of the server, as the kubernetes
// plugin does.
func (m *MeshDNS) chase(ctx context.Context, w dns.ResponseWriter, r *dns.Msg, name string, qtype uint16, match table.Match, answer []dns.RR) []dns.RR {
	for range maxChain {
		target := match.Record.Target()
		if target == "" {
			return m.answer(ctx, w, r, name, qtype, match, answer)
		}
		answer = append(answer, &dns.CNAME{Hdr: hdr(name, dns.TypeCNAME, m.ttl), Target: target})
		if qtype != dns.TypeA && qtype != dns.TypeAAAA {
			return answer
		}
		next := m.table.Lookup(dns.CanonicalName(target))
		if next.Kind != table.Hit && next.Kind != table.Wildcard {
			state := request.Request{W: w, Req: r}
			if resp, err := m.upstream.Lookup(ctx, state, target, qtype); err == nil && resp != nil {
				answer = append(answer, resp.Answer...)
			}
			return answer
		}
		match, name = next, target
	}
	return answer // a loop of CNAMEs: stop, as resolvers do
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

// rcodeOf is what ServeDNS returns once a reply was written, or failed to be.
func rcodeOf(err error) int {
	if err != nil {
		return dns.RcodeServerFailure
	}
	// Like plugin/file and plugin/kubernetes: the reply is written.
	return dns.RcodeSuccess
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
		return rcodeOf(err), plugin.Error(pluginName, err)
	}
	return rcodeOf(nil), nil
}
