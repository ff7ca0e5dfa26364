package xds

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v2"
)

// The files `istioctl x workload entry configure -o DIR` writes for a VM.
const (
	clusterEnvFile = "cluster.env"
	meshFile       = "mesh.yaml"
	rootCertFile   = "root-cert.pem"
	tokenFileName  = "istio-token"
	hostsFile      = "hosts"
)

// vmFiles is what a VM's onboarding files say.
type vmFiles struct {
	// address is mesh.yaml's defaultConfig.discoveryAddress, HOST:PORT.
	address string
	// dial is the address to connect to: the discovery address's host
	// mapped by the hosts file, when it maps it.
	dial                  string
	rootCert, token       string // paths
	clusterID, namespace  string
	serviceAccount        string
	trustDomain, workload string
	// meta is the node metadata Istio's agent would send from cluster.env.
	meta map[string]string
}

// readVMFiles reads dir. A file that is missing or does not parse is an
// error naming it; the token may be missing (a certificate in cert_dir
// does without it).
func readVMFiles(dir string) (*vmFiles, error) {
	v := &vmFiles{rootCert: filepath.Join(dir, rootCertFile), token: filepath.Join(dir, tokenFileName), meta: map[string]string{}}
	env, err := readClusterEnv(filepath.Join(dir, clusterEnvFile))
	if err != nil {
		return nil, err
	}
	v.clusterID = env["ISTIO_META_CLUSTER_ID"]
	v.namespace = cmpOr(env["POD_NAMESPACE"], env["ISTIO_NAMESPACE"])
	v.serviceAccount = env["SERVICE_ACCOUNT"]
	v.trustDomain = env["TRUST_DOMAIN"]
	v.workload = env["ISTIO_META_WORKLOAD_NAME"]
	for k, val := range env {
		name, ok := strings.CutPrefix(k, "ISTIO_META_")
		// The sidecar registers the VM (AUTO_REGISTER_GROUP), not its
		// resolver; the cluster id has its own field.
		if ok && name != "AUTO_REGISTER_GROUP" && name != "CLUSTER_ID" {
			v.meta[name] = val
		}
	}
	mesh, err := readMeshConfig(filepath.Join(dir, meshFile))
	if err != nil {
		return nil, err
	}
	v.address = mesh.DefaultConfig.DiscoveryAddress
	host, port, err := net.SplitHostPort(v.address)
	if err != nil || host == "" || port == "" {
		return nil, fmt.Errorf("%s: defaultConfig.discoveryAddress: want HOST:PORT, got %q", filepath.Join(dir, meshFile), v.address)
	}
	// mesh.yaml's proxyMetadata is what cluster.env holds; cluster.env wins.
	if v.trustDomain == "" {
		v.trustDomain = mesh.DefaultConfig.ProxyMetadata["TRUST_DOMAIN"]
	}
	v.dial = v.address
	if ip, err := lookupHostsFile(filepath.Join(dir, hostsFile), host); err != nil {
		return nil, err
	} else if ip.IsValid() {
		v.dial = net.JoinHostPort(ip.String(), port)
	}
	if _, err := os.Stat(v.rootCert); err != nil {
		return nil, err
	}
	return v, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// readClusterEnv reads the shell assignments of cluster.env: KEY=value,
// KEY='value' or KEY="value", one a line; blank lines and comments skipped.
func readClusterEnv(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	env := map[string]string{}
	s := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; s.Scan(); n++ {
		line := strings.TrimSpace(s.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, val, ok := strings.Cut(strings.TrimPrefix(line, "export "), "=")
		if !ok || key == "" || strings.ContainsAny(key, " \t'\"") {
			return nil, fmt.Errorf("%s:%d: want KEY=VALUE, got %q", path, n, line)
		}
		if len(val) >= 2 && (val[0] == '\'' || val[0] == '"') {
			if val[len(val)-1] != val[0] {
				return nil, fmt.Errorf("%s:%d: unterminated quote in %q", path, n, line)
			}
			val = val[1 : len(val)-1]
		} else if strings.ContainsAny(val, "'\" \t") {
			return nil, fmt.Errorf("%s:%d: want KEY=VALUE, got %q", path, n, line)
		}
		env[key] = val
	}
	return env, s.Err()
}

// meshConfig is the part of mesh.yaml meshdns reads.
type meshConfig struct {
	DefaultConfig struct {
		DiscoveryAddress string            `yaml:"discoveryAddress"`
		ProxyMetadata    map[string]string `yaml:"proxyMetadata"`
	} `yaml:"defaultConfig"`
}

func readMeshConfig(path string) (*meshConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var m meshConfig
	if err := yaml.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &m, nil
}

// lookupHostsFile finds host in a file in /etc/hosts's format; a missing
// file maps nothing.
func lookupHostsFile(path, host string) (netip.Addr, error) {
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return netip.Addr{}, nil
	}
	if err != nil {
		return netip.Addr{}, err
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		line, _, _ = strings.Cut(line, "#")
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		ip, err := netip.ParseAddr(f[0])
		if err != nil {
			continue
		}
		for _, name := range f[1:] {
			if strings.EqualFold(strings.TrimSuffix(name, "."), host) {
				return ip, nil
			}
		}
	}
	return netip.Addr{}, nil
}
