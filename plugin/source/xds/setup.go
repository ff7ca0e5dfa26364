package xds

import (
	"net"
	"net/netip"
	"path/filepath"
	"strings"

	"github.com/coredns/caddy"
	"k8s.io/apimachinery/pkg/util/validation"
)

// DefaultCluster is Istio's default cluster ID.
const DefaultCluster = "Kubernetes"

// singleValue lists the options that take exactly one value.
var singleValue = map[string]bool{"node_ip": true, "workload": true, "namespace": true, "node_id": true,
	"cluster_id": true, "token": true, "server_name": true, "snapshot": true}

// Parse reads an xds source from the Corefile, the cursor being on "xds";
// relative file names are taken from root:
//
//	xds ADDRESS {
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
	if len(args) != 1 {
		return nil, c.Errf("xds: want 'xds ADDRESS', got %q", args)
	}
	if _, port, err := net.SplitHostPort(args[0]); err != nil || port == "" {
		return nil, c.Errf("xds: ADDRESS: want HOST:PORT, got %q", args[0])
	}
	s.Address = args[0]
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
			if len(validation.IsDNS1123Subdomain(args[0])) > 0 {
				return nil, c.Errf("xds: workload: invalid name %q", args[0])
			}
			s.Workload = args[0]
		case "namespace":
			if len(validation.IsDNS1123Label(args[0])) > 0 {
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
			s.ClusterID = args[0]
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
		default:
			return nil, c.Errf("xds: unknown property %q", opt)
		}
	}
	switch {
	case s.Insecure && s.CAFile != "":
		return nil, c.Err("xds: 'insecure' and 'tls' exclude each other")
	case !s.Insecure && s.CAFile == "":
		return nil, c.Err("xds: want 'tls CA [CERT KEY]', or 'insecure' for plaintext")
	case s.Insecure && (s.TokenFile != "" || s.ServerName != ""):
		// A bearer token is never sent in the clear.
		return nil, c.Err("xds: 'token' and 'server_name' need 'tls'")
	}
	return s, nil
}
