package meshdns

import (
	"sync/atomic"

	"github.com/miekg/dns"
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
