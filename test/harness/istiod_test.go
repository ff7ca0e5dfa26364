package harness

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/structpb"
	apinetworkingv1 "istio.io/api/networking/v1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// nameTableType is the xDS type of Istio's NDS (Name Discovery Service).
const nameTableType = NameTableType

func TestIstiod(t *testing.T) {
	cp := Start(t)
	istiod := StartIstiod(t, cp)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// A dual-stack Service and a ServiceEntry without addresses, whose VIPs
	// istiod allocates itself into status.addresses.
	if err := cp.ensureNamespace(ctx, "bookinfo"); err != nil {
		t.Fatal(err)
	}
	dualStack := corev1.IPFamilyPolicyRequireDualStack
	svc, err := cp.Client.CoreV1().Services("bookinfo").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "reviews"},
		Spec: corev1.ServiceSpec{
			IPFamilyPolicy: &dualStack,
			Ports:          []corev1.ServicePort{{Name: "http", Port: 9080}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create service: %v", err)
	}
	_, err = cp.Istio.NetworkingV1().ServiceEntries("bookinfo").Create(ctx, &networkingv1.ServiceEntry{
		ObjectMeta: metav1.ObjectMeta{Name: "external-api"},
		Spec: apinetworkingv1.ServiceEntry{
			Hosts:      []string{"api.example.com"},
			Ports:      []*apinetworkingv1.ServicePort{{Number: 443, Name: "https", Protocol: "TLS"}},
			Location:   apinetworkingv1.ServiceEntry_MESH_EXTERNAL,
			Resolution: apinetworkingv1.ServiceEntry_DNS,
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create service entry: %v", err)
	}
	seVIPs := allocatedVIPs(ctx, t, cp, "bookinfo", "external-api")
	t.Logf("service ClusterIPs %v, service entry status.addresses %v", svc.Spec.ClusterIPs, seVIPs)

	// The node is IPv4-only (10.0.0.5), so istiod sends only the IPv4
	// addresses of both.
	const (
		svcHost = "reviews.bookinfo.svc.cluster.local"
		seHost  = "api.example.com"
	)
	want := map[string]nameInfo{
		svcHost: {IPs: []string{svc.Spec.ClusterIPs[0]}, Registry: "Kubernetes", Shortname: "reviews", Namespace: "bookinfo"},
		seHost:  {IPs: []string{seVIPs[0]}, Registry: "External"},
	}
	hasBoth := func(table map[string]nameInfo) bool {
		return checkNameTable(table, want) == nil
	}
	node := ndsNode("vm-ns", true)

	// istiod listens only where it is told: loopback, on the free ports the
	// harness picked, so that several can run on one machine.
	t.Run("listens only on its loopback ports", func(t *testing.T) {
		checkListeners(t, istiod)
	})

	t.Run("plaintext", func(t *testing.T) {
		conn := dial(t, istiod.PlaintextAddr, insecure.NewCredentials())
		table, err := watchNameTable(ctx, conn, node, hasBoth)
		logNameTable(t, table)
		if err != nil {
			t.Fatalf("NDS over plaintext: %v", err)
		}
	})

	root := istiod.RootCert()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(root) {
		t.Fatalf("root certificate from %s: no certificate", IstioRootCertConfigMap)
	}
	tlsCreds := credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: IstiodServerName})
	token := cp.CreateToken(t, "vm-ns", "vm1", "istio-ca")

	t.Run("tls", func(t *testing.T) {
		conn := dial(t, istiod.TLSAddr, tlsCreds)
		table, err := watchNameTable(bearer(ctx, token), conn, node, hasBoth)
		if err != nil {
			logNameTable(t, table)
			t.Fatalf("NDS over TLS with a token for vm-ns: %v", err)
		}
	})

	t.Run("tls refuses a token of another namespace", func(t *testing.T) {
		other := cp.CreateToken(t, "other-ns", "vm1", "istio-ca")
		conn := dial(t, istiod.TLSAddr, tlsCreds)
		table, err := watchNameTable(bearer(ctx, other), conn, node, hasBoth)
		if status.Code(err) != codes.PermissionDenied {
			logNameTable(t, table)
			t.Fatalf("NDS over TLS for a vm-ns node with a token of other-ns: error %v, want code PermissionDenied", err)
		}
		t.Logf("refused as expected: %v", err)
	})

	t.Run("tls refuses no token", func(t *testing.T) {
		conn := dial(t, istiod.TLSAddr, tlsCreds)
		table, err := watchNameTable(ctx, conn, node, hasBoth)
		if status.Code(err) != codes.Unauthenticated {
			logNameTable(t, table)
			t.Fatalf("NDS over TLS without a token: error %v, want code Unauthenticated", err)
		}
	})

	t.Run("tls refuses an unknown root", func(t *testing.T) {
		conn := dial(t, istiod.TLSAddr, credentials.NewTLS(&tls.Config{ServerName: IstiodServerName}))
		_, err := watchNameTable(bearer(ctx, token), conn, node, hasBoth)
		if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("NDS over TLS with the system roots: error %v, want a certificate error", err)
		}
	})

	// Without DNS_CAPTURE the proxy does not consume auto-allocated VIPs,
	// so the ServiceEntry has no address for it and is left out.
	t.Run("no DNS capture", func(t *testing.T) {
		conn := dial(t, istiod.PlaintextAddr, insecure.NewCredentials())
		table, err := watchNameTable(ctx, conn, ndsNode("vm-ns", false), func(table map[string]nameInfo) bool {
			_, ok := table[svcHost]
			return ok
		})
		if err != nil {
			logNameTable(t, table)
			t.Fatalf("NDS without DNS_CAPTURE: %v", err)
		}
		if info, ok := table[seHost]; ok {
			t.Errorf("NDS without DNS_CAPTURE has %s: %+v, want it left out", seHost, info)
		}
	})

	// Delta xDS serves the same whole table, as one unnamed resource.
	t.Run("delta", func(t *testing.T) {
		conn := dial(t, istiod.PlaintextAddr, insecure.NewCredentials())
		table, names, err := watchNameTableDelta(ctx, conn, node, hasBoth)
		if err != nil {
			logNameTable(t, table)
			t.Fatalf("NDS over delta xDS: %v", err)
		}
		if len(names) != 1 || names[0] != "" {
			t.Errorf("delta NDS resource names = %q, want one unnamed resource", names)
		}
	})

	// A restart serves again on the same port, with the same root.
	t.Run("restart", func(t *testing.T) {
		istiod.Restart()
		conn := dial(t, istiod.PlaintextAddr, insecure.NewCredentials())
		table, err := watchNameTable(ctx, conn, node, hasBoth)
		if err != nil {
			logNameTable(t, table)
			t.Fatalf("NDS after restart: %v", err)
		}
		if again := istiod.RootCert(); string(again) != string(root) {
			t.Errorf("root certificate changed across a restart")
		}
	})

	istiod.Stop()
	if c, err := net.DialTimeout("tcp", istiod.PlaintextAddr, time.Second); err == nil {
		c.Close()
		t.Errorf("istiod still accepts connections on %s after Stop", istiod.PlaintextAddr)
	}
}

// checkListeners fails unless every TCP socket istiod listens on, and every
// UDP socket it has bound, is on 127.0.0.1 and one of its assigned ports.
func checkListeners(t *testing.T, d *Istiod) {
	t.Helper()
	pid := d.p.cmd.Process.Pid
	inodes := map[string]bool{}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("list istiod's file descriptors: %v", err)
	}
	for _, fd := range fds {
		target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if inode, ok := strings.CutPrefix(target, "socket:["); err == nil && ok {
			inodes[strings.TrimSuffix(inode, "]")] = true
		}
	}
	var listening []string
	for _, proto := range []string{"tcp", "tcp6", "udp", "udp6"} {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, proto))
		if err != nil {
			t.Fatalf("read the socket table: %v", err)
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || !inodes[f[9]] {
				continue
			}
			// TCP LISTEN is 0A; an unconnected UDP socket has state 07.
			if state := f[3]; (strings.HasPrefix(proto, "tcp") && state != "0A") ||
				(strings.HasPrefix(proto, "udp") && (state != "07" || !strings.HasSuffix(f[2], ":0000"))) {
				continue
			}
			local, err := parseProcAddr(f[1])
			if err != nil {
				t.Fatalf("/proc/%d/net/%s: %v", pid, proto, err)
			}
			listening = append(listening, proto+" "+local.String())
			if local.Addr() != netip.MustParseAddr("127.0.0.1") || !slices.Contains(d.ports, int(local.Port())) {
				t.Errorf("istiod listens on %s %s, want 127.0.0.1 and one of the ports %v", proto, local, d.ports)
			}
		}
	}
	if len(listening) < 4 {
		t.Errorf("istiod listens on %v, want at least its 4 main ports", listening)
	}
	t.Logf("istiod listens on %v", listening)
}

// parseProcAddr parses a local_address of /proc/net/{tcp,udp}{,6}: the
// address in hex as 32-bit words in host (little-endian) order, and the
// port in hex.
func parseProcAddr(s string) (netip.AddrPort, error) {
	addrHex, portHex, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	b, err := hex.DecodeString(addrHex)
	if err != nil || (len(b) != 4 && len(b) != 16) {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	for i := 0; i < len(b); i += 4 {
		slices.Reverse(b[i : i+4])
	}
	port, err := strconv.ParseUint(portHex, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad port in %q", s)
	}
	addr, _ := netip.AddrFromSlice(b)
	return netip.AddrPortFrom(addr.Unmap(), uint16(port)), nil
}

// allocatedVIPs waits until istiod has written the auto-allocated addresses
// of a ServiceEntry into its status, and checks they come from Istio's
// ranges: an IPv4 address first, then an IPv6 one.
func allocatedVIPs(ctx context.Context, t *testing.T, cp *ControlPlane, namespace, name string) []string {
	t.Helper()
	var vips []string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		se, err := cp.Istio.NetworkingV1().ServiceEntries(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		vips = vips[:0]
		for _, a := range se.Status.GetAddresses() {
			vips = append(vips, a.GetValue())
		}
		return len(vips) > 0, nil
	})
	if err != nil {
		t.Fatalf("no addresses allocated to ServiceEntry %s/%s: %v", namespace, name, err)
	}
	ranges := []netip.Prefix{netip.MustParsePrefix("240.240.0.0/16"), netip.MustParsePrefix("2001:2::/48")}
	if len(vips) != len(ranges) {
		t.Fatalf("ServiceEntry %s/%s status.addresses = %v, want one from each of %v", namespace, name, vips, ranges)
	}
	for i, v := range vips {
		a, err := netip.ParseAddr(v)
		if err != nil || !ranges[i].Contains(a) {
			t.Fatalf("ServiceEntry %s/%s status.addresses = %v, want one from each of %v", namespace, name, vips, ranges)
		}
	}
	return vips
}

// ndsNode is the node of a VM sidecar vm1 in namespace ns, with node IP
// 10.0.0.5, in the form the Istio agent sends.
func ndsNode(ns string, dnsCapture bool) *core.Node {
	md := map[string]any{
		"NAMESPACE":         ns,
		"CLUSTER_ID":        "Kubernetes",
		"DNS_AUTO_ALLOCATE": "true",
	}
	if dnsCapture {
		md["DNS_CAPTURE"] = "true"
	}
	meta, err := structpb.NewStruct(md)
	if err != nil {
		panic(err)
	}
	return &core.Node{
		Id:       fmt.Sprintf("sidecar~10.0.0.5~vm1.%s~%s.svc.cluster.local", ns, ns),
		Metadata: meta,
	}
}

func dial(t *testing.T, addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// bearer adds a service-account token to the gRPC metadata of the calls
// made with ctx, as the Istio agent sends it to istiod.
func bearer(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// watchNameTable is WatchNameTable that gives up after a minute.
func watchNameTable(ctx context.Context, conn *grpc.ClientConn, node *core.Node, done func(map[string]nameInfo) bool) (map[string]nameInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return WatchNameTable(ctx, conn, node, func(t NameTable) bool { return done(t) })
}

// watchNameTableDelta is watchNameTable over a delta ADS stream. It also
// returns the names of the resources of the last response.
func watchNameTableDelta(ctx context.Context, conn *grpc.ClientConn, node *core.Node, done func(map[string]nameInfo) bool) (map[string]nameInfo, []string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		return nil, nil, err
	}
	req := &discovery.DeltaDiscoveryRequest{Node: node, TypeUrl: nameTableType}
	var last map[string]nameInfo
	var names []string
	for {
		if err := stream.Send(req); err != nil {
			return last, names, err
		}
		resp, err := stream.Recv()
		if err != nil {
			return last, names, err
		}
		if resp.GetTypeUrl() != nameTableType {
			return last, names, fmt.Errorf("response of type %q, want %q", resp.GetTypeUrl(), nameTableType)
		}
		names = names[:0]
		for _, r := range resp.GetResources() {
			names = append(names, r.GetName())
		}
		if len(resp.GetResources()) != 1 {
			return last, names, fmt.Errorf("delta NDS response with %d resources (%q), want 1", len(names), names)
		}
		if last, err = UnpackNameTable(resp.GetResources()[0].GetResource()); err != nil {
			return nil, names, err
		}
		if done(last) {
			return last, names, nil
		}
		req = &discovery.DeltaDiscoveryRequest{TypeUrl: nameTableType, ResponseNonce: resp.GetNonce()}
	}
}

// nameInfo is istio.networking.nds.v1.NameTable.NameInfo.
type nameInfo = NameInfo

// checkNameTable reports the first host of want that table lacks or has
// with other data (IPs compared as a set).
func checkNameTable(table map[string]nameInfo, want map[string]nameInfo) error {
	for host, w := range want {
		g, ok := table[host]
		if !ok {
			return fmt.Errorf("%s missing", host)
		}
		gotIPs, wantIPs := slices.Sorted(slices.Values(g.IPs)), slices.Sorted(slices.Values(w.IPs))
		if !slices.Equal(gotIPs, wantIPs) || g.Registry != w.Registry || g.Shortname != w.Shortname || g.Namespace != w.Namespace {
			return fmt.Errorf("%s = %+v, want %+v", host, g, w)
		}
	}
	return nil
}

func logNameTable(t *testing.T, table map[string]nameInfo) {
	t.Helper()
	hosts := make([]string, 0, len(table))
	for h := range table {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	var b strings.Builder
	for _, h := range hosts {
		fmt.Fprintf(&b, "\n  %s: %+v", h, table[h])
	}
	t.Logf("NameTable with %d hosts:%s", len(table), b.String())
}

func TestIstiodNameTableDecoding(t *testing.T) {
	// NameTable{table: {"a.example.com": {ips: ["1.2.3.4", "::1"], registry: "External"},
	// "b.ns.svc.cluster.local": {ips: ["10.96.0.1"], registry: "Kubernetes", shortname: "b", namespace: "ns"}}},
	// with an unknown varint field in an entry that must be skipped.
	info := func(fields ...[]byte) []byte { return slices.Concat(fields...) }
	str := func(num protowire.Number, s string) []byte {
		b := protowire.AppendTag(nil, num, protowire.BytesType)
		return protowire.AppendString(b, s)
	}
	msg := func(num protowire.Number, m []byte) []byte {
		b := protowire.AppendTag(nil, num, protowire.BytesType)
		return protowire.AppendBytes(b, m)
	}
	varint := protowire.AppendVarint(protowire.AppendTag(nil, 9, protowire.VarintType), 300)
	wire := slices.Concat(
		msg(1, info(str(1, "a.example.com"), msg(2, info(str(1, "1.2.3.4"), str(1, "::1"), varint, str(2, "External"))))),
		msg(1, info(str(1, "b.ns.svc.cluster.local"), msg(2, info(str(1, "10.96.0.1"), str(2, "Kubernetes"), str(3, "b"), str(4, "ns"))))),
	)
	got, err := DecodeNameTable(wire)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]nameInfo{
		"a.example.com":          {IPs: []string{"1.2.3.4", "::1"}, Registry: "External"},
		"b.ns.svc.cluster.local": {IPs: []string{"10.96.0.1"}, Registry: "Kubernetes", Shortname: "b", Namespace: "ns"},
	}
	if len(got) != len(want) {
		t.Fatalf("decoded %d hosts, want %d: %+v", len(got), len(want), got)
	}
	if err := checkNameTable(got, want); err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeNameTable(wire[:len(wire)-1]); err == nil {
		t.Error("a truncated NameTable decodes without error")
	}
}
