package kubernetes

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/meshdns/meshdns/plugin/table"
)

func unstructuredImport(name, typ string, ips []any, ports []any) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceImport",
		"metadata": map[string]any{"namespace": "db", "name": name, "resourceVersion": "7"},
		"spec":     map[string]any{"type": typ, "ips": ips, "ports": ports},
	}}
}

func TestServiceImportTransform(t *testing.T) {
	port := func(name, proto string, n int64) any {
		return map[string]any{"name": name, "protocol": proto, "port": n}
	}
	notAList := unstructuredImport("mysql", "ClusterSetIP", nil, nil)
	notAList.Object["spec"].(map[string]any)["ips"] = "10.42.0.1"
	tests := []struct {
		name string
		obj  *unstructured.Unstructured
		want string // the converted struct, or the start of the skip error
	}{
		{"ClusterSetIP, dual-stack, named ports", unstructuredImport("mysql", "ClusterSetIP", []any{"10.42.0.1", "fd00::1"},
			[]any{port("SQL", "TCP", 3306), port("", "UDP", 53)}),
			"db/mysql headless=false [10.42.0.1 fd00::1] [/53/udp sql/3306/tcp]"},
		{"Headless", unstructuredImport("mysql", "Headless", nil, []any{port("sql", "", 3306)}),
			"db/mysql headless=true [] [sql/3306/tcp]"},
		{"an unknown type", unstructuredImport("mysql", "LoadBalancer", nil, nil),
			`invalid_host: ServiceImport type "LoadBalancer" (want ClusterSetIP or Headless)`},
		{"a bad ip", unstructuredImport("mysql", "ClusterSetIP", []any{"10.42.0"}, nil), `invalid_address: ServiceImport ip "10.42.0"`},
		{"a bad port", unstructuredImport("mysql", "ClusterSetIP", nil, []any{port("x", "TCP", 0)}), `invalid_port: ServiceImport port "x" 0`},
		{"a field of the wrong type", notAList, "invalid_host: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := serviceImportTransform(tt.obj)
			if err != nil {
				t.Fatal(err)
			}
			var got string
			switch o := out.(type) {
			case *serviceImport:
				var ps []string
				for _, p := range o.ports {
					ps = append(ps, fmt.Sprintf("%s/%d/%s", p.Name, p.Number, p.Protocol))
				}
				got = fmt.Sprintf("%s/%s headless=%v %v [%s]", o.ns, o.name, o.headless, fmtAddrs(o.ips), strings.Join(ps, " "))
			case *skipped:
				got = o.err.Error()
			}
			if !strings.HasPrefix(got, tt.want) || (strings.HasPrefix(tt.want, "db/") && got != tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func fmtAddrs(as []netip.Addr) string {
	var ss []string
	for _, a := range as {
		ss = append(ss, a.String())
	}
	return "[" + strings.Join(ss, " ") + "]"
}

// A ServiceImport and the slices imported for it give the clusterset names
// of the Multicluster DNS specification; a cluster's own Service of the same
// name is unaffected.
func TestStateServiceImports(t *testing.T) {
	rec := &recorder{}
	st := newState(scope{domain: "cluster.local"}, rec)
	st.sync()
	yes, no := true, false
	hostname := "db-0"
	imported := func(name, cluster string, eps ...discoveryv1.Endpoint) *endpointSlice {
		s, err := convertEndpointSlice(&discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: name, Labels: map[string]string{mcsServiceLabel: "mysql", mcsClusterLabel: cluster}},
			Endpoints:  eps,
		})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	st.setImport("db/mysql", &serviceImport{ns: "db", name: "mysql", headless: true, ports: []table.Port{{Name: "sql", Number: 3306}}})
	st.setSlice("db/imported-east", imported("imported-east", "east",
		discoveryv1.Endpoint{Addresses: []string{"10.1.0.5"}, Hostname: &hostname},
		discoveryv1.Endpoint{Addresses: []string{"10.1.0.6"}, Conditions: discoveryv1.EndpointConditions{Ready: &no}}))
	st.setSlice("db/imported-west", imported("imported-west", "west",
		discoveryv1.Endpoint{Addresses: []string{"10.2.0.5"}, Hostname: &hostname, Conditions: discoveryv1.EndpointConditions{Ready: &yes}}))
	e := rec.has["mysql.db"+clustersetSuffix]
	want := []table.Endpoint{{Hostname: "db-0", Addr: netip.MustParseAddr("10.1.0.5"), Cluster: "east"}, {Hostname: "db-0", Addr: netip.MustParseAddr("10.2.0.5"), Cluster: "west"}}
	if !slices.Equal(e.Endpoints, want) || fmtAddrs(e.Addrs) != "[10.1.0.5 10.2.0.5]" {
		t.Errorf("headless import: %+v, want endpoints %v", e, want)
	}
	if _, ok := rec.has["mysql.db.svc.cluster.local"]; ok {
		t.Error("an imported slice gave the cluster's own Service a name")
	}

	st.setImport("db/mysql", &serviceImport{ns: "db", name: "mysql", ips: addrs("10.42.0.1")})
	if e := rec.has["mysql.db"+clustersetSuffix]; fmtAddrs(e.Addrs) != "[10.42.0.1]" || len(e.Endpoints) != 0 {
		t.Errorf("ClusterSetIP import: %+v", e)
	}
	st.setImport("db/mysql", nil)
	if _, ok := rec.has["mysql.db"+clustersetSuffix]; ok {
		t.Error("a deleted ServiceImport is still served")
	}
}
