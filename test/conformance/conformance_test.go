// Package conformance checks bin/coredns with meshdns against the DNS RFCs:
// names and headers (RFC 1034, 1035), RRsets (2181), negative answers
// (2308), wildcards (4592), CNAME chains (6604), EDNS (6891), TCP (7766),
// empty non-terminals (8020) and ANY (8482), and the cluster domain's
// dns-version record (Kubernetes DNS specification). Every case names the
// RFC and section it checks and runs over UDP and over TCP unless it is
// about one transport. The server under test is a typical block: meshdns serving
// testdata/mesh.json, authoritative for cluster.local, and forward to a
// scripted upstream run by the test. Entries that can never be served are
// checked on servers of their own (reject_test.go).
package conformance

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/meshdns/meshdns/test/harness"
)

// forwardTimeout is forward's read_timeout. forward tries an upstream that
// does not answer twice before it gives up, so the one case that waits for
// that takes about twice this; the default (2 s) would make it 4 s.
const forwardTimeout = time.Second

// replyTimeout bounds a client's wait for a reply; noReplyWait is how long a
// case that expects none listens.
const (
	replyTimeout = 5 * time.Second
	noReplyWait  = 500 * time.Millisecond
)

// server is a running bin/coredns and the upstream behind it, if any.
type server struct {
	addr string
	up   *upstream
	dns  *harness.CoreDNS
}

// corefile is the typical server block: meshdns authoritative for
// cluster.local and, with an upstream, falling through to forward for the
// rest.
const corefile = `.:%d {
	bind 127.0.0.1
	ready %s
	prometheus %s
	meshdns {
		file %s
		authoritative cluster.local
%s	}
%s}
`

// startServer runs bin/coredns on the typical Corefile, serving meshFile;
// with up, names meshdns passes on go to it.
func startServer(t *testing.T, meshFile string, up *upstream) *server {
	t.Helper()
	mesh, err := filepath.Abs(meshFile)
	if err != nil {
		t.Fatal(err)
	}
	port := harness.FreeDNSPort(t, "127.0.0.1")
	var ports []int
	for ports == nil || slices.Contains(ports, port) {
		ports = harness.FreePorts(t, 2)
	}
	s := &server{addr: fmt.Sprintf("127.0.0.1:%d", port), up: up}
	ready, metrics := fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])
	fall, forward := "", ""
	if up != nil {
		fall = "\t\tfallthrough\n"
		forward = fmt.Sprintf("\tforward . %s {\n\t\tread_timeout %s\n\t}\n", up.addr, forwardTimeout)
	}
	path := filepath.Join(t.TempDir(), "Corefile")
	text := fmt.Sprintf(corefile, port, ready, metrics, mesh, fall, forward)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	s.dns = harness.StartCoreDNSWith(t, harness.CoreDNSConfig{
		Corefile: path, Addr: s.addr, ReadyAddr: ready, MetricsAddr: metrics, WaitReady: true,
	})
	return s
}

// tcase is one requirement: a query and what the reply must be.
type tcase struct {
	name string
	q    query
	only string // "udp" or "tcp" for a case about one transport
	want want
}

// want is a reply, as describe renders it, plus the header and transport
// facts that are not records. Sections are exact (nil is empty) unless set
// to unchecked.
type want struct {
	rcode  int
	answer []string
	ns     []string
	extra  []string // the additional section without OPT
	// truncated: TC=1, and the reply's answer is part of answer, without
	// duplicates: whatever fitted.
	truncated bool
	// errorReply: an error from the server or the plugin, whose AA bit
	// behaviour.md leaves open.
	errorReply bool
	// noQuestion: the server rejects the message before it reads the
	// question, so there is none to echo (QDCOUNT 0 or 2, opcodes miekg/dns
	// refuses).
	noQuestion bool
	// noOPT: the request's OPT is itself the error; the reply's is not
	// checked.
	noOPT   bool
	noReply bool
	// up lists questions ("name TYPE", "name CLASS TYPE" if not IN) the
	// upstream must have been asked; notUp those it must never be asked.
	up, notUp []string
	// forwarded: meshdns passes the query itself on, so the reply is the
	// upstream's as forward relays it (its AA is the upstream's), and the
	// upstream is asked the query's own name.
	forwarded bool
	// slow: forward waits for an upstream that never answers; the UDP and
	// TCP runs go in parallel.
	slow bool
}

// run runs c over each of its transports against s.
func (s *server) run(t *testing.T, c tcase) {
	t.Helper()
	networks := []string{"udp", "tcp"}
	if c.only != "" {
		networks = []string{c.only}
	}
	t.Run(c.name, func(t *testing.T) {
		for _, network := range networks {
			t.Run(network, func(t *testing.T) {
				if c.want.slow {
					t.Parallel()
				}
				s.check(t, network, c)
			})
		}
	})
}

func (s *server) check(t *testing.T, network string, c tcase) {
	t.Helper()
	req := c.q.msg()
	wire, err := req.Pack()
	if err != nil {
		t.Fatalf("pack the query: %v", err)
	}
	timeout := replyTimeout
	if c.want.noReply {
		timeout = noReplyWait
	}
	raw, err := exchange(network, s.addr, wire, timeout)
	switch {
	case c.want.noReply && err == errNoReply:
		return
	case c.want.noReply && err == nil:
		r := new(dns.Msg)
		r.Unpack(raw)
		t.Fatalf("%s: got a reply, want none:\n%v", qdesc(req), r)
	case err != nil:
		t.Fatalf("%s: %v", qdesc(req), err)
	}
	verify(t, network, req, raw, c.want)
	if s.up != nil {
		s.checkUpstream(t, req, c.want)
	}
}

func qdesc(m *dns.Msg) string {
	if len(m.Question) == 0 {
		return "a query without a question"
	}
	q := m.Question[0]
	return fmt.Sprintf("%s %s %s (opcode %s)", q.Name, dns.ClassToString[q.Qclass], dns.TypeToString[q.Qtype], dns.OpcodeToString[m.Opcode])
}

// verify checks the reply raw to req against w, and the rules every reply
// follows: header, question echo, OPT, and the UDP size limit.
func verify(t *testing.T, network string, req *dns.Msg, raw []byte, w want) {
	t.Helper()
	what := qdesc(req) + " over " + network
	if err := wholeRecords(raw); err != nil {
		t.Errorf("%s: malformed reply: %v", what, err)
	}
	r := new(dns.Msg)
	if err := r.Unpack(raw); err != nil {
		t.Fatalf("%s: unpack the reply: %v", what, err)
	}
	if network == "udp" {
		limit := dns.MinMsgSize
		if o := req.IsEdns0(); o != nil && !w.noOPT && int(o.UDPSize()) > limit {
			limit = int(o.UDPSize())
		}
		if len(raw) > limit {
			t.Errorf("%s: reply of %d octets, more than the %d the client accepts", what, len(raw), limit)
		}
	}

	var bad []string
	flag := func(name string, got, want bool) {
		if got != want {
			bad = append(bad, fmt.Sprintf("%s=%d, want %d", name, b2i(got), b2i(want)))
		}
	}
	if r.Id != req.Id {
		bad = append(bad, fmt.Sprintf("ID %d, want %d", r.Id, req.Id))
	}
	flag("QR", r.Response, true)
	if r.Opcode != req.Opcode {
		bad = append(bad, fmt.Sprintf("opcode %s, want %s", dns.OpcodeToString[r.Opcode], dns.OpcodeToString[req.Opcode]))
	}
	if !w.errorReply && !w.forwarded {
		flag("AA", r.Authoritative, true)
	}
	flag("TC", r.Truncated, w.truncated)
	flag("RD", r.RecursionDesired, req.RecursionDesired)
	flag("AD", r.AuthenticatedData, false)
	flag("Z", r.Zero, false)
	flag("CD", r.CheckingDisabled, req.CheckingDisabled)
	if !w.noQuestion && !slices.Equal(r.Question, req.Question) {
		bad = append(bad, fmt.Sprintf("question %v, want the query's %v", r.Question, req.Question))
	}
	if !w.noOPT {
		bad = append(bad, optProblems(req, r)...)
	}
	for _, b := range bad {
		t.Errorf("%s: %s", what, b)
	}

	rcode, answer, ns, extra := describe(r)
	wantAnswer := w.answer
	if w.truncated {
		if missing := subset(answer, w.answer); missing != "" {
			t.Errorf("%s: truncated answer holds %s", what, missing)
		}
		answer, wantAnswer = unchecked, unchecked
	}
	// Unchecked sections compare equal, but the report shows what came.
	full := render(rcode, answer, ns, extra)
	pick := func(got, want []string) ([]string, []string) {
		if isUnchecked(want) {
			return unchecked, unchecked
		}
		want = slices.Clone(want)
		slices.Sort(want)
		return got, want
	}
	answer, wantAnswer = pick(answer, wantAnswer)
	ns, wantNS := pick(ns, w.ns)
	extra, wantExtra := pick(extra, w.extra)
	got, exp := render(rcode, answer, ns, extra), render(rcodeName(w.rcode), wantAnswer, wantNS, wantExtra)
	if got != exp {
		t.Errorf("%s:\ngot\n%swant\n%s", what, full, exp)
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func isUnchecked(s []string) bool { return len(s) == 1 && s[0] == unchecked[0] }

// subset describes what of got is not in all or repeated, or "".
func subset(got, all []string) string {
	seen := map[string]bool{}
	var out []string
	for _, g := range got {
		if seen[g] {
			out = append(out, "a duplicate "+g)
		} else if !slices.Contains(all, g) {
			out = append(out, "a record not served: "+g)
		}
		seen[g] = true
	}
	return strings.Join(out, "; ")
}

// optProblems applies RFC 6891: no OPT in the reply to a query without one;
// otherwise exactly one, owned by the root, version 0, the query's DO bit,
// and no option the server does not implement.
func optProblems(req, r *dns.Msg) []string {
	var opts []*dns.OPT
	for _, rr := range r.Extra {
		if o, ok := rr.(*dns.OPT); ok {
			opts = append(opts, o)
		}
	}
	qo := req.IsEdns0()
	if qo == nil {
		if len(opts) > 0 {
			return []string{"OPT in the reply to a query without one"}
		}
		return nil
	}
	if len(opts) != 1 {
		return []string{fmt.Sprintf("%d OPT records in the reply, want 1", len(opts))}
	}
	o := opts[0]
	var bad []string
	if o.Hdr.Name != "." {
		bad = append(bad, fmt.Sprintf("OPT owned by %q", o.Hdr.Name))
	}
	if o.Version() != 0 {
		bad = append(bad, fmt.Sprintf("OPT version %d, want 0", o.Version()))
	}
	if o.Do() != qo.Do() {
		bad = append(bad, fmt.Sprintf("DO=%d, want the query's %d", b2i(o.Do()), b2i(qo.Do())))
	}
	for _, opt := range o.Option {
		if opt.Option() == unknownOption {
			bad = append(bad, "the unknown EDNS option is echoed")
		}
	}
	return bad
}

// checkUpstream checks what reached the upstream: the questions the case
// expects, none it forbids, and never the query's own name unless the case
// is one whose query meshdns passes on as it is.
func (s *server) checkUpstream(t *testing.T, req *dns.Msg, w want) {
	t.Helper()
	for _, q := range w.up {
		if s.up.seen(q) == 0 {
			t.Errorf("the upstream was never asked %q", q)
		}
	}
	for _, q := range w.notUp {
		if s.up.seen(q) > 0 {
			t.Errorf("the upstream was asked %q", q)
		}
	}
	if len(req.Question) > 0 && !w.forwarded {
		if got := s.up.askedAbout(req.Question[0].Name); len(got) > 0 {
			t.Errorf("the upstream was asked about %s (%v); no case sends it there", req.Question[0].Name, got)
		}
	}
}

// meshFile is the name table every case but the rejection ones is served.
const meshFile = "testdata/mesh.json"

// tableAddrs returns the addresses of host in a mesh file, as A or AAAA
// record texts owned by owner: big answers are written from the file, not
// by hand.
func tableAddrs(t *testing.T, file, host, owner string, qtype uint16) []string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var nt struct {
		Table map[string]struct {
			IPs []string `json:"ips"`
		} `json:"table"`
	}
	if err := json.Unmarshal(data, &nt); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, ip := range nt.Table[host].IPs {
		v6 := strings.Contains(ip, ":")
		switch {
		case qtype == dns.TypeA && !v6:
			out = append(out, a(owner, ip))
		case qtype == dns.TypeAAAA && v6:
			out = append(out, aaaa(owner, ip))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func TestConformance(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	s := startServer(t, meshFile, up)
	for _, c := range cases(t) {
		s.run(t, c)
	}
	t.Run("RFC 7766 §6.2.1.1: queries pipelined on one connection are all answered, each with its ID", func(t *testing.T) {
		s.pipelining(t)
	})
	t.Run("RFC 7766 §6.2.1: the connection stays open after an answer", func(t *testing.T) {
		s.connectionReuse(t)
	})
	t.Run("the upstream gets only the questions meshdns passes on", func(t *testing.T) {
		allowed := map[string]bool{". ns": true} // forward's health check
		for _, c := range cases(t) {
			for _, q := range c.want.up {
				allowed[strings.ToLower(q)] = true
			}
		}
		for _, q := range pipeline() {
			for _, u := range q.want.up {
				allowed[strings.ToLower(u)] = true
			}
		}
		var extra []string
		for _, q := range up.questions() {
			if !allowed[q] {
				extra = append(extra, q)
			}
		}
		slices.Sort(extra)
		if len(extra) > 0 {
			t.Errorf("the upstream was asked questions no case sends it: %s", strings.Join(extra, ", "))
		}
	})
}
