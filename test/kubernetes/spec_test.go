package kubernetes

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// The Kubernetes DNS-Based Service Discovery specification, version 1.1.0,
// checked against meshdns as the specification words it, on the cluster of
// createFixture (zone cluster.local).

// anyRcode marks a case where the specification says nothing of the rcode.
const anyRcode = -1

type specCase struct {
	clause string
	name   string
	qtype  uint16
	rcode  int
	// want is the whole answer section, as "owner TYPE data" in lower case;
	// SRV data is "port target" (priority and weight are not prescribed).
	want []string
}

func specCases() []specCase {
	const (
		z       = ".svc.cluster.local."
		noError = dns.RcodeSuccess
		nx      = dns.RcodeNameError
	)
	a := func(owner, ip string) string { return owner + " A " + ip }
	aaaa := func(owner, ip string) string { return owner + " AAAA " + ip }
	srv := func(owner string, port int, target string) string {
		return fmt.Sprintf("%s SRV %d %s", owner, port, target)
	}
	ptr := func(ip, target string) string { return reverse(ip) + " PTR " + target }
	cname := func(owner, target string) string { return owner + " CNAME " + target }
	return []specCase{
		{"§2.2 dns-version TXT", "dns-version.cluster.local.", dns.TypeTXT, noError, []string{`dns-version.cluster.local. TXT "1.1.0"`}},

		{"§2.3.1 A of an IPv4 ClusterIP", "web.alpha" + z, dns.TypeA, noError, []string{a("web.alpha"+z, "10.96.1.10")}},
		{"§2.3.1 A of an IPv4 ClusterIP, unnamed port", "unnamed.alpha" + z, dns.TypeA, noError, []string{a("unnamed.alpha"+z, "10.96.1.40")}},
		{"§2.3.1 no AAAA for an IPv4-only ClusterIP", "web.alpha" + z, dns.TypeAAAA, noError, nil},
		{"§2.3.1 AAAA of an IPv6 ClusterIP", "v6only.alpha" + z, dns.TypeAAAA, noError, []string{aaaa("v6only.alpha"+z, "fd00:10:96::20")}},
		{"§2.3.1 no A for an IPv6-only ClusterIP", "v6only.alpha" + z, dns.TypeA, noError, nil},
		{"§2.3.1 A of a dual-stack ClusterIP", "dual.alpha" + z, dns.TypeA, noError, []string{a("dual.alpha"+z, "10.96.1.30")}},
		{"§2.3.1 AAAA of a dual-stack ClusterIP", "dual.alpha" + z, dns.TypeAAAA, noError, []string{aaaa("dual.alpha"+z, "fd00:10:96::30")}},
		{"§2.1 case-insensitive: A of a ClusterIP", "WEB.Alpha.SVC.Cluster.LOCAL.", dns.TypeA, noError, []string{a("web.alpha"+z, "10.96.1.10")}},

		{"§2.3.2 SRV of a named TCP port", "_http._tcp.web.alpha" + z, dns.TypeSRV, noError, []string{srv("_http._tcp.web.alpha"+z, 80, "web.alpha"+z)}},
		{"§2.3.2 SRV of a named UDP port", "_dns._udp.web.alpha" + z, dns.TypeSRV, noError, []string{srv("_dns._udp.web.alpha"+z, 53, "web.alpha"+z)}},
		{"§2.3.2 SRV of a named TCP port with the number of a UDP one", "_dns-tcp._tcp.web.alpha" + z, dns.TypeSRV, noError, []string{srv("_dns-tcp._tcp.web.alpha"+z, 53, "web.alpha"+z)}},
		{"§2.3.2 SRV of a named SCTP port", "_diameter._sctp.web.alpha" + z, dns.TypeSRV, noError, []string{srv("_diameter._sctp.web.alpha"+z, 3868, "web.alpha"+z)}},
		{"§2.3.2 SRV of an IPv6 ClusterIP", "_https._tcp.v6only.alpha" + z, dns.TypeSRV, noError, []string{srv("_https._tcp.v6only.alpha"+z, 443, "v6only.alpha"+z)}},
		{"§2.3.2 SRV of a dual-stack ClusterIP, TCP", "_http._tcp.dual.alpha" + z, dns.TypeSRV, noError, []string{srv("_http._tcp.dual.alpha"+z, 80, "dual.alpha"+z)}},
		{"§2.3.2 SRV of a dual-stack ClusterIP, UDP", "_syslog._udp.dual.alpha" + z, dns.TypeSRV, noError, []string{srv("_syslog._udp.dual.alpha"+z, 514, "dual.alpha"+z)}},
		{"§2.3.2 SRV: a port only under its own protocol", "_http._udp.web.alpha" + z, dns.TypeSRV, anyRcode, nil},
		{"§2.3.2 SRV: unnamed ports have no SRV record (by number)", "_8080._tcp.unnamed.alpha" + z, dns.TypeSRV, anyRcode, nil},
		{"§2.3.2 SRV: unnamed ports have no SRV record (protocol)", "_tcp.unnamed.alpha" + z, dns.TypeSRV, anyRcode, nil},
		{"§2.1 case-insensitive: SRV", "_HTTP._TCP.Web.Alpha.svc.cluster.local.", dns.TypeSRV, noError, []string{srv("_http._tcp.web.alpha"+z, 80, "web.alpha"+z)}},

		{"§2.3.3 PTR of an IPv4 ClusterIP", reverse("10.96.1.10"), dns.TypePTR, noError, []string{ptr("10.96.1.10", "web.alpha"+z)}},
		{"§2.3.3 PTR of an IPv6 ClusterIP", reverse("fd00:10:96::20"), dns.TypePTR, noError, []string{ptr("fd00:10:96::20", "v6only.alpha"+z)}},
		{"§2.3.3 PTR of a dual-stack ClusterIP, IPv4", reverse("10.96.1.30"), dns.TypePTR, noError, []string{ptr("10.96.1.30", "dual.alpha"+z)}},
		{"§2.3.3 PTR of a dual-stack ClusterIP, IPv6", reverse("fd00:10:96::30"), dns.TypePTR, noError, []string{ptr("fd00:10:96::30", "dual.alpha"+z)}},
		{"§2.3.3 PTR of a ClusterIP with an unnamed port", reverse("10.96.1.40"), dns.TypePTR, noError, []string{ptr("10.96.1.40", "unnamed.alpha"+z)}},

		{"§2.4.1 A: each ready endpoint, not the not-ready one", "db.beta" + z, dns.TypeA, noError, []string{a("db.beta"+z, "10.1.0.10"), a("db.beta"+z, "10.1.0.11")}},
		{"§2.4.1 no AAAA for an IPv4-only headless Service", "db.beta" + z, dns.TypeAAAA, noError, nil},
		{"§2.4.1 A of a hostname", "db-0.db.beta" + z, dns.TypeA, noError, []string{a("db-0.db.beta"+z, "10.1.0.10")}},
		{"§2.4.1 A of another hostname", "db-1.db.beta" + z, dns.TypeA, noError, []string{a("db-1.db.beta"+z, "10.1.0.11")}},
		{"§2.4.1 no A for a not-ready endpoint's hostname", "db-2.db.beta" + z, dns.TypeA, anyRcode, nil},
		{"§2.1 case-insensitive: A of a hostname", "DB-0.DB.BETA.SVC.CLUSTER.LOCAL.", dns.TypeA, noError, []string{a("db-0.db.beta"+z, "10.1.0.10")}},
		{"§2.1 ready: endpoints without hostnames; no ready condition is ready", "anon.beta" + z, dns.TypeA, noError,
			[]string{a("anon.beta"+z, "10.1.1.1"), a("anon.beta"+z, "10.1.1.2"), a("anon.beta"+z, "10.1.1.4")}},
		{"§2.1 hostname: the dashed address of an endpoint without one", "10-1-1-1.anon.beta" + z, dns.TypeA, noError, []string{a("10-1-1-1.anon.beta"+z, "10.1.1.1")}},
		{"§2.1 hostname: not for a not-ready endpoint", "10-1-1-3.anon.beta" + z, dns.TypeA, anyRcode, nil},
		{"§2.1 ready: publishNotReadyAddresses serves not-ready endpoints", "pnra.beta" + z, dns.TypeA, noError, []string{a("pnra.beta"+z, "10.1.2.1"), a("pnra.beta"+z, "10.1.2.2")}},
		{"§2.1 ready: publishNotReadyAddresses, the hostname", "p-1.pnra.beta" + z, dns.TypeA, noError, []string{a("p-1.pnra.beta"+z, "10.1.2.2")}},
		{"§2.4.1 A: no ready endpoint is NXDOMAIN", "dead.beta" + z, dns.TypeA, nx, nil},
		{"§2.4.1 AAAA: no ready endpoint is NXDOMAIN", "dead.beta" + z, dns.TypeAAAA, nx, nil},
		{"§2.4.1 A: no endpoints at all is NXDOMAIN", "idle.beta" + z, dns.TypeA, nx, nil},
		{"§2.4.1 AAAA: no endpoints at all is NXDOMAIN", "idle.beta" + z, dns.TypeAAAA, nx, nil},
		{"§2.4.1 A of a dual-stack headless Service", "ds.beta" + z, dns.TypeA, noError, []string{a("ds.beta"+z, "10.1.4.1"), a("ds.beta"+z, "10.1.4.2")}},
		{"§2.4.1 AAAA of a dual-stack headless Service", "ds.beta" + z, dns.TypeAAAA, noError, []string{aaaa("ds.beta"+z, "fd00:10:1::4:1"), aaaa("ds.beta"+z, "fd00:10:1::4:3")}},
		{"§2.4.1 A of a hostname with both families", "ds-0.ds.beta" + z, dns.TypeA, noError, []string{a("ds-0.ds.beta"+z, "10.1.4.1")}},
		{"§2.4.1 AAAA of a hostname with both families", "ds-0.ds.beta" + z, dns.TypeAAAA, noError, []string{aaaa("ds-0.ds.beta"+z, "fd00:10:1::4:1")}},
		{"§2.4.1 AAAA of an IPv6 endpoint without hostname", "fd00-10-1--4-3.ds.beta" + z, dns.TypeAAAA, noError, []string{aaaa("fd00-10-1--4-3.ds.beta"+z, "fd00:10:1::4:3")}},
		{"§2.4.1 A of a headless Service without ports", "bare.beta" + z, dns.TypeA, noError, []string{a("bare.beta"+z, "10.1.6.1")}},
		{"§2.4.1 A of a hostname of a headless Service without ports", "bare-0.bare.beta" + z, dns.TypeA, noError, []string{a("bare-0.bare.beta"+z, "10.1.6.1")}},

		{"§2.4.2 SRV: N ready endpoints x M named ports (first port)", "_mysql._tcp.db.beta" + z, dns.TypeSRV, noError,
			[]string{srv("_mysql._tcp.db.beta"+z, 3306, "db-0.db.beta"+z), srv("_mysql._tcp.db.beta"+z, 3306, "db-1.db.beta"+z)}},
		{"§2.4.2 SRV: N ready endpoints x M named ports (second port)", "_mysqlx._tcp.db.beta" + z, dns.TypeSRV, noError,
			[]string{srv("_mysqlx._tcp.db.beta"+z, 33060, "db-0.db.beta"+z), srv("_mysqlx._tcp.db.beta"+z, 33060, "db-1.db.beta"+z)}},
		{"§2.1 case-insensitive: SRV of a headless Service", "_MYSQL._TCP.Db.Beta.svc.cluster.local.", dns.TypeSRV, noError,
			[]string{srv("_mysql._tcp.db.beta"+z, 3306, "db-0.db.beta"+z), srv("_mysql._tcp.db.beta"+z, 3306, "db-1.db.beta"+z)}},
		{"§2.4.2 SRV: targets are the hostnames of endpoints without one", "_http._tcp.anon.beta" + z, dns.TypeSRV, noError,
			[]string{srv("_http._tcp.anon.beta"+z, 80, "10-1-1-1.anon.beta"+z), srv("_http._tcp.anon.beta"+z, 80, "10-1-1-2.anon.beta"+z), srv("_http._tcp.anon.beta"+z, 80, "10-1-1-4.anon.beta"+z)}},
		{"§2.4.2 SRV: publishNotReadyAddresses", "_tcp._tcp.pnra.beta" + z, dns.TypeSRV, noError,
			[]string{srv("_tcp._tcp.pnra.beta"+z, 5000, "p-0.pnra.beta"+z), srv("_tcp._tcp.pnra.beta"+z, 5000, "p-1.pnra.beta"+z)}},
		{"§2.4.2 SRV: dual-stack endpoints, UDP port", "_gossip._udp.ds.beta" + z, dns.TypeSRV, noError,
			[]string{srv("_gossip._udp.ds.beta"+z, 7946, "ds-0.ds.beta"+z), srv("_gossip._udp.ds.beta"+z, 7946, "ds-1.ds.beta"+z), srv("_gossip._udp.ds.beta"+z, 7946, "fd00-10-1--4-3.ds.beta"+z)}},
		{"§2.4.2 SRV: dual-stack endpoints, TCP port", "_gossip-tcp._tcp.ds.beta" + z, dns.TypeSRV, noError,
			[]string{srv("_gossip-tcp._tcp.ds.beta"+z, 7946, "ds-0.ds.beta"+z), srv("_gossip-tcp._tcp.ds.beta"+z, 7946, "ds-1.ds.beta"+z), srv("_gossip-tcp._tcp.ds.beta"+z, 7946, "fd00-10-1--4-3.ds.beta"+z)}},
		// The target is the endpoint, so the port is the one on the endpoint
		// (RFC 2782: "the port on this target host"): the EndpointSlice's,
		// the Service's targetPort, as kube-dns and CoreDNS answer.
		{"§2.4.2 SRV: the port on the target endpoint (RFC 2782)", "_web._tcp.tport.beta" + z, dns.TypeSRV, noError, []string{srv("_web._tcp.tport.beta"+z, 8080, "t-0.tport.beta"+z)}},
		{"§2.4.2 SRV: 0 ready endpoints x M named ports", "_http._tcp.dead.beta" + z, dns.TypeSRV, anyRcode, nil},

		{"§2.4.3 PTR of a ready endpoint", reverse("10.1.0.10"), dns.TypePTR, noError, []string{ptr("10.1.0.10", "db-0.db.beta"+z)}},
		{"§2.4.3 PTR of a ready endpoint without hostname", reverse("10.1.1.1"), dns.TypePTR, noError, []string{ptr("10.1.1.1", "10-1-1-1.anon.beta"+z)}},
		{"§2.4.3 PTR of a dual-stack endpoint, IPv4", reverse("10.1.4.1"), dns.TypePTR, noError, []string{ptr("10.1.4.1", "ds-0.ds.beta"+z)}},
		{"§2.4.3 PTR of a dual-stack endpoint, IPv6", reverse("fd00:10:1::4:1"), dns.TypePTR, noError, []string{ptr("fd00:10:1::4:1", "ds-0.ds.beta"+z)}},
		{"§2.4.3 PTR of an IPv6 endpoint without hostname", reverse("fd00:10:1::4:3"), dns.TypePTR, noError, []string{ptr("fd00:10:1::4:3", "fd00-10-1--4-3.ds.beta"+z)}},
		{"§2.4.3 PTR of a published not-ready endpoint", reverse("10.1.2.2"), dns.TypePTR, noError, []string{ptr("10.1.2.2", "p-1.pnra.beta"+z)}},
		{"§2.4.3 no PTR for a not-ready endpoint", reverse("10.1.0.12"), dns.TypePTR, anyRcode, nil},
		{"§2.4.3 no PTR for the endpoint of a Service without ready ones", reverse("10.1.3.1"), dns.TypePTR, anyRcode, nil},

		{"§2.5 CNAME of an ExternalName", "ext.alpha" + z, dns.TypeCNAME, noError, []string{cname("ext.alpha"+z, "www.example.org.")}},
		{"§2.5 ExternalName, IPv4: CNAME and the target's A", "ext.alpha" + z, dns.TypeA, noError,
			[]string{cname("ext.alpha"+z, "www.example.org."), a("www.example.org.", "192.0.2.53")}},
		{"§2.5 ExternalName, IPv6: CNAME and the target's AAAA", "ext.alpha" + z, dns.TypeAAAA, noError,
			[]string{cname("ext.alpha"+z, "www.example.org."), aaaa("www.example.org.", "2001:db8::53")}},
		{"§2.5 CNAME of an ExternalName naming a Service", "alias.alpha" + z, dns.TypeCNAME, noError, []string{cname("alias.alpha"+z, "web.alpha"+z)}},
		{"§2.5 ExternalName naming a Service: CNAME and its A", "alias.alpha" + z, dns.TypeA, noError,
			[]string{cname("alias.alpha"+z, "web.alpha"+z), a("web.alpha"+z, "10.96.1.10")}},
		{"§2.1 case-insensitive: ExternalName", "EXT.ALPHA.svc.cluster.local.", dns.TypeA, noError,
			[]string{cname("ext.alpha"+z, "www.example.org."), a("www.example.org.", "192.0.2.53")}},
	}
}

// specRR renders a record as specCase.want does.
func specRR(rr dns.RR) string {
	h := rr.Header()
	owner := strings.ToLower(h.Name)
	switch rr := rr.(type) {
	case *dns.A:
		return owner + " A " + rr.A.String()
	case *dns.AAAA:
		return owner + " AAAA " + rr.AAAA.String()
	case *dns.SRV:
		return fmt.Sprintf("%s SRV %d %s", owner, rr.Port, strings.ToLower(rr.Target))
	case *dns.PTR:
		return owner + " PTR " + strings.ToLower(rr.Ptr)
	case *dns.CNAME:
		return owner + " CNAME " + strings.ToLower(rr.Target)
	case *dns.TXT:
		return fmt.Sprintf("%s TXT %q", owner, strings.Join(rr.Txt, ""))
	}
	return strings.ToLower(rr.String())
}

func specification(t *testing.T, addr string) {
	for _, c := range specCases() {
		for _, network := range []string{"udp", "tcp"} {
			t.Run(c.clause+"/"+network, func(t *testing.T) {
				m, err := exchange(addr, c.name, c.qtype, network)
				if err != nil {
					t.Fatalf("%s %s: %v", c.name, dns.TypeToString[c.qtype], err)
				}
				var got []string
				for _, rr := range m.Answer {
					got = append(got, specRR(rr))
				}
				slices.Sort(got)
				want := slices.Sorted(slices.Values(c.want))
				if c.rcode != anyRcode && m.Rcode != c.rcode || !slices.Equal(got, want) {
					wantRcode := "any rcode"
					if c.rcode != anyRcode {
						wantRcode = dns.RcodeToString[c.rcode]
					}
					t.Errorf("%s %s over %s:\n got  %s %q\n want %s %q",
						c.name, dns.TypeToString[c.qtype], network, dns.RcodeToString[m.Rcode], got, wantRcode, want)
				}
			})
		}
	}
}
