package meshdns

import (
	"context"
	"strings"
	"sync/atomic"

	"github.com/miekg/dns"

	"github.com/meshdns/meshdns/plugin/table"
)

// soaCache holds the SOA of one apex, rebuilt only when the table's serial
// moves: NODATA for AAAA is as common as an A hit and should cost as little.
type soaCache struct {
	apex string
	p    atomic.Pointer[soaRRs]
}

type soaRRs struct {
	serial uint32
	rrs    []dns.RR
}

// setSOAs prepares a cache for every apex soa can pick.
func (m *MeshDNS) setSOAs() {
	m.soas = map[string]*soaCache{}
	for _, z := range append(append([]string{m.domain}, m.Zones...), m.Authoritative...) {
		m.soas[z] = &soaCache{apex: z}
	}
}

// soa returns the SOA for a negative answer about qname, found in zone: the
// most specific authoritative zone that contains it, else the cluster domain
// if it does, else the plugin zone.
func (m *MeshDNS) soa(qname, zone string) []dns.RR {
	apex := matchZone(m.Authoritative, qname)
	if apex == "" {
		apex = zone
		if inZone(m.domain, qname) && len(m.domain) > len(zone) {
			apex = m.domain
		}
	}
	serial := uint32(m.table.Updated().Unix())
	c := m.soas[apex]
	if c == nil { // not prepared by setSOAs (a hand-made MeshDNS in a test)
		c = &soaCache{apex: apex}
	}
	if p := c.p.Load(); p != nil && p.serial == serial {
		return p.rrs
	}
	p := &soaRRs{serial: serial, rrs: []dns.RR{m.newSOA(apex, serial)}}
	c.p.Store(p)
	return p.rrs
}

func (m *MeshDNS) newSOA(apex string, serial uint32) *dns.SOA {
	ns, mbox := "ns.dns."+apex, "hostmaster."+apex
	if apex == "." {
		ns, mbox = "ns.dns.", "hostmaster."
	}
	return &dns.SOA{
		Hdr:     hdr(apex, dns.TypeSOA, m.ttl),
		Ns:      ns,
		Mbox:    mbox,
		Serial:  serial,
		Refresh: 7200,
		Retry:   1800,
		Expire:  86400,
		Minttl:  m.ttl,
	}
}

// apex returns qname when it is the apex of a zone meshdns writes the SOA
// of in its negative answers, else "": such a zone's SOA and NS queries are
// meshdns's to answer. The root is one only where unknown names stay here.
func (m *MeshDNS) apex(qname string) string {
	if _, ok := m.soas[qname]; !ok || (qname == "." && m.fallsThrough(qname)) {
		return ""
	}
	return qname
}

// atApex answers a question for the apex of one of meshdns's zones.
func (m *MeshDNS) atApex(ctx context.Context, w dns.ResponseWriter, r *dns.Msg, apex string) (int, error) {
	soa := m.soa(apex, apex)
	var answer []dns.RR
	switch r.Question[0].Qtype {
	case dns.TypeSOA:
		answer = soa
	case dns.TypeNS:
		answer = []dns.RR{m.ns(apex)}
	case dns.TypeANY:
		answer = []dns.RR{soa[0], m.ns(apex)}
	default:
		return m.write(ctx, w, r, resultNoData, dns.RcodeSuccess, nil, soa)
	}
	return m.write(ctx, w, r, resultHit, dns.RcodeSuccess, answer, nil)
}

// ns is the apex's NS record: the name server named in its SOA.
func (m *MeshDNS) ns(apex string) dns.RR {
	return &dns.NS{Hdr: hdr(apex, dns.TypeNS, m.ttl), Ns: nsName(apex)}
}

func nsName(apex string) string {
	if apex == "." {
		return "ns.dns."
	}
	return "ns.dns." + apex
}

// nameServer reports whether qname is the name server of one of meshdns's
// zones, "ns.dns.<apex>".
func (m *MeshDNS) nameServer(qname string) bool {
	apex, ok := strings.CutPrefix(qname, "ns.dns.")
	if apex == "" {
		apex = "."
	}
	return ok && m.apex(apex) != ""
}

// nameServerParent reports whether qname is "dns.<apex>", the empty
// non-terminal above a name server's name.
func (m *MeshDNS) nameServerParent(qname string) bool {
	apex, ok := strings.CutPrefix(qname, "dns.")
	if apex == "" {
		apex = "."
	}
	return ok && m.apex(apex) != ""
}

// nsAddrs answers for a name server's name with the addresses the server
// listens on (as the kubernetes plugin answers with its own), or NODATA
// when it listens on every address and so has none of its own to give.
func (m *MeshDNS) nsAddrs(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	q := r.Question[0]
	var answer []dns.RR
	for _, a := range m.listen {
		switch {
		case a.Is4() && (q.Qtype == dns.TypeA || q.Qtype == dns.TypeANY):
			answer = append(answer, &dns.A{Hdr: hdr(q.Name, dns.TypeA, m.ttl), A: a.AsSlice()})
		case a.Is6() && (q.Qtype == dns.TypeAAAA || q.Qtype == dns.TypeANY):
			answer = append(answer, &dns.AAAA{Hdr: hdr(q.Name, dns.TypeAAAA, m.ttl), AAAA: a.AsSlice()})
		}
	}
	if len(answer) == 0 {
		qname := strings.ToLower(q.Name)
		return m.write(ctx, w, r, resultNoData, dns.RcodeSuccess, nil, m.soa(qname, matchZone(m.Zones, qname)))
	}
	return m.write(ctx, w, r, resultHit, dns.RcodeSuccess, answer, nil)
}

// SchemaVersion is the version of the Kubernetes DNS-Based Service Discovery
// specification meshdns implements, served at dns-version.<domain>.
const SchemaVersion = "1.1.0"

// MulticlusterSchemaVersion is the version of the Kubernetes Multicluster
// DNS specification (KEP-1645) meshdns implements, served at
// dns-version.clusterset.local while it serves clusterset names.
const MulticlusterSchemaVersion = "1.0.0"

// clustersetVersionName is the multicluster schema version's name.
const clustersetVersionName = "dns-version.clusterset.local."

// servesClusterset reports whether the table has names under
// svc.clusterset.local: a source serves Multi-Cluster Services.
func (m *MeshDNS) servesClusterset() bool {
	return m.table.Lookup("svc.clusterset.local.").Kind == table.Empty
}

// version answers dns-version.<domain> and dns-version.clusterset.local
// (each specification's §2.2) with version, with the TTL of the
// specifications' example: the record never changes.
func (m *MeshDNS) version(ctx context.Context, w dns.ResponseWriter, r *dns.Msg, version, zone string) (int, error) {
	q := r.Question[0]
	if q.Qtype != dns.TypeTXT && q.Qtype != dns.TypeANY {
		return m.write(ctx, w, r, resultNoData, dns.RcodeSuccess, nil, m.soa(strings.ToLower(q.Name), zone))
	}
	txt := &dns.TXT{Hdr: hdr(q.Name, dns.TypeTXT, 28800), Txt: []string{version}}
	return m.write(ctx, w, r, resultHit, dns.RcodeSuccess, []dns.RR{txt}, nil)
}
