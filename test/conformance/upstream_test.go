package conformance

import (
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// upstream is the scripted server behind forward. It is authoritative for
// example. and answers every other name as a recursive resolver would for a
// name that does not exist, so a name meshdns should have answered itself
// shows up as a wrong answer and in the upstream's log.
type upstream struct {
	addr    string
	mu      sync.Mutex
	asked   map[string]int // "name type" ("name class type" if not IN), lower case, by count
	servers []*dns.Server
}

// The upstream's zone. Its SOA TTL equals its MINIMUM, so the TTL of its
// negative answers (RFC 2308 §3) is plain to see.
const (
	upTTL = 60
	upSOA = "example. 300 IN SOA ns.example. hostmaster.example. SERIAL 3600 600 86400 300"
	// rootSOA is what the upstream puts in an NXDOMAIN outside example.
	rootSOA = ". 86400 IN SOA a.root-servers.net. nstld.verisign-grs.com. SERIAL 1800 900 604800 86400"
)

// upRecords are the records of ok.example. by type.
var upRecords = map[uint16]string{
	dns.TypeA:    "ok.example. 60 IN A 192.0.2.10",
	dns.TypeAAAA: "ok.example. 60 IN AAAA 2001:db8::10",
	dns.TypeTXT:  `ok.example. 60 IN TXT "ok"`,
	dns.TypeMX:   "ok.example. 60 IN MX 10 mail.example.",
	dns.TypeSRV:  "ok.example. 60 IN SRV 0 0 443 ok.example.",
}

// upAnswer is rrText of ok.example.'s record of qtype.
func upAnswer(qtype uint16) string {
	if qtype == dns.TypeSRV {
		return "ok.example. 60 IN SRV P W 443 ok.example."
	}
	return upRecords[qtype]
}

func startUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{asked: map[string]int{}}
	// forward sends UDP and TCP to one address, so both must share a port.
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("upstream: %v", err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			pc.Close()
			continue
		}
		u.addr = pc.LocalAddr().String()
		for _, s := range []*dns.Server{{PacketConn: pc, Handler: u}, {Listener: l, Handler: u}} {
			started := make(chan struct{})
			s.NotifyStartedFunc = func() { close(started) }
			go s.ActivateAndServe()
			<-started
			u.servers = append(u.servers, s)
		}
		t.Cleanup(func() {
			for _, s := range u.servers {
				s.Shutdown()
			}
		})
		return u
	}
	t.Fatalf("upstream: no port free for both UDP and TCP")
	return nil
}

func (u *upstream) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	if len(r.Question) != 1 {
		return
	}
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	// "name TYPE", or "name CLASS TYPE" for a class other than IN.
	key := name + " " + dns.TypeToString[q.Qtype]
	if q.Qclass != dns.ClassINET {
		key = name + " " + dns.ClassToString[q.Qclass] + " " + dns.TypeToString[q.Qtype]
	}
	u.mu.Lock()
	u.asked[strings.ToLower(key)]++
	u.mu.Unlock()

	m := new(dns.Msg)
	m.SetReply(r)
	m.RecursionAvailable = true
	if o := r.IsEdns0(); o != nil {
		m.SetEdns0(1232, o.Do())
	}
	must := func(s string) dns.RR {
		rr, err := dns.NewRR(s)
		if err != nil {
			panic(err)
		}
		return rr
	}
	soa := func() dns.RR { return must(strings.Replace(upSOA, "SERIAL", "1", 1)) }
	switch {
	case name == "silent.example.":
		return // never answers: forward gives up after its read_timeout
	case name == "servfail.example.":
		m.Rcode = dns.RcodeServerFailure
	case name == "refused.example.":
		m.Rcode = dns.RcodeRefused
	case name == "." && q.Qtype == dns.TypeNS: // forward's health check
		m.Answer = []dns.RR{must(". 86400 IN NS a.root-servers.net.")}
	case name == "ok.example.":
		m.Authoritative = true
		if s, ok := upRecords[q.Qtype]; ok {
			m.Answer = []dns.RR{must(s)}
		} else {
			m.Ns = []dns.RR{soa()}
		}
	case name == "nodata.example.":
		m.Authoritative = true
		m.Ns = []dns.RR{soa()}
	case dns.IsSubDomain("example.", name):
		m.Authoritative = true
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{soa()}
	default:
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{must(strings.Replace(rootSOA, "SERIAL", "1", 1))}
	}
	w.WriteMsg(m)
}

// seen reports how often the upstream was asked "name TYPE", or "name CLASS
// TYPE" for a class other than IN (any case).
func (u *upstream) seen(question string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.asked[strings.ToLower(question)]
}

// askedAbout returns the questions the upstream got for name, any type.
func (u *upstream) askedAbout(name string) []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []string
	for q := range u.asked {
		if n, _, _ := strings.Cut(q, " "); n == strings.ToLower(name) {
			out = append(out, q)
		}
	}
	return out
}

// questions returns every question the upstream got.
func (u *upstream) questions() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []string
	for q := range u.asked {
		out = append(out, q)
	}
	return out
}
