package main

import (
	"hash/fnv"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/meshdns/meshdns/test/harness"
)

// externalZone is the upstream's zone: every A query under it has an
// answer, so the load can ask a new name each time and no cache in front
// of the upstream absorbs it.
const externalZone = "ext.example."

// slowDelay is how late a slow upstream answers.
const slowDelay = time.Second

// upstreamMode is how the test upstream behaves; it can change while
// queries are in flight.
type upstreamMode int32

const (
	upNormal   upstreamMode = iota // answers at once
	upDead                         // never answers
	upSlow                         // answers after slowDelay
	upServfail                     // answers SERVFAIL
)

func (m upstreamMode) String() string {
	return [...]string{"normal", "dead", "slow", "SERVFAIL"}[m]
}

// upstream is the resolver that forward sends external names to: a DNS
// server on every address it is given, switched between modes at run time.
type upstream struct {
	mode  atomic.Int32
	asked atomic.Int64
}

// startUpstream serves on each of addrs (HOST:PORT) until the run ends.
func startUpstream(t harness.TB, addrs ...string) *upstream {
	t.Helper()
	u := &upstream{}
	for _, a := range addrs {
		harness.ServeDNS(t, a, dns.HandlerFunc(u.serve))
	}
	return u
}

func (u *upstream) set(m upstreamMode) { u.mode.Store(int32(m)) }

func (u *upstream) serve(w dns.ResponseWriter, r *dns.Msg) {
	u.asked.Add(1)
	mode := upstreamMode(u.mode.Load())
	if mode == upDead || len(r.Question) != 1 {
		return
	}
	if mode == upSlow {
		// Each UDP query has a goroutine of its own in miekg/dns: a
		// sleep here delays this reply only.
		time.Sleep(slowDelay)
	}
	m := new(dns.Msg)
	m.SetReply(r)
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	switch {
	case mode == upServfail:
		m.Rcode = dns.RcodeServerFailure
	case !dns.IsSubDomain(externalZone, name):
		m.Rcode = dns.RcodeNameError
	case q.Qtype == dns.TypeA:
		m.Answer = append(m.Answer, &dns.A{
			Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300},
			A:   net.ParseIP(externalIP(name)),
		})
	}
	w.WriteMsg(m)
}

// externalIP is the address the upstream answers for name, in
// 198.18.0.0/16 (RFC 2544's benchmarking range).
func externalIP(name string) string {
	h := fnv.New32a()
	h.Write([]byte(strings.ToLower(name)))
	v := h.Sum32()
	return net.IPv4(198, 18, byte(v>>8), byte(v)).String()
}

// externalProbe is the query for name under externalZone and the upstream's
// answer to it.
func externalProbe(label string) harness.Probe {
	name := label + "." + externalZone
	return harness.Probe{Name: name, Qtype: dns.TypeA, Want: externalIP(name)}
}
