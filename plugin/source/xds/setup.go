package xds

import (
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/coredns/caddy"

	"github.com/meshdns/meshdns/plugin/source"
)

// DefaultCluster is Istio's default cluster ID.
const DefaultCluster = "Kubernetes"

// singleValue lists the options that take exactly one value.
var singleValue = map[string]bool{"node_ip": true, "workload": true, "namespace": true, "node_id": true,
	"cluster_id": true, "token": true, "server_name": true, "snapshot": true,
	"istio_vm_files": true, "cert_dir": true, "cert_lifetime": true, "trust_domain": true}

// Parse reads an xds source from the Corefile, the cursor being on "xds";
// relative file names are taken from root:
//
//	xds [ADDRESS] {
//	    istio_vm_files DIR
//	    cert_dir DIR
//	    cert_lifetime DURATION
//	    trust_domain DOMAIN
//	    node_ip IP
//	    workload NAME
//	    namespace NAMESPACE
//	    node_id ID
//	    cluster_id ID
//	    metadata KEY VALUE
//	    tls CA [CERT KEY]
//	    token FILE
//	    server_name NAME
//	    insecure
//	    snapshot FILE
//	}
//
// The meshdns block completes it with Finish.
func Parse(c *caddy.Controller, root string) (*Source, error) {
	s := &Source{ClusterID: DefaultCluster, retry: defaultBackoff}
	args := c.RemainingArgs()
	if len(args) > 1 {
		return nil, c.Errf("xds: want 'xds [ADDRESS]', got %q", args)
	}
	if len(args) == 1 {
		if _, port, err := net.SplitHostPort(args[0]); err != nil || port == "" {
			return nil, c.Errf("xds: ADDRESS: want HOST:PORT, got %q", args[0])
		}
		s.Address = args[0]
	}
	clusterSet := false
	path := func(p string) string {
		if !filepath.IsAbs(p) && root != "" {
			return filepath.Join(root, p)
		}
		return p
	}
	for c.NextBlock() {
		opt, args := c.Val(), c.RemainingArgs()
		if singleValue[opt] && len(args) != 1 {
			return nil, c.Errf("xds: %s: want one value, got %q", opt, args)
		}
		switch opt {
		case "node_ip":
			if a, err := netip.ParseAddr(args[0]); err != nil || a.Zone() != "" {
				return nil, c.Errf("xds: node_ip: invalid address %q", args[0])
			}
			s.NodeIP = args[0]
		case "workload":
			if !isDNS1123Subdomain(args[0]) {
				return nil, c.Errf("xds: workload: invalid name %q", args[0])
			}
			s.Workload = args[0]
		case "namespace":
			if !isDNS1123Label(args[0]) {
				return nil, c.Errf("xds: namespace: invalid namespace %q", args[0])
			}
			s.Namespace = args[0]
		case "node_id":
			if len(strings.Split(args[0], "~")) != 4 {
				return nil, c.Errf("xds: node_id: want TYPE~IP~NAME.NAMESPACE~DOMAIN, got %q", args[0])
			}
			s.NodeID = args[0]
		case "cluster_id":
			if args[0] == "" {
				return nil, c.Err("xds: cluster_id: empty")
			}
			s.ClusterID, clusterSet = args[0], true
		case "metadata":
			if len(args) != 2 || args[0] == "" {
				return nil, c.Errf("xds: metadata: want KEY VALUE, got %q", args)
			}
			if _, dup := s.Metadata[args[0]]; dup {
				return nil, c.Errf("xds: metadata: %s given twice", args[0])
			}
			if s.Metadata == nil {
				s.Metadata = map[string]string{}
			}
			s.Metadata[args[0]] = args[1]
		case "tls":
			if len(args) != 1 && len(args) != 3 {
				return nil, c.Errf("xds: tls: want CA [CERT KEY], got %q", args)
			}
			s.CAFile = path(args[0])
			if len(args) == 3 {
				s.CertFile, s.KeyFile = path(args[1]), path(args[2])
			}
			// Fail at startup on unreadable files; they are re-read per connection.
			if _, err := s.tlsConfig(); err != nil {
				return nil, c.Errf("xds: tls: %v", err)
			}
		case "token":
			s.TokenFile = path(args[0])
		case "server_name":
			s.ServerName = args[0]
		case "insecure":
			if len(args) != 0 {
				return nil, c.Err("xds: insecure takes no arguments")
			}
			s.Insecure = true
		case "snapshot":
			s.Snapshot = path(args[0])
		case "istio_vm_files":
			s.VMFiles = path(args[0])
		case "cert_dir":
			s.CertDir = path(args[0])
		case "cert_lifetime":
			d, err := time.ParseDuration(args[0])
			if err != nil || d < time.Second {
				return nil, c.Errf("xds: cert_lifetime: want a duration of a second or more, got %q", args[0])
			}
			s.CertLifetime = d
		case "trust_domain":
			if !isDNS1123Subdomain(args[0]) {
				return nil, c.Errf("xds: trust_domain: invalid domain %q", args[0])
			}
			s.TrustDomain = args[0]
		default:
			return nil, c.Errf("xds: unknown property %q", opt)
		}
	}
	if s.VMFiles != "" {
		if err := s.useVMFiles(clusterSet); err != nil {
			return nil, c.Errf("xds: istio_vm_files: %v", err)
		}
	}
	switch {
	case s.Address == "":
		return nil, c.Err("xds: want 'xds ADDRESS', or 'istio_vm_files DIR' whose mesh.yaml gives it")
	case s.Insecure && s.VMFiles != "":
		return nil, c.Err("xds: 'insecure' and 'istio_vm_files' exclude each other")
	case s.Insecure && s.CAFile != "":
		return nil, c.Err("xds: 'insecure' and 'tls' exclude each other")
	case !s.Insecure && s.CAFile == "":
		return nil, c.Err("xds: want 'tls CA [CERT KEY]', or 'insecure' for plaintext")
	case s.Insecure && (s.TokenFile != "" || s.ServerName != ""):
		// A bearer token is never sent in the clear.
		return nil, c.Err("xds: 'token' and 'server_name' need 'tls'")
	case s.Insecure && (s.CertDir != "" || s.CertLifetime != 0):
		return nil, c.Err("xds: 'cert_dir' and 'cert_lifetime' need 'tls'")
	}
	return s, nil
}

// useVMFiles fills what the Corefile left unset from the onboarding files.
// An explicit ADDRESS is dialled as written; the server name stays the
// discovery address's host, which is the name istiod's certificate has.
func (s *Source) useVMFiles(clusterSet bool) error {
	v, err := readVMFiles(s.VMFiles)
	if err != nil {
		return err
	}
	if s.Address == "" {
		s.Address, s.dial = v.address, v.dial
	}
	if s.ServerName == "" {
		s.ServerName, _, _ = net.SplitHostPort(v.address)
	}
	if s.CAFile == "" {
		s.CAFile = v.rootCert
	}
	if s.TokenFile == "" {
		s.TokenFile = v.token
	}
	if !clusterSet && v.clusterID != "" {
		s.ClusterID = v.clusterID
	}
	if s.Namespace == "" {
		s.Namespace = v.namespace
	}
	if s.TrustDomain == "" {
		s.TrustDomain = v.trustDomain
	}
	if v.serviceAccount != "" {
		v.meta["SERVICE_ACCOUNT"] = v.serviceAccount
	}
	for k, val := range v.meta {
		if _, set := s.Metadata[k]; !set {
			if s.Metadata == nil {
				s.Metadata = map[string]string{}
			}
			s.Metadata[k] = val
		}
	}
	return nil
}

func init() {
	source.Register("xds", func(c *caddy.Controller, root string) (source.Source, error) {
		s, err := Parse(c, root)
		if err != nil {
			return nil, err
		}
		return s, nil
	})
}

// ClientNamespace is the namespace of the node, from the xds block or the
// onboarding files; "" if neither gives one.
func (s *Source) ClientNamespace() string { return s.Namespace }

// isDNS1123Label reports whether s is a Kubernetes object name of the
// label kind (a namespace): lower-case letters, digits and '-', at most 63,
// starting and ending with a letter or digit.
func isDNS1123Label(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// isDNS1123Subdomain reports whether s is a Kubernetes object name of the
// subdomain kind (a pod, a trust domain): DNS-1123 labels joined by dots, at
// most 253 in all.
func isDNS1123Subdomain(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for l := range strings.SplitSeq(s, ".") {
		if !isDNS1123Label(l) {
			return false
		}
	}
	return true
}
