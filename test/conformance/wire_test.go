package conformance

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// query is one request, described by what matters to the checks. Its zero
// value is a plain IN query with RD set and no OPT; the fields that build
// malformed requests make messages miekg/dns's client would refuse to send.
type query struct {
	name    string // "" sends no question (QDCOUNT 0)
	qtype   uint16
	class   uint16 // 0 means IN
	opcode  int
	noRD    bool
	cd, ad  bool
	z       bool
	aa      bool // set in NOTIFY requests by the primary
	qr      bool // a "query" with QR=1
	edns    uint16
	do      bool
	version uint8
	option  bool   // an EDNS option no one implements
	second  string // a second question (QDCOUNT 2)
	twoOPT  bool
	optName string // the OPT record's owner, instead of the root
	ns      []dns.RR
}

// unknownOption is an option code from the range RFC 6891 §9 leaves for
// local and experimental use, so no server implements it.
const unknownOption = 65001

func (q query) msg() *dns.Msg {
	m := new(dns.Msg)
	m.Id = uint16(rand.UintN(1 << 16))
	m.Opcode = q.opcode
	m.RecursionDesired = !q.noRD
	m.CheckingDisabled = q.cd
	m.AuthenticatedData = q.ad
	m.Zero = q.z
	m.Authoritative = q.aa
	m.Response = q.qr
	class := q.class
	if class == 0 {
		class = dns.ClassINET
	}
	if q.name != "" {
		m.Question = []dns.Question{{Name: q.name, Qtype: q.qtype, Qclass: class}}
	}
	if q.second != "" {
		m.Question = append(m.Question, dns.Question{Name: q.second, Qtype: q.qtype, Qclass: class})
	}
	m.Ns = q.ns
	if q.edns > 0 {
		o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		o.SetUDPSize(q.edns)
		o.SetVersion(q.version)
		if q.do {
			o.SetDo()
		}
		if q.option {
			o.Option = append(o.Option, &dns.EDNS0_LOCAL{Code: unknownOption, Data: []byte("conformance")})
		}
		if q.optName != "" {
			o.Hdr.Name = q.optName
		}
		m.Extra = append(m.Extra, o)
		if q.twoOPT {
			o2 := *o
			m.Extra = append(m.Extra, &o2)
		}
	}
	return m
}

// errNoReply is what exchange returns when the server stays silent.
var errNoReply = errors.New("no reply")

// exchange sends wire to addr over network ("udp" or "tcp") and returns the
// reply's bytes, undecoded, so that their size and layout can be checked.
func exchange(network, addr string, wire []byte, timeout time.Duration) ([]byte, error) {
	conn, err := net.DialTimeout(network, addr, timeout)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(timeout))
	if err := writeMsg(conn, network, wire); err != nil {
		return nil, err
	}
	return readMsg(conn, network)
}

func writeMsg(conn net.Conn, network string, wire []byte) error {
	if network == "tcp" {
		wire = append(binary.BigEndian.AppendUint16(nil, uint16(len(wire))), wire...)
	}
	_, err := conn.Write(wire)
	return err
}

func readMsg(conn net.Conn, network string) ([]byte, error) {
	if network == "udp" {
		buf := make([]byte, 65535)
		n, err := conn.Read(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, errNoReply
		}
		return buf[:n], err
	}
	var l [2]byte
	if _, err := io.ReadFull(conn, l[:]); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, io.EOF) {
			return nil, errNoReply
		}
		return nil, err
	}
	buf := make([]byte, binary.BigEndian.Uint16(l[:]))
	_, err := io.ReadFull(conn, buf)
	return buf, err
}

// wholeRecords checks that msg holds exactly the records its header counts,
// each complete, and nothing after them: a truncated reply drops whole
// records, never part of one.
func wholeRecords(msg []byte) error {
	if len(msg) < 12 {
		return fmt.Errorf("%d octets, shorter than a header", len(msg))
	}
	off := 12
	var err error
	for range binary.BigEndian.Uint16(msg[4:]) {
		if off, err = skipName(msg, off); err != nil {
			return fmt.Errorf("question: %v", err)
		}
		off += 4
	}
	n := int(binary.BigEndian.Uint16(msg[6:])) + int(binary.BigEndian.Uint16(msg[8:])) + int(binary.BigEndian.Uint16(msg[10:]))
	for i := range n {
		if off, err = skipName(msg, off); err != nil {
			return fmt.Errorf("record %d: %v", i, err)
		}
		if off+10 > len(msg) {
			return fmt.Errorf("record %d: cut in its header", i)
		}
		off += 10 + int(binary.BigEndian.Uint16(msg[off+8:]))
		if off > len(msg) {
			return fmt.Errorf("record %d: cut in its data", i)
		}
	}
	if off != len(msg) {
		return fmt.Errorf("%d octets after the last record", len(msg)-off)
	}
	return nil
}

func skipName(msg []byte, off int) (int, error) {
	for {
		if off >= len(msg) {
			return 0, errors.New("name runs past the end")
		}
		c := int(msg[off])
		switch {
		case c == 0:
			return off + 1, nil
		case c&0xc0 == 0xc0:
			return off + 2, nil
		case c&0xc0 != 0:
			return 0, fmt.Errorf("label type %#x", c)
		}
		off += 1 + c
	}
}

// rrText is a record in presentation form with single spaces, with the
// fields the checks do not pin masked: an SOA's serial (the table's last
// change) and an SRV's priority and weight (not prescribed).
func rrText(rr dns.RR) string {
	h := rr.Header()
	head := fmt.Sprintf("%s %d %s %s", h.Name, h.Ttl, dns.ClassToString[h.Class], dns.TypeToString[h.Rrtype])
	switch rr := rr.(type) {
	case *dns.SOA:
		return fmt.Sprintf("%s %s %s SERIAL %d %d %d %d", head, rr.Ns, rr.Mbox, rr.Refresh, rr.Retry, rr.Expire, rr.Minttl)
	case *dns.SRV:
		return fmt.Sprintf("%s P W %d %s", head, rr.Port, rr.Target)
	}
	return strings.Join(strings.Fields(rr.String()), " ")
}

// unchecked marks a section a case does not pin.
var unchecked = []string{"(not checked)"}

// describe turns a reply into a comparable text: the rcode and the records
// of each section, sorted because answers are shuffled. OPT records are
// left out; check looks at them on their own.
func describe(r *dns.Msg) (rcode string, answer, ns, extra []string) {
	texts := func(rrs []dns.RR) []string {
		var out []string
		for _, rr := range rrs {
			if rr.Header().Rrtype != dns.TypeOPT {
				out = append(out, rrText(rr))
			}
		}
		slices.Sort(out)
		return out
	}
	return rcodeName(r.Rcode), texts(r.Answer), texts(r.Ns), texts(r.Extra)
}

func rcodeName(rc int) string {
	if s, ok := dns.RcodeToString[rc]; ok {
		return s
	}
	return fmt.Sprintf("RCODE%d", rc)
}

func render(rcode string, answer, ns, extra []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "  rcode %s\n", rcode)
	for _, s := range []struct {
		name string
		rrs  []string
	}{{"answer", answer}, {"authority", ns}, {"additional", extra}} {
		fmt.Fprintf(&b, "  %s:\n", s.name)
		for _, rr := range s.rrs {
			fmt.Fprintf(&b, "    %s\n", rr)
		}
	}
	return b.String()
}

// Record texts for the expectations, in rrText's form. ttl is the default
// TTL of every meshdns answer.
const ttl = 30

func rr(owner, rest string) string { return fmt.Sprintf("%s %d IN %s", owner, ttl, rest) }

func a(owner, ip string) string         { return rr(owner, "A "+ip) }
func aaaa(owner, ip string) string      { return rr(owner, "AAAA "+ip) }
func cname(owner, target string) string { return rr(owner, "CNAME "+target) }
func srv(owner string, port int, target string) string {
	return rr(owner, fmt.Sprintf("SRV P W %d %s", port, target))
}

// soa is meshdns's negative-answer SOA for apex.
func soa(apex string) string {
	ns, mbox := "ns.dns."+apex, "hostmaster."+apex
	if apex == "." {
		ns, mbox = "ns.dns.", "hostmaster."
	}
	return fmt.Sprintf("%s %d IN SOA %s %s SERIAL 7200 1800 86400 %d", apex, ttl, ns, mbox, ttl)
}

func list(rrs ...string) []string { return rrs }
