package kubernetes

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/miekg/dns"

	"github.com/meshdns/meshdns/test/harness"
)

// TestConformance runs one API server with one cluster state and serves it
// twice from bin/coredns: by meshdns's kubernetes source and by CoreDNS's own
// kubernetes plugin. "differential" asks both every name the Kubernetes DNS
// specification defines and the negative cases around them, and fails on any
// difference not listed in deliberateDifferences; "specification" checks
// meshdns's answers against the specification's words.
func TestConformance(t *testing.T) {
	cp := harness.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	a := &harness.API{T: t, CP: cp, Ctx: ctx}

	up := startUpstream(t)
	mesh := startServer(t, "meshdns", fmt.Sprintf(
		"meshdns cluster.local in-addr.arpa ip6.arpa {\n\t\tkubernetes %s\n\t\tauthoritative\n\t\tttl 30\n\t}", cp.Kubeconfig), up)
	k8s := startServer(t, "kubernetes", fmt.Sprintf(
		"kubernetes cluster.local in-addr.arpa ip6.arpa {\n\t\tkubeconfig %s\n\t\tttl 30\n\t}", cp.Kubeconfig), up)

	// The cluster is made while both servers watch it. The sentinel objects
	// come last in each watch (namespaces, Services, EndpointSlices): once
	// both servers answer the sentinel's endpoint name, both have been sent
	// everything before it. (A difference that remains is still asked again
	// for a few seconds before it counts.)
	createFixture(a)
	for _, s := range []*harness.CoreDNS{mesh, k8s} {
		waitAnswer(t, s.Addr, "s-0.sync.zz-sync.svc.cluster.local.", dns.TypeA, "10.1.255.1")
	}

	t.Run("differential", func(t *testing.T) {
		cs := loadCluster(t, a)
		differential(t, cs, mesh.Addr, k8s.Addr)
	})
	t.Run("specification", func(t *testing.T) {
		specification(t, mesh.Addr)
	})
}

// The cluster state. ClusterIPs are fixed so that the specification cases
// can name them; endpoint addresses are made up, as no pods run.

func createFixture(a *harness.API) {
	for _, ns := range []string{"alpha", "beta", "empty"} {
		a.Namespace(ns)
	}
	v4, v6 := []corev1.IPFamily{corev1.IPv4Protocol}, []corev1.IPFamily{corev1.IPv6Protocol}
	both := []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
	single, dual := corev1.IPFamilyPolicySingleStack, corev1.IPFamilyPolicyRequireDualStack
	tcp, udp, sctp := corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP
	svc := func(ns, name string, spec corev1.ServiceSpec) *corev1.Service {
		return &corev1.Service{ObjectMeta: om(ns, name), Spec: spec}
	}
	ext := func(ns, name, target string) *corev1.Service {
		return svc(ns, name, corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: target})
	}
	headless := func(ns, name string, families []corev1.IPFamily, ports ...corev1.ServicePort) *corev1.Service {
		policy := single
		if len(families) > 1 {
			policy = dual
		}
		return svc(ns, name, corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, IPFamilies: families, IPFamilyPolicy: &policy, Ports: ports})
	}
	port := func(name string, number int32, proto corev1.Protocol) corev1.ServicePort {
		return corev1.ServicePort{Name: name, Port: number, Protocol: proto}
	}

	services := []*corev1.Service{
		svc("alpha", "web", corev1.ServiceSpec{ClusterIP: "10.96.1.10", ClusterIPs: []string{"10.96.1.10"}, IPFamilies: v4, IPFamilyPolicy: &single, Ports: []corev1.ServicePort{
			port("http", 80, tcp), port("dns", 53, udp), port("dns-tcp", 53, tcp), port("diameter", 3868, sctp)}}),
		svc("alpha", "v6only", corev1.ServiceSpec{ClusterIP: "fd00:10:96::20", ClusterIPs: []string{"fd00:10:96::20"}, IPFamilies: v6, IPFamilyPolicy: &single, Ports: []corev1.ServicePort{
			port("https", 443, tcp)}}),
		svc("alpha", "dual", corev1.ServiceSpec{ClusterIP: "10.96.1.30", ClusterIPs: []string{"10.96.1.30", "fd00:10:96::30"}, IPFamilies: both, IPFamilyPolicy: &dual, Ports: []corev1.ServicePort{
			port("http", 80, tcp), port("syslog", 514, udp)}}),
		svc("alpha", "unnamed", corev1.ServiceSpec{ClusterIP: "10.96.1.40", ClusterIPs: []string{"10.96.1.40"}, IPFamilies: v4, IPFamilyPolicy: &single, Ports: []corev1.ServicePort{
			port("", 8080, tcp)}}),
		ext("alpha", "ext", "www.example.org"),
		ext("alpha", "alias", "web.alpha.svc.cluster.local"),
		ext("alpha", "ext-nx", "nx.example.org"),

		headless("beta", "db", v4, port("mysql", 3306, tcp), port("mysqlx", 33060, tcp)),
		headless("beta", "anon", v4, port("http", 80, tcp)),
		headless("beta", "dead", v4, port("http", 80, tcp)),
		headless("beta", "idle", v4, port("http", 80, tcp)),
		headless("beta", "ds", both, port("gossip", 7946, udp), port("gossip-tcp", 7946, tcp)),
		headless("beta", "tport", v4, corev1.ServicePort{Name: "web", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: tcp}),
		headless("beta", "bare", v4),
	}
	pnra := headless("beta", "pnra", v4, port("tcp", 5000, tcp))
	pnra.Spec.PublishNotReadyAddresses = true
	services = append(services, pnra)
	for _, s := range services {
		a.Service(s)
	}

	yes, no := true, false
	slices := []*discoveryv1.EndpointSlice{
		// A ClusterIP Service's pods: their names and addresses are not in
		// the specification.
		fixtureSlice("alpha", "web-1", "web", discoveryv1.AddressTypeIPv4, []fixturePort{{"http", 80, tcp}, {"dns", 53, udp}, {"dns-tcp", 53, tcp}, {"diameter", 3868, sctp}},
			fixtureEndpoint{"", "10.1.7.1", &yes}, fixtureEndpoint{"", "10.1.7.2", &yes}),
		fixtureSlice("beta", "db-1", "db", discoveryv1.AddressTypeIPv4, []fixturePort{{"mysql", 3306, tcp}, {"mysqlx", 33060, tcp}},
			fixtureEndpoint{"db-0", "10.1.0.10", &yes}, fixtureEndpoint{"db-1", "10.1.0.11", &yes}, fixtureEndpoint{"db-2", "10.1.0.12", &no}),
		// Without hostnames; 10.1.1.4 has no ready condition, which
		// EndpointSlice consumers read as ready.
		fixtureSlice("beta", "anon-1", "anon", discoveryv1.AddressTypeIPv4, []fixturePort{{"http", 80, tcp}},
			fixtureEndpoint{"", "10.1.1.1", &yes}, fixtureEndpoint{"", "10.1.1.2", &yes}, fixtureEndpoint{"", "10.1.1.3", &no}, fixtureEndpoint{"", "10.1.1.4", nil}),
		// publishNotReadyAddresses, with the endpoint's own condition as the
		// pod reports it.
		fixtureSlice("beta", "pnra-1", "pnra", discoveryv1.AddressTypeIPv4, []fixturePort{{"tcp", 5000, tcp}},
			fixtureEndpoint{"p-0", "10.1.2.1", &yes}, fixtureEndpoint{"p-1", "10.1.2.2", &no}),
		fixtureSlice("beta", "dead-1", "dead", discoveryv1.AddressTypeIPv4, []fixturePort{{"http", 80, tcp}},
			fixtureEndpoint{"dead-0", "10.1.3.1", &no}),
		// Dual-stack: one slice per family, ds-0 in both.
		fixtureSlice("beta", "ds-v4", "ds", discoveryv1.AddressTypeIPv4, []fixturePort{{"gossip", 7946, udp}, {"gossip-tcp", 7946, tcp}},
			fixtureEndpoint{"ds-0", "10.1.4.1", &yes}, fixtureEndpoint{"ds-1", "10.1.4.2", &yes}),
		fixtureSlice("beta", "ds-v6", "ds", discoveryv1.AddressTypeIPv6, []fixturePort{{"gossip", 7946, udp}, {"gossip-tcp", 7946, tcp}},
			fixtureEndpoint{"ds-0", "fd00:10:1::4:1", &yes}, fixtureEndpoint{"", "fd00:10:1::4:3", &yes}),
		// The EndpointSlice controller writes the target port.
		fixtureSlice("beta", "tport-1", "tport", discoveryv1.AddressTypeIPv4, []fixturePort{{"web", 8080, tcp}},
			fixtureEndpoint{"t-0", "10.1.5.1", &yes}),
		fixtureSlice("beta", "bare-1", "bare", discoveryv1.AddressTypeIPv4, nil,
			fixtureEndpoint{"bare-0", "10.1.6.1", &yes}),
	}
	for _, s := range slices {
		a.Slice(s)
	}

	// The sentinel, last in every watch.
	a.Namespace("zz-sync")
	a.Service(headless("zz-sync", "sync", v4, port("http", 80, tcp)))
	a.Slice(fixtureSlice("zz-sync", "sync-1", "sync", discoveryv1.AddressTypeIPv4, []fixturePort{{"http", 80, tcp}},
		fixtureEndpoint{"s-0", "10.1.255.1", &yes}))
}

type fixturePort struct {
	name   string
	number int32
	proto  corev1.Protocol
}

type fixtureEndpoint struct {
	hostname, ip string
	ready        *bool
}

func fixtureSlice(ns, name, service string, family discoveryv1.AddressType, ports []fixturePort, eps ...fixtureEndpoint) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{
			discoveryv1.LabelServiceName: service, discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io"}},
		AddressType: family,
	}
	for _, p := range ports {
		s.Ports = append(s.Ports, discoveryv1.EndpointPort{Name: &p.name, Port: &p.number, Protocol: &p.proto})
	}
	for _, e := range eps {
		d := discoveryv1.Endpoint{Addresses: []string{e.ip}, Conditions: discoveryv1.EndpointConditions{Ready: e.ready}}
		if e.hostname != "" {
			d.Hostname = &e.hostname
		}
		s.Endpoints = append(s.Endpoints, d)
	}
	return s
}

// startServer runs bin/coredns with one server block holding plugin (a
// meshdns or kubernetes block), forwarding everything else to upstream.
func startServer(t *testing.T, name, plugin, upstream string) *harness.CoreDNS {
	t.Helper()
	port := harness.FreeDNSPort(t, "127.0.0.1")
	ready := harness.FreePorts(t, 1)[0]
	corefile := fmt.Sprintf(".:%d {\n\tbind 127.0.0.1\n\tready 127.0.0.1:%d\n\t%s\n\tforward . %s\n}\n", port, ready, plugin, upstream)
	path := filepath.Join(t.TempDir(), "Corefile."+name)
	if err := os.WriteFile(path, []byte(corefile), 0o644); err != nil {
		t.Fatal(err)
	}
	return harness.StartCoreDNSWith(t, harness.CoreDNSConfig{
		Corefile:  path,
		Addr:      "127.0.0.1:" + strconv.Itoa(port),
		ReadyAddr: "127.0.0.1:" + strconv.Itoa(ready),
		WaitReady: true,
	})
}

// The scripted upstream both servers forward to: the targets of the
// ExternalName Services live here, so both see the same answers.

const upstreamTTL = 300

var upstreamZone = map[string][]string{
	"www.example.org.": {
		"www.example.org. 300 IN A 192.0.2.53",
		"www.example.org. 300 IN AAAA 2001:db8::53",
		`www.example.org. 300 IN TXT "upstream"`,
		"www.example.org. 300 IN MX 10 mail.example.org.",
	},
	"mail.example.org.": {"mail.example.org. 300 IN A 192.0.2.25"},
	"example.org.":      {"example.org. 300 IN SOA ns.example.org. hostmaster.example.org. 1 7200 1800 86400 300"},
}

func startUpstream(t *testing.T) string {
	t.Helper()
	zone := map[string][]dns.RR{}
	for name, rrs := range upstreamZone {
		for _, s := range rrs {
			rr, err := dns.NewRR(s)
			if err != nil {
				t.Fatal(err)
			}
			zone[name] = append(zone[name], rr)
		}
	}
	soaOf := func(name string) []dns.RR {
		if dns.IsSubDomain("example.org.", name) {
			return zone["example.org."]
		}
		soa, _ := dns.NewRR(". 300 IN SOA a.root-servers.net. nstld.verisign-grs.com. 1 1800 900 604800 86400")
		return []dns.RR{soa}
	}
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Authoritative, m.RecursionAvailable = true, true
		q := r.Question[0]
		name := strings.ToLower(q.Name)
		rrs, ok := zone[name]
		if !ok {
			m.Rcode = dns.RcodeNameError
			m.Ns = soaOf(name)
			_ = w.WriteMsg(m)
			return
		}
		for _, rr := range rrs {
			if rr.Header().Rrtype == q.Qtype || q.Qtype == dns.TypeANY {
				rr = dns.Copy(rr)
				rr.Header().Name = q.Name
				m.Answer = append(m.Answer, rr)
			}
		}
		if len(m.Answer) == 0 {
			m.Ns = soaOf(name)
		}
		_ = w.WriteMsg(m)
	})
	port := harness.FreeDNSPort(t, "127.0.0.1")
	addr := "127.0.0.1:" + strconv.Itoa(port)
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait) // after the Shutdowns below: cleanups run last first
	for _, s := range []*dns.Server{{PacketConn: pc, Handler: handler}, {Listener: l, Handler: handler}} {
		wg.Go(func() { _ = s.ActivateAndServe() })
		t.Cleanup(func() { _ = s.Shutdown() })
	}
	return addr
}

// exchange asks addr one question: over UDP without EDNS, as a stub
// resolver does, over TCP with EDNS. It retries a lost UDP datagram.
func exchange(addr, name string, qtype uint16, network string) (*dns.Msg, error) {
	c := &dns.Client{Net: network, Timeout: 2 * time.Second}
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if network == "tcp" {
		m.SetEdns0(4096, false)
	}
	var err error
	for range 3 {
		var r *dns.Msg
		if r, _, err = c.Exchange(m, addr); err == nil {
			return r, nil
		}
	}
	return nil, err
}

// waitAnswer polls addr until name answers qtype with exactly want (the
// data of the A records, space separated) over UDP and TCP.
func waitAnswer(t *testing.T, addr, name string, qtype uint16, want string) {
	t.Helper()
	deadline := time.Now().Add(settle)
	for {
		got := answer(addr, name, qtype, "udp")
		if got == want && answer(addr, name, qtype, "tcp") == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s %s = %q after %s, want %q", addr, name, dns.TypeToString[qtype], got, settle, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
