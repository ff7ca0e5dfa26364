package xds

import (
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/coredns/caddy"
)

func parseString(t *testing.T, input, root string) (*Source, error) {
	t.Helper()
	c := caddy.NewTestController("dns", input)
	if !c.Next() {
		t.Fatal("empty input")
	}
	return Parse(c, root)
}

func TestParse(t *testing.T) {
	dir := t.TempDir()
	p := newPKI(t, dir)
	tests := []struct {
		name, input string
		want        Source
	}{
		{"insecure", "xds 127.0.0.1:15010 {\n insecure\n}",
			Source{Address: "127.0.0.1:15010", ClusterID: "Kubernetes", Insecure: true}},
		{"every option", `xds istiod.istio-system.svc:15012 {
			node_ip 10.0.0.5
			workload vm-1
			namespace shop
			node_id sidecar~10.0.0.5~vm-1.shop~shop.svc.cluster.local
			cluster_id east
			metadata ISTIO_VERSION 1.31.1
			metadata DNS_AUTO_ALLOCATE false
			tls ` + p.ca + " " + p.clientCert + " " + p.clientKey + `
			token /var/run/secrets/tokens/istio-token
			server_name istiod.istio-system.svc
			snapshot /var/lib/meshdns/xds.json
		}`, Source{Address: "istiod.istio-system.svc:15012", NodeIP: "10.0.0.5", Workload: "vm-1", Namespace: "shop",
			NodeID: "sidecar~10.0.0.5~vm-1.shop~shop.svc.cluster.local", ClusterID: "east",
			Metadata: map[string]string{"ISTIO_VERSION": "1.31.1", "DNS_AUTO_ALLOCATE": "false"},
			CAFile:   p.ca, CertFile: p.clientCert, KeyFile: p.clientKey, TokenFile: "/var/run/secrets/tokens/istio-token",
			ServerName: "istiod.istio-system.svc", Snapshot: "/var/lib/meshdns/xds.json"}},
		{"ipv6 address", "xds [fd00::1]:15012 {\n tls " + p.ca + "\n node_ip fd00::5\n}",
			Source{Address: "[fd00::1]:15012", ClusterID: "Kubernetes", CAFile: p.ca, NodeIP: "fd00::5"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseString(t, tt.input, "")
			if err != nil {
				t.Fatal(err)
			}
			if got.retry != defaultBackoff {
				t.Errorf("retry %+v", got.retry)
			}
			got.retry = backoff{}
			if !reflect.DeepEqual(*got, tt.want) {
				t.Errorf("\ngot  %+v\nwant %+v", *got, tt.want)
			}
			if want := "xds:" + tt.want.Address; got.Name() != want {
				t.Errorf("Name() = %q, want %q", got.Name(), want)
			}
		})
	}
}

// Relative files are found under the root plugin's directory.
func TestParseRoot(t *testing.T) {
	dir := t.TempDir()
	p := newPKI(t, dir)
	s, err := parseString(t, "xds 127.0.0.1:15012 {\n tls root.pem\n token token\n snapshot snap.json\n}", dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.CAFile != p.ca || s.TokenFile != filepath.Join(dir, "token") || s.Snapshot != filepath.Join(dir, "snap.json") {
		t.Errorf("%+v", s)
	}
}

func TestParseErrors(t *testing.T) {
	dir := t.TempDir()
	p := newPKI(t, dir)
	notPEM := filepath.Join(dir, "not.pem")
	os.WriteFile(notPEM, []byte("hello"), 0o600)
	tls := "\n tls " + p.ca
	tests := []struct{ input, want string }{
		{"xds", "want 'xds ADDRESS'"},
		{"xds {\n insecure\n}", "want 'xds ADDRESS'"},
		{"xds a:1 b:2 {\n insecure\n}", "want 'xds [ADDRESS]'"},
		{"xds istiod {\n insecure\n}", "want HOST:PORT"},
		{"xds istiod: {\n insecure\n}", "want HOST:PORT"},
		{"xds a:1", "want 'tls CA [CERT KEY]', or 'insecure'"},
		{"xds a:1 {\n insecure\n node_ip\n}", "node_ip: want one value"},
		{"xds a:1 {\n insecure\n node_ip 10.0.0.300\n}", `node_ip: invalid address "10.0.0.300"`},
		{"xds a:1 {\n insecure\n node_ip fe80::1%eth0\n}", "node_ip: invalid address"},
		{"xds a:1 {\n insecure\n workload a b\n}", "workload: want one value"},
		{"xds a:1 {\n insecure\n workload Bad_Name\n}", `workload: invalid name "Bad_Name"`},
		{"xds a:1 {\n insecure\n namespace a.b\n}", `namespace: invalid namespace "a.b"`},
		{"xds a:1 {\n insecure\n node_id sidecar~1.2.3.4\n}", "node_id: want TYPE~IP~NAME.NAMESPACE~DOMAIN"},
		{"xds a:1 {\n insecure\n cluster_id\n}", "cluster_id: want one value"},
		{"xds a:1 {\n insecure\n cluster_id \"\"\n}", "cluster_id: empty"},
		{"xds a:1 {\n insecure\n metadata K\n}", "metadata: want KEY VALUE"},
		{"xds a:1 {\n insecure\n metadata K V W\n}", "metadata: want KEY VALUE"},
		{"xds a:1 {\n insecure\n metadata K V\n metadata K W\n}", "metadata: K given twice"},
		{"xds a:1 {\n tls\n}", "tls: want CA [CERT KEY]"},
		{"xds a:1 {\n tls " + p.ca + " " + p.clientCert + "\n}", "tls: want CA [CERT KEY]"},
		{"xds a:1 {\n tls " + filepath.Join(dir, "nope.pem") + "\n}", "no such file"},
		{"xds a:1 {\n tls " + notPEM + "\n}", "no PEM certificate"},
		{"xds a:1 {\n tls " + p.ca + " " + p.clientCert + " " + p.serverKey + "\n}", "private key does not match"},
		{"xds a:1 {" + tls + "\n token\n}", "token: want one value"},
		{"xds a:1 {" + tls + "\n server_name a b\n}", "server_name: want one value"},
		{"xds a:1 {\n insecure yes\n}", "insecure takes no arguments"},
		{"xds a:1 {" + tls + "\n snapshot\n}", "snapshot: want one value"},
		{"xds a:1 {" + tls + "\n delta\n}", `unknown property "delta"`},
		{"xds a:1 {" + tls + "\n insecure\n}", "'insecure' and 'tls' exclude each other"},
		{"xds a:1 {\n insecure\n token /t\n}", "'token' and 'server_name' need 'tls'"},
		{"xds a:1 {\n insecure\n server_name x\n}", "'token' and 'server_name' need 'tls'"},
	}
	for _, tt := range tests {
		_, err := parseString(t, tt.input, "")
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: error %v, want one containing %q", tt.input, err, tt.want)
		}
	}
}

func hostname(t *testing.T) string {
	h, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	return strings.ToLower(h)
}

// Without node_ip, the node is the host's addresses, every family it has,
// and its id names the first.
func TestFinishHostAddresses(t *testing.T) {
	ips, err := hostAddrs()
	if err != nil || len(ips) == 0 {
		t.Skipf("no address on this host: %v", err)
	}
	s := Source{Workload: "vm1", Namespace: "shop"}
	if err := s.Finish("cluster.local", ""); err != nil {
		t.Fatal(err)
	}
	node, err := s.node()
	if err != nil {
		t.Fatal(err)
	}
	if s.NodeID != "sidecar~"+ips[0]+"~vm1.shop~shop.svc.cluster.local" || node.Metadata.Fields["INSTANCE_IPS"].GetStringValue() != strings.Join(ips, ",") {
		t.Errorf("node id %q, INSTANCE_IPS %q; host addresses %q", s.NodeID, node.Metadata.Fields["INSTANCE_IPS"].GetStringValue(), ips)
	}
	for _, ip := range ips {
		if a := netip.MustParseAddr(ip); a.IsLoopback() || a.IsLinkLocalUnicast() {
			t.Errorf("%s is not an address the node is reached at", ip)
		}
	}
}

func TestFinish(t *testing.T) {
	tests := []struct {
		name           string
		src            Source
		domain, meshNS string
		wantID, wantNS string
		wantErr        string
	}{
		{"built", Source{NodeIP: "10.0.0.5", Workload: "vm1", Namespace: "shop"}, "cluster.local", "", "sidecar~10.0.0.5~vm1.shop~shop.svc.cluster.local", "shop", ""},
		{"meshdns namespace", Source{NodeIP: "fd00::5", Workload: "vm1"}, "corp.local", "bookinfo", "sidecar~fd00::5~vm1.bookinfo~bookinfo.svc.corp.local", "bookinfo", ""},
		{"xds namespace wins", Source{NodeIP: "10.0.0.5", Workload: "vm1", Namespace: "shop"}, "cluster.local", "bookinfo", "sidecar~10.0.0.5~vm1.shop~shop.svc.cluster.local", "shop", ""},
		{"node id", Source{NodeID: "sidecar~10.0.0.5~vm1.shop~shop.svc.cluster.local"}, "cluster.local", "", "sidecar~10.0.0.5~vm1.shop~shop.svc.cluster.local", "shop", ""},
		{"node id and namespace", Source{NodeID: "router~10.0.0.5~gw.a~a.svc.cluster.local", Namespace: "b"}, "cluster.local", "", "router~10.0.0.5~gw.a~a.svc.cluster.local", "b", ""},
		{"nothing", Source{}, "cluster.local", "", "", "", "no node identity"},
		// Istio's agent's default: the hostname.
		{"no workload", Source{NodeIP: "10.0.0.5"}, "cluster.local", "shop", "sidecar~10.0.0.5~" + hostname(t) + ".shop~shop.svc.cluster.local", "shop", ""},
		{"bad ip", Source{NodeIP: "10.0.0", Workload: "vm1", Namespace: "shop"}, "cluster.local", "", "", "", "node_ip: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.src
			err := s.Finish(tt.domain, tt.meshNS)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || s.NodeID != tt.wantID || s.Namespace != tt.wantNS || s.Domain != tt.domain {
				t.Errorf("err %v, id %q namespace %q domain %q", err, s.NodeID, s.Namespace, s.Domain)
			}
		})
	}
}

func TestNodeMetadata(t *testing.T) {
	s := Source{NodeID: "sidecar~10.0.0.5~vm1.shop~shop.svc.cluster.local", Namespace: "shop", ClusterID: "east", NodeIP: "10.0.0.5",
		Metadata: map[string]string{"DNS_AUTO_ALLOCATE": "false", "ISTIO_VERSION": "1.31.1"}}
	n, err := s.node()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"DNS_CAPTURE": "true", "DNS_AUTO_ALLOCATE": "false", "CLUSTER_ID": "east", "NAMESPACE": "shop",
		"INSTANCE_IPS": "10.0.0.5", "ISTIO_VERSION": "1.31.1"}
	if got := n.GetMetadata().AsMap(); !maps.Equal(got, want) || n.GetId() != s.NodeID {
		t.Errorf("node %q metadata %v, want %v", n.GetId(), got, want)
	}
}
