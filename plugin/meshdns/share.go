package meshdns

import (
	"context"
	"strings"
	"sync"

	"github.com/coredns/coredns/plugin"
	"github.com/miekg/dns"
)

// A pod with ndots:5 that looks up "www.example.com" walks its search list,
// and glibc asks A and AAAA for every step at once. The steps under the
// cluster domain meshdns answers itself; a step under another search domain
// ("www.example.com.corp.internal") goes upstream, twice, and both come back
// NXDOMAIN. An NXDOMAIN means the name has no records of any type (RFC 8020),
// so one upstream answer serves both: while a query for such a name is
// upstream, a query of another type for the same name waits for it and, if
// it was NXDOMAIN, gets NXDOMAIN too. Only names of two labels or more under
// a configured search domain qualify: they are what a search walk makes of a
// full name. A short name ("db" as "db.corp.internal") is what search domains
// are for; it usually exists, and making its AAAA wait for its A would only
// add a round trip.

// pending is a query for a name that is upstream now.
type pending struct {
	done chan struct{}
	// Set before done is closed: whether the upstream said NXDOMAIN, and the
	// authority section that said so.
	nxdomain bool
	ra       bool
	ns       []dns.RR
}

// siblings tracks the names upstream now.
type siblings struct {
	mu       sync.Mutex
	byName   map[string]*pending
	suffixes []string // search domains outside the cluster's, ".corp.internal."
}

func newSiblings(search []string) *siblings {
	s := &siblings{byName: map[string]*pending{}}
	for _, d := range search {
		if strings.HasPrefix(d, "*.") {
			continue
		}
		s.suffixes = append(s.suffixes, "."+strings.ToLower(strings.Trim(d, "."))+".")
	}
	return s
}

// expansion reports whether qname (lower case, final dot) is a name of two
// labels or more under one of the search domains.
func (s *siblings) expansion(qname string) bool {
	for _, sfx := range s.suffixes {
		if rest, ok := strings.CutSuffix(qname, sfx); ok && strings.IndexByte(rest, '.') > 0 {
			return true
		}
	}
	return false
}

// passOn hands r, a name in the plugin's zones that it does not know, to the
// rest of the chain (fallthrough); for a search expansion it shares an
// upstream NXDOMAIN between the A and AAAA queries of the name.
func (m *MeshDNS) passOn(ctx context.Context, w dns.ResponseWriter, r *dns.Msg, qname string) (int, error) {
	if m.maxPassed > 0 {
		// Past the bound the query is refused now rather than queued behind
		// an upstream that may not answer (max_fallthrough).
		if m.passed.Add(1) > m.maxPassed {
			m.passed.Add(-1)
			m.counters.inc(ctx, resultLimited)
			return dns.RcodeRefused, nil
		}
		defer m.passed.Add(-1)
	}
	qtype := r.Question[0].Qtype
	if m.siblings == nil || (qtype != dns.TypeA && qtype != dns.TypeAAAA) || !m.siblings.expansion(qname) {
		m.counters.inc(ctx, resultFallthrough)
		return plugin.NextOrFailure(m.Name(), m.Next, ctx, w, r)
	}
	s := m.siblings
	s.mu.Lock()
	if p, ok := s.byName[qname]; ok {
		s.mu.Unlock()
		select {
		case <-p.done:
		case <-ctx.Done():
			return dns.RcodeServerFailure, ctx.Err()
		}
		if p.nxdomain {
			return m.sharedNXDomain(ctx, w, r, p)
		}
		m.counters.inc(ctx, resultFallthrough)
		return plugin.NextOrFailure(m.Name(), m.Next, ctx, w, r)
	}
	p := &pending{done: make(chan struct{})}
	s.byName[qname] = p
	s.mu.Unlock()

	m.counters.inc(ctx, resultFallthrough)
	rw := &nxdomainRecorder{ResponseWriter: w, p: p}
	defer func() {
		s.mu.Lock()
		delete(s.byName, qname)
		s.mu.Unlock()
		close(p.done)
	}()
	return plugin.NextOrFailure(m.Name(), m.Next, ctx, rw, r)
}

// sharedNXDomain answers r with the NXDOMAIN the upstream gave for the same
// name and another type.
func (m *MeshDNS) sharedNXDomain(ctx context.Context, w dns.ResponseWriter, r *dns.Msg, p *pending) (int, error) {
	msg := new(dns.Msg)
	msg.SetRcode(r, dns.RcodeNameError)
	msg.RecursionAvailable = p.ra
	for _, rr := range p.ns {
		msg.Ns = append(msg.Ns, dns.Copy(rr))
	}
	m.counters.inc(ctx, resultSharedNXDomain)
	if err := w.WriteMsg(msg); err != nil {
		return rcodeOf(err), plugin.Error(pluginName, err)
	}
	return rcodeOf(nil), nil
}

// nxdomainRecorder notes whether the reply to the first query of a name was
// NXDOMAIN, for the queries waiting on it.
type nxdomainRecorder struct {
	dns.ResponseWriter
	p *pending
}

func (w *nxdomainRecorder) WriteMsg(m *dns.Msg) error {
	if m.Rcode == dns.RcodeNameError {
		w.p.nxdomain, w.p.ra = true, m.RecursionAvailable
		for _, rr := range m.Ns {
			if rr.Header().Rrtype == dns.TypeSOA {
				w.p.ns = append(w.p.ns, dns.Copy(rr))
			}
		}
	}
	return w.ResponseWriter.WriteMsg(m)
}
