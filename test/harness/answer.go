package harness

import (
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Answer is what name answers for qtype from addr over network ("udp" or
// "tcp"), as a comparable string: the rcode when it is not NOERROR, followed
// by the CNAMEs that led there, if any; else the sorted A, AAAA and CNAME
// data, or "NODATA". do and cd set the DO and CD bits, which a cache in front
// of meshdns keys its entries by.
func Answer(addr, name string, qtype uint16, network string, do, cd bool) string {
	c := &dns.Client{Net: network, Timeout: 2 * time.Second}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.SetEdns0(4096, do)
	m.CheckingDisabled = cd
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		return "error: " + err.Error()
	}
	return formatAnswer(r)
}

// formatAnswer is Answer's string of a reply.
func formatAnswer(r *dns.Msg) string {
	if r.Rcode != dns.RcodeSuccess {
		out := []string{dns.RcodeToString[r.Rcode]}
		for _, rr := range r.Answer {
			if c, ok := rr.(*dns.CNAME); ok {
				out = append(out, "CNAME "+c.Target)
			}
		}
		return strings.Join(out, " ")
	}
	var out []string
	for _, rr := range r.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, rr.A.String())
		case *dns.AAAA:
			out = append(out, rr.AAAA.String())
		case *dns.CNAME:
			out = append(out, "CNAME "+rr.Target)
		}
	}
	if len(out) == 0 {
		return "NODATA"
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}
