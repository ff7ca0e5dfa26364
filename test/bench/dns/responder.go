package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// The two tiny servers this program runs as separate processes
// (-serve floor|upstream), each pinned with GOMAXPROCS=1.

const (
	// upstreamTLD is the only top-level domain the upstream knows: every
	// name under it exists; every other name is NXDOMAIN, as in a real
	// cluster's upstream for search-expanded names.
	upstreamTLD = "com."
	// countName asks the upstream, over TXT, how many queries it has
	// answered (control queries not counted).
	countName = "count.bench.invalid."
	// delayName (delay.<microseconds>.bench.invalid.) sets the upstream's
	// answer delay, a stand-in for the round trip to a real upstream.
	delaySuffix = ".bench.invalid."
)

var (
	upstreamA    = net.ParseIP("198.51.100.7").To4()
	upstreamAAAA = net.ParseIP("2001:db8::7")
)

// serve runs one of the tiny servers until the process is killed.
func serve(kind, addr, hostsFile string) error {
	var h dns.Handler
	switch kind {
	case "upstream":
		h = &upstream{}
	case "floor":
		f, err := newFloor(hostsFile)
		if err != nil {
			return err
		}
		h = f
	default:
		return fmt.Errorf("unknown server %q", kind)
	}
	srv := &dns.Server{Addr: addr, Net: "udp", Handler: h, UDPSize: 65535}
	return srv.ListenAndServe()
}

// upstream answers A and AAAA for every name under upstreamTLD with fixed
// addresses, NODATA for other types there, and NXDOMAIN elsewhere.
type upstream struct {
	count atomic.Int64
	delay atomic.Int64 // nanoseconds
}

func (u *upstream) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	if len(r.Question) == 0 {
		m.Rcode = dns.RcodeFormatError
		w.WriteMsg(m)
		return
	}
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	switch {
	case name == countName:
		m.Answer = []dns.RR{&dns.TXT{Hdr: hdr(q.Name, dns.TypeTXT), Txt: []string{strconv.FormatInt(u.count.Load(), 10)}}}
		w.WriteMsg(m)
		return
	case strings.HasPrefix(name, "delay.") && strings.HasSuffix(name, delaySuffix):
		us, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(name, "delay."), delaySuffix))
		if err != nil {
			m.Rcode = dns.RcodeFormatError
		} else {
			u.delay.Store(int64(us) * int64(time.Microsecond))
		}
		w.WriteMsg(m)
		return
	}
	u.count.Add(1)
	if d := u.delay.Load(); d > 0 {
		time.Sleep(time.Duration(d))
	}
	switch {
	case !strings.HasSuffix(name, "."+upstreamTLD):
		m.Rcode = dns.RcodeNameError
	case q.Qtype == dns.TypeA:
		m.Answer = []dns.RR{&dns.A{Hdr: hdr(q.Name, dns.TypeA), A: upstreamA}}
	case q.Qtype == dns.TypeAAAA:
		m.Answer = []dns.RR{&dns.AAAA{Hdr: hdr(q.Name, dns.TypeAAAA), AAAA: upstreamAAAA}}
	}
	w.WriteMsg(m)
}

// floor answers the A record of each name of a hosts file, precomputed,
// with the question's name; NODATA for other types of those names and
// NXDOMAIN for all else. It is the least a Go DNS server on miekg/dns can
// do per query.
type floor struct{ a map[string]*dns.A }

func newFloor(hostsFile string) (*floor, error) {
	f, err := os.Open(hostsFile)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fl := &floor{a: map[string]*dns.A{}}
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) != 2 {
			continue
		}
		name := dns.Fqdn(strings.ToLower(fields[1]))
		fl.a[name] = &dns.A{Hdr: hdr(name, dns.TypeA), A: net.ParseIP(fields[0]).To4()}
	}
	return fl, s.Err()
}

func (f *floor) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	if len(r.Question) == 1 {
		q := r.Question[0]
		if a, ok := f.a[strings.ToLower(q.Name)]; !ok {
			m.Rcode = dns.RcodeNameError
		} else if q.Qtype == dns.TypeA {
			rr := *a
			rr.Hdr.Name = q.Name
			m.Answer = []dns.RR{&rr}
		}
	}
	w.WriteMsg(m)
}

func hdr(name string, t uint16) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: 30}
}
