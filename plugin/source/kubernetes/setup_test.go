package kubernetes

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coredns/caddy"
)

func parseString(t *testing.T, input string) (*Source, error) {
	t.Helper()
	c := caddy.NewTestController("dns", input)
	if !c.Next() {
		t.Fatal("empty input")
	}
	return Parse(c)
}

func TestParse(t *testing.T) {
	tests := []struct {
		input string
		want  Source
	}{
		{"kubernetes", Source{Cluster: "Kubernetes", StartupTimeout: 5 * time.Second}},
		{"kubernetes /etc/kube.conf", Source{Kubeconfig: "/etc/kube.conf", Cluster: "Kubernetes", StartupTimeout: 5 * time.Second}},
		{`kubernetes /etc/kube.conf east {
			cluster east
			namespaces shop db
			labels app in (a, b),tier!=test
			startup_timeout 30s
			qps 50.5
			burst 100
			auto_allocate
			mesh_wide
			client_cluster
			network net-1
		}`, Source{Kubeconfig: "/etc/kube.conf", Context: "east", Cluster: "east", Namespaces: []string{"shop", "db"},
			Labels: "app in (a, b),tier!=test", StartupTimeout: 30 * time.Second, QPS: 50.5, Burst: 100, AutoAllocate: true, MeshWide: true,
			ClientCluster: true, Network: "net-1"}},
		{"kubernetes {\n}", Source{Cluster: "Kubernetes", StartupTimeout: 5 * time.Second}},
	}
	for _, tt := range tests {
		got, err := parseString(t, tt.input)
		if err != nil {
			t.Errorf("%q: %v", tt.input, err)
			continue
		}
		if got.Kubeconfig != tt.want.Kubeconfig || got.Context != tt.want.Context || got.Cluster != tt.want.Cluster ||
			!slices.Equal(got.Namespaces, tt.want.Namespaces) || got.Labels != tt.want.Labels ||
			got.StartupTimeout != tt.want.StartupTimeout || got.QPS != tt.want.QPS || got.Burst != tt.want.Burst ||
			got.AutoAllocate != tt.want.AutoAllocate || got.MeshWide != tt.want.MeshWide ||
			got.ClientCluster != tt.want.ClientCluster || got.Network != tt.want.Network {
			t.Errorf("%q:\ngot  %+v\nwant %+v", tt.input, *got, tt.want)
		}
		if want := "kubernetes:" + tt.want.Cluster; got.Name() != want {
			t.Errorf("Name() = %q, want %q", got.Name(), want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ input, want string }{
		{"kubernetes a b c", "want 'kubernetes [KUBECONFIG [CONTEXT]]'"},
		{"kubernetes {\n cluster\n}", "cluster: want one name"},
		{"kubernetes {\n cluster bad_name\n}", "cluster: want one name"},
		{"kubernetes {\n namespaces\n}", "at least one namespace"},
		{"kubernetes {\n namespaces Bad.NS\n}", "invalid namespace"},
		{"kubernetes {\n labels a in (b\n}", "labels: invalid selector"},
		{"kubernetes {\n startup_timeout soon\n}", "startup_timeout"},
		{"kubernetes {\n startup_timeout -1s\n}", "negative duration"},
		{"kubernetes {\n qps 0\n}", "qps: want a positive number"},
		{"kubernetes {\n burst x\n}", "burst"},
		{"kubernetes {\n burst 1 2\n}", "burst: want one value"},
		{"kubernetes {\n auto_allocate yes\n}", "takes no arguments"},
		{"kubernetes {\n client_cluster east\n}", "takes no arguments"},
		{"kubernetes {\n network\n}", "network: want one name"},
		{"kubernetes {\n network a.b\n}", "network: want one name"},
		{"kubernetes {\n pods verified\n}", `unknown property "pods"`},
	}
	for _, tt := range tests {
		_, err := parseString(t, tt.input)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: error %v, want one containing %q", tt.input, err, tt.want)
		}
	}
}
