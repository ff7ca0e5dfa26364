package meshdns

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/coredns/coredns/plugin/metrics"
	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/test"
	"github.com/coredns/coredns/request"
	"github.com/miekg/dns"
)

// capture is the server's end of the writer chain: it keeps the bytes that
// would go to the client, packing a *dns.Msg as miekg/dns does.
type capture struct {
	test.ResponseWriter
	wire []byte
	raw  bool // written with Write, not WriteMsg
}

func (c *capture) WriteMsg(m *dns.Msg) error {
	b, err := m.Pack()
	c.wire = b
	return err
}

func (c *capture) Write(b []byte) (int, error) {
	c.wire, c.raw = slices.Clone(b), true
	return len(b), nil
}

// msgOnly hides the writer beneath it from rawWriter, as the cache plugin's
// writer would, so meshdns builds a dns.Msg.
type msgOnly struct{ dns.ResponseWriter }

// wireRequest is one of the request variants the differential test sends.
type wireRequest struct {
	name          string
	upper, rd, cd bool
	edns          bool
	do            bool
	udpSize       uint16
	optOption     bool
}

var wireRequests = []wireRequest{
	{name: "plain", rd: true},
	{name: "no RD", rd: false},
	{name: "CD", rd: true, cd: true},
	{name: "upper case", upper: true, rd: true},
	{name: "EDNS", rd: true, edns: true, udpSize: 1232},
	{name: "EDNS DO", rd: true, edns: true, do: true, udpSize: 4096},
	{name: "EDNS small size", rd: true, edns: true, udpSize: 100},
	{name: "EDNS with an option", rd: true, edns: true, udpSize: 1232, optOption: true},
}

func (v wireRequest) build(qname string, qtype uint16) *dns.Msg {
	r := new(dns.Msg)
	if v.upper {
		qname = strings.ToUpper(qname)
	}
	r.SetQuestion(qname, qtype)
	r.Id = 4242
	r.RecursionDesired = v.rd
	r.CheckingDisabled = v.cd
	if v.edns {
		r.SetEdns0(v.udpSize, v.do)
		if v.optOption {
			o := r.IsEdns0()
			o.Option = append(o.Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0123456789abcdef"})
		}
	}
	return r
}

// reply runs req through m with w's chain and returns the decoded reply and
// whether it was written as raw bytes.
func wireReply(t *testing.T, m *MeshDNS, req *dns.Msg, wrap func(dns.ResponseWriter) dns.ResponseWriter) (*dns.Msg, bool) {
	t.Helper()
	c := &capture{}
	if _, err := m.ServeDNS(context.Background(), wrap(request.NewScrubWriter(req, c)), req); err != nil {
		t.Fatalf("ServeDNS: %v", err)
	}
	if c.wire == nil {
		return nil, false
	}
	resp := new(dns.Msg)
	if err := resp.Unpack(c.wire); err != nil {
		t.Fatalf("unpack %x: %v", c.wire, err)
	}
	return resp, c.raw
}

// comparable prints a reply with its sections sorted (addresses are
// shuffled) and without the SOA serial.
func comparable(m *dns.Msg) string {
	if m == nil {
		return "<nothing written>"
	}
	c := m.Copy()
	for _, s := range [][]dns.RR{c.Answer, c.Ns, c.Extra} {
		slices.SortFunc(s, func(a, b dns.RR) int { return strings.Compare(a.String(), b.String()) })
		for _, rr := range s {
			if soa, ok := rr.(*dns.SOA); ok {
				soa.Serial = 0
			}
		}
	}
	return c.String()
}

// TestWireMatchesMsg sends every question of the suites, in every request
// variant, through the raw path and through the dns.Msg path, and requires
// the same reply from both.
func TestWireMatchesMsg(t *testing.T) {
	var raw, total int
	for _, s := range suites {
		m := newMesh(t, s.corefileBlock(), nextPlugin)
		var qs []question
		for _, tc := range append(slices.Clone(s.cases), s.wire...) {
			qs = append(qs, question{tc.Qname, tc.Qtype})
		}
		qs = append(qs, s.next...)
		for _, q := range qs {
			for _, v := range wireRequests {
				name := fmt.Sprintf("%s/%s/%s/%s", s.name, q.name, dns.TypeToString[q.qtype], v.name)
				fast, wasRaw := wireReply(t, m, v.build(q.name, q.qtype), func(w dns.ResponseWriter) dns.ResponseWriter { return w })
				slow, slowRaw := wireReply(t, m, v.build(q.name, q.qtype), func(w dns.ResponseWriter) dns.ResponseWriter { return msgOnly{w} })
				if slowRaw {
					t.Fatalf("%s: raw bytes written through a writer that needs a dns.Msg", name)
				}
				if got, want := comparable(fast), comparable(slow); got != want {
					t.Errorf("%s: raw path\n%s\ndns.Msg path\n%s", name, got, want)
				}
				if wasRaw && v.optOption {
					t.Errorf("%s: written raw, but the reply needs the dns.Msg path", name)
				}
				total++
				if wasRaw {
					raw++
				}
			}
		}
	}
	// The raw path must really be taken: for every A and AAAA hit.
	if raw == 0 || raw == total {
		t.Fatalf("raw path taken for %d of %d replies", raw, total)
	}
	t.Logf("raw path taken for %d of %d replies", raw, total)
}

// TestWireWriters: the raw path is taken only through writers that pass
// bytes on unchanged, and the metrics plugin still counts the reply.
func TestWireWriters(t *testing.T) {
	m := newMesh(t, suiteBlock("namespace"), nextPlugin)
	req := func() *dns.Msg { return wireRequests[0].build(details, dns.TypeA) }
	for _, tc := range []struct {
		name string
		wrap func(dns.ResponseWriter) dns.ResponseWriter
		raw  bool
	}{
		{"server writer", func(w dns.ResponseWriter) dns.ResponseWriter { return w }, true},
		{"metrics recorder", func(w dns.ResponseWriter) dns.ResponseWriter { return metrics.NewRecorder(w) }, true},
		{"metrics recorder in metrics recorder", func(w dns.ResponseWriter) dns.ResponseWriter { return metrics.NewRecorder(metrics.NewRecorder(w)) }, true},
		{"log's recorder", func(w dns.ResponseWriter) dns.ResponseWriter { return dnstest.NewRecorder(w) }, false},
		{"unknown writer under metrics", func(w dns.ResponseWriter) dns.ResponseWriter { return metrics.NewRecorder(msgOnly{w}) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, raw := wireReply(t, m, req(), tc.wrap)
			if raw != tc.raw {
				t.Fatalf("raw = %v, want %v", raw, tc.raw)
			}
			if err := check(resp, hit(details, dns.TypeA, a(details, "10.0.0.11"))); err != nil {
				t.Fatal(err)
			}
		})
	}
	// The metrics plugin reads the rcode and size from its recorder.
	c := &capture{}
	rec := metrics.NewRecorder(request.NewScrubWriter(req(), c))
	if _, err := m.ServeDNS(context.Background(), rec, req()); err != nil {
		t.Fatal(err)
	}
	if rec.Rcode != dns.RcodeSuccess || rec.Len != len(c.wire) || !c.raw {
		t.Fatalf("recorder saw rcode %d, %d bytes; %d written (raw %v)", rec.Rcode, rec.Len, len(c.wire), c.raw)
	}
}

func TestPackPlainName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"a.", true},
		{"Reviews.Bookinfo.svc.cluster.local.", true},
		{"*.wild.example.com.", true},
		{strings.Repeat("x", 63) + ".example.", true},
		{strings.Repeat("x", 64) + ".example.", false},
		{".", false},
		{"", false},
		{"no-final-dot", false},
		{"a..b.", false},
		{`a\.b.example.`, false},
		{`a\065.example.`, false},
		{strings.Repeat("abcdefg.", 32), false}, // 256 bytes
	} {
		b := make([]byte, dns.MinMsgSize)
		end, ok := packPlainName(b, headerLen, tc.name)
		if ok != tc.ok {
			t.Errorf("%q: ok = %v, want %v", tc.name, ok, tc.ok)
			continue
		}
		if !ok {
			continue
		}
		want := make([]byte, 255)
		n, err := dns.PackDomainName(tc.name, want, 0, nil, false)
		if err != nil {
			t.Fatalf("%q: %v", tc.name, err)
		}
		if got := b[headerLen:end]; string(got) != string(want[:n]) {
			t.Errorf("%q: packed %x, want %x", tc.name, got, want[:n])
		}
	}
}

func TestShuffleRecords(t *testing.T) {
	// Six 4-byte "records"; every record must stay whole and every order
	// must appear.
	orders := map[string]bool{}
	for range 2000 {
		b := []byte("aaaabbbbccccddddeeeeffff")
		shuffleRecords(b, 4)
		for i := 0; i < len(b); i += 4 {
			if strings.Count(string(b[i:i+4]), string(b[i])) != 4 {
				t.Fatalf("record split: %s", b)
			}
		}
		orders[string(b[:4])] = true
	}
	if len(orders) != 6 {
		t.Fatalf("first records seen: %v", orders)
	}
}
