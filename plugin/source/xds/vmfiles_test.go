package xds

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coredns/caddy"
)

// vmDir writes onboarding files as istioctl x workload entry configure
// does; files maps a name to its content, "" leaving the file out.
func vmDir(t *testing.T, p pki, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	all := map[string]string{
		clusterEnvFile: `CANONICAL_REVISION='latest'
CANONICAL_SERVICE='vm-app'
ISTIO_INBOUND_PORTS='*'
ISTIO_META_AUTO_REGISTER_GROUP='vm-app'
ISTIO_META_CLUSTER_ID='east'
ISTIO_META_DNS_CAPTURE='true'
ISTIO_META_MESH_ID='mesh1'
ISTIO_META_NETWORK='vm-net'
ISTIO_META_WORKLOAD_NAME='vm-app'
ISTIO_NAMESPACE='vm-ns'
POD_NAMESPACE='vm-ns'
SERVICE_ACCOUNT='vm-sa'
TRUST_DOMAIN='corp.example'
`,
		meshFile: `defaultConfig:
  discoveryAddress: istiod.istio-system.svc:15012
  proxyMetadata:
    CANONICAL_SERVICE: vm-app
    TRUST_DOMAIN: corp.example
`,
		hostsFile:     "192.0.2.7 istiod.istio-system.svc\n",
		tokenFileName: "token",
	}
	for k, v := range files {
		all[k] = v
	}
	for name, content := range all {
		if content == "" {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	root, err := os.ReadFile(p.ca)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, rootCertFile), root, 0o644)
	return dir
}

// The onboarding files give the xds block everything: the address to
// dial (the discovery address as the hosts file maps it), the server name,
// the root, the token, the node's cluster, namespace and metadata.
func TestVMFiles(t *testing.T) {
	p := newPKI(t, t.TempDir())
	dir := vmDir(t, p, nil)
	s, err := parseString(t, "xds {\n istio_vm_files "+dir+"\n cert_dir /var/lib/meshdns/certs\n}", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Finish("cluster.local", ""); err != nil {
		t.Fatal(err)
	}
	node, err := s.node()
	if err != nil {
		t.Fatal(err)
	}
	meta := node.Metadata.AsMap()
	for _, c := range []struct{ what, got, want string }{
		{"address", s.Address, "istiod.istio-system.svc:15012"},
		{"dial", s.dialAddress(), "192.0.2.7:15012"},
		{"server name", s.ServerName, "istiod.istio-system.svc"},
		{"root", s.CAFile, filepath.Join(dir, rootCertFile)},
		{"token", s.TokenFile, filepath.Join(dir, tokenFileName)},
		{"cluster", s.ClusterID, "east"},
		{"namespace", s.Namespace, "vm-ns"},
		{"trust domain", s.trustDomain(), "corp.example"},
		{"node id", s.NodeID, "sidecar~" + s.NodeIP + "~" + hostname(t) + ".vm-ns~vm-ns.svc.cluster.local"},
		{"NETWORK", meta["NETWORK"].(string), "vm-net"},
		{"WORKLOAD_NAME", meta["WORKLOAD_NAME"].(string), "vm-app"},
		{"SERVICE_ACCOUNT", meta["SERVICE_ACCOUNT"].(string), "vm-sa"},
		{"CLUSTER_ID", meta["CLUSTER_ID"].(string), "east"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
		}
	}
	// The sidecar registers the VM as a workload; its resolver must not.
	if _, ok := meta["AUTO_REGISTER_GROUP"]; ok {
		t.Error("AUTO_REGISTER_GROUP sent")
	}
}

// What the Corefile says wins over the files; an explicit address is
// dialled as written, with the discovery address's host as server name.
func TestVMFilesOverridden(t *testing.T) {
	p := newPKI(t, t.TempDir())
	dir := vmDir(t, p, map[string]string{hostsFile: ""})
	s, err := parseString(t, "xds 10.0.0.9:15012 {\n istio_vm_files "+dir+"\n cluster_id west\n namespace other\n metadata NETWORK n2\n}", "")
	if err != nil {
		t.Fatal(err)
	}
	if s.dialAddress() != "10.0.0.9:15012" || s.ServerName != "istiod.istio-system.svc" || s.ClusterID != "west" ||
		s.Namespace != "other" || s.Metadata["NETWORK"] != "n2" {
		t.Errorf("dial %q, server name %q, cluster %q, namespace %q, network %q", s.dialAddress(), s.ServerName, s.ClusterID, s.Namespace, s.Metadata["NETWORK"])
	}
	// Without a hosts file the discovery address is dialled by name.
	s, err = parseString(t, "xds {\n istio_vm_files "+dir+"\n}", "")
	if err != nil || s.dialAddress() != "istiod.istio-system.svc:15012" {
		t.Fatalf("%v, dial %q", err, s.dialAddress())
	}
}

// A file that is missing or does not parse is an error naming it.
func TestVMFilesErrors(t *testing.T) {
	p := newPKI(t, t.TempDir())
	tests := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"no cluster.env", map[string]string{clusterEnvFile: ""}, clusterEnvFile + ": no such file"},
		{"cluster.env not assignments", map[string]string{clusterEnvFile: "POD_NAMESPACE='vm-ns'\nthis is not shell\n"}, clusterEnvFile + ":2: want KEY=VALUE"},
		{"cluster.env open quote", map[string]string{clusterEnvFile: "POD_NAMESPACE='vm-ns\n"}, clusterEnvFile + ":1: unterminated quote"},
		{"no mesh.yaml", map[string]string{meshFile: ""}, meshFile + ": no such file"},
		{"mesh.yaml not YAML", map[string]string{meshFile: "defaultConfig: [\n"}, meshFile + ": "},
		{"no discovery address", map[string]string{meshFile: "defaultConfig:\n  proxyMetadata: {}\n"}, meshFile + `: defaultConfig.discoveryAddress: want HOST:PORT, got ""`},
		{"discovery address without port", map[string]string{meshFile: "defaultConfig:\n  discoveryAddress: istiod\n"}, "want HOST:PORT"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := vmDir(t, p, tc.files)
			_, err := parseString(t, "xds {\n istio_vm_files "+dir+"\n}", "")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	dir := vmDir(t, p, nil)
	os.Remove(filepath.Join(dir, rootCertFile))
	if _, err := parseString(t, "xds {\n istio_vm_files "+dir+"\n}", ""); err == nil || !strings.Contains(err.Error(), rootCertFile) {
		t.Fatalf("no root: %v", err)
	}
	if _, err := parseString(t, "xds {\n istio_vm_files "+dir+"\n insecure\n}", ""); err == nil {
		t.Fatal("insecure with onboarding files accepted")
	}
}

func TestParseCertOptions(t *testing.T) {
	p := newPKI(t, t.TempDir())
	for _, tc := range []struct{ input, want string }{
		{"xds a:1 {\n tls ca.pem\n cert_lifetime soon\n}", "cert_lifetime: want a duration"},
		{"xds a:1 {\n tls ca.pem\n cert_lifetime 100ms\n}", "cert_lifetime: want a duration"},
		{"xds a:1 {\n insecure\n cert_dir /d\n}", "'cert_dir' and 'cert_lifetime' need 'tls'"},
		{"xds a:1 {\n tls ca.pem\n trust_domain bad_domain\n}", "trust_domain: invalid domain"},
		{"xds {\n tls ca.pem\n}", "want 'xds ADDRESS', or 'istio_vm_files DIR'"},
	} {
		c := caddy.NewTestController("dns", strings.ReplaceAll(tc.input, "ca.pem", p.ca))
		c.Next()
		if _, err := Parse(c, ""); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one containing %q", tc.input, err, tc.want)
		}
	}
}
