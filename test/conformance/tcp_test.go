package conformance

import (
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// pipeline is what the pipelining case sends on one connection. The first
// question goes upstream, so its answer is the slowest and the others may
// overtake it (RFC 7766 §7).
func pipeline() []tcase {
	return []tcase{
		{q: query{name: extOK, qtype: dns.TypeA}, want: want{
			answer: list(cname(extOK, "ok.example."), upAnswer(dns.TypeA)), up: list("ok.example. A"),
		}},
		{q: query{name: reviews, qtype: dns.TypeA}, want: want{answer: list(a(reviews, "10.96.1.11"))}},
		{q: query{name: "mysql-0.mysql.db.svc.cluster.local.", qtype: dns.TypeA}, want: want{
			answer: list(a("mysql-0.mysql.db.svc.cluster.local.", "10.244.1.5")),
		}},
		{q: query{name: nope, qtype: dns.TypeA}, want: want{rcode: dns.RcodeNameError, ns: list(soa(clusterLocal))}},
		{q: query{name: reviews, qtype: dns.TypeAAAA, edns: 1232, do: true}, want: want{answer: list(aaaa(reviews, "fd00:10:96::b"))}},
		{q: query{name: ratings, qtype: dns.TypeAAAA}, want: want{ns: list(soa(clusterLocal))}},
		{q: query{name: "_http._tcp." + reviews, qtype: dns.TypeSRV}, want: want{
			answer: list(srv("_http._tcp."+reviews, 9080, reviews)),
		}},
	}
}

func (s *server) pipelining(t *testing.T) {
	cases := pipeline()
	conn, err := net.DialTimeout("tcp", s.addr, replyTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(replyTimeout))
	reqs := map[uint16]int{}
	var msgs []*dns.Msg
	var batch []byte
	for i, c := range cases {
		m := c.q.msg()
		m.Id = uint16(0x5000 + i) // distinct, to pair replies with queries
		wire, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		batch = append(batch, byte(len(wire)>>8), byte(len(wire)))
		batch = append(batch, wire...)
		reqs[m.Id] = i
		msgs = append(msgs, m)
	}
	// One write: every query is on the wire before any answer is read.
	if _, err := conn.Write(batch); err != nil {
		t.Fatal(err)
	}
	for range cases {
		raw, err := readMsg(conn, "tcp")
		if err != nil {
			t.Fatalf("%d of %d queries answered, then: %v", len(cases)-len(reqs), len(cases), err)
		}
		r := new(dns.Msg)
		if err := r.Unpack(raw); err != nil {
			t.Fatalf("unpack a reply: %v", err)
		}
		i, ok := reqs[r.Id]
		if !ok {
			t.Fatalf("a reply with ID %#x, which no pending query has", r.Id)
		}
		delete(reqs, r.Id)
		verify(t, "tcp", msgs[i], raw, cases[i].want)
		s.checkUpstream(t, msgs[i], cases[i].want)
	}
}

func (s *server) connectionReuse(t *testing.T) {
	conn, err := net.DialTimeout("tcp", s.addr, replyTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A negative answer first, then a positive one: neither closes.
	for i, c := range []tcase{
		{q: query{name: nope, qtype: dns.TypeA}, want: want{rcode: dns.RcodeNameError, ns: list(soa(clusterLocal))}},
		{q: query{name: reviews, qtype: dns.TypeA}, want: want{answer: list(a(reviews, "10.96.1.11"))}},
		{q: query{name: reviews, qtype: dns.TypeAAAA}, want: want{answer: list(aaaa(reviews, "fd00:10:96::b"))}},
	} {
		conn.SetDeadline(time.Now().Add(replyTimeout))
		m := c.q.msg()
		wire, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		if err := writeMsg(conn, "tcp", wire); err != nil {
			t.Fatalf("query %d on the connection: %v", i+1, err)
		}
		raw, err := readMsg(conn, "tcp")
		if err != nil {
			t.Fatalf("query %d on the connection: %v", i+1, err)
		}
		verify(t, "tcp", m, raw, c.want)
	}
}
