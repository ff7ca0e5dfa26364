// Package xds is the source that gets the mesh's names from istiod, as Istio's
// agent does: the NDS NameTable over an ADS stream (state of the world). Each
// push is the whole table; the table diffs it against what this source applied
// last, so a push costs only its changes.
package xds

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	clog "github.com/coredns/coredns/plugin/pkg/log"

	"github.com/meshdns/meshdns/plugin/source"
)

var log = clog.NewWithPlugin("meshdns")

// Source is one xDS server.
type Source struct {
	// Address is istiod's HOST:PORT.
	Address string

	// The node identity: NodeID, or NodeIP, Workload and Namespace from which
	// Finish builds it.
	NodeIP, Workload, Namespace, NodeID string
	// ClusterID is the node's cluster (CLUSTER_ID metadata).
	ClusterID string
	// Metadata is added to the node metadata, overriding the defaults.
	Metadata map[string]string

	// CAFile verifies istiod; CertFile and KeyFile are an optional client
	// certificate. Insecure is plaintext, and excludes them.
	CAFile, CertFile, KeyFile string
	// TokenFile holds a JWT sent as "authorization: Bearer"; read per connection.
	TokenFile string
	// ServerName overrides the name istiod's certificate is checked for.
	ServerName string
	Insecure   bool

	// Snapshot is where the last applied table is kept, in the file source's
	// format; it is served at start until istiod's first push.
	Snapshot string

	// VMFiles is the directory of a VM's onboarding files, which give what
	// the options above leave unset (readVMFiles).
	VMFiles string
	// CertDir keeps the workload certificate istiod's CA issues, and its
	// key, across restarts; CertLifetime is the lifetime asked for (0:
	// istiod's default); TrustDomain is the SPIFFE trust domain asked for
	// (default cluster.local).
	CertDir      string
	CertLifetime time.Duration
	TrustDomain  string
	// NodeIPs are the node's addresses (INSTANCE_IPS); NodeIP, the first,
	// is in the node id.
	NodeIPs []string

	// Domain comes from the meshdns block.
	Domain string

	retry backoff
	// dial is where to connect when it is not Address: the discovery
	// address's host as the onboarding files' hosts file maps it.
	dial string
	// id is the workload certificate, when the stream authenticates with one.
	id *identity
}

// dialAddress is where istiod is reached.
func (s *Source) dialAddress() string {
	if s.dial != "" {
		return s.dial
	}
	return s.Address
}

func (s *Source) trustDomain() string {
	if s.TrustDomain != "" {
		return s.TrustDomain
	}
	return "cluster.local"
}

// Name implements source.Source.
func (s *Source) Name() string { return "xds:" + s.Address }

// Finish completes the source with the meshdns block's domain and namespace
// (used when the xds block sets none) and builds the node id.
func (s *Source) Finish(domain, namespace string) error {
	s.Domain = domain
	if s.Namespace == "" {
		s.Namespace = namespace
	}
	if s.NodeID != "" {
		if s.Namespace == "" {
			s.Namespace = nodeNamespace(s.NodeID)
		}
		return nil
	}
	if s.Namespace == "" {
		return errors.New("no node identity: want node_id, or a namespace (in the xds or meshdns block, or the onboarding files)")
	}
	// Istio's agent's defaults: the host's addresses and its hostname.
	if s.NodeIP == "" {
		ips, err := hostAddrs()
		if err != nil || len(ips) == 0 {
			return fmt.Errorf("node_ip not set and the host's addresses unknown (%v)", err)
		}
		s.NodeIPs = ips
		s.NodeIP = ips[0]
	}
	if len(s.NodeIPs) == 0 {
		s.NodeIPs = []string{s.NodeIP}
	}
	if s.Workload == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("workload not set and the hostname unknown: %w", err)
		}
		s.Workload = strings.ToLower(h)
	}
	// Istio's sidecar form; istiod reads the namespace from it.
	ip, err := netip.ParseAddr(s.NodeIP)
	if err != nil {
		return fmt.Errorf("node_ip: %w", err)
	}
	s.NodeID = fmt.Sprintf("sidecar~%s~%s.%s~%s.svc.%s", ip, s.Workload, s.Namespace, s.Namespace, domain)
	return nil
}

// hostAddrs are the host's addresses as Istio's agent takes them for its
// INSTANCE_IPS: every interface's, but loopback and link-local ones, IPv4
// first.
func hostAddrs() ([]string, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	var v4, v6 []string
	for _, a := range addrs {
		p, err := netip.ParsePrefix(a.String())
		if err != nil {
			continue
		}
		ip := p.Addr().Unmap()
		switch {
		case ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsUnspecified():
		case ip.Is4():
			v4 = append(v4, ip.String())
		default:
			v6 = append(v6, ip.String())
		}
	}
	return append(v4, v6...), nil
}

// nodeNamespace is the NAMESPACE of a node id TYPE~IP~NAME.NAMESPACE~DOMAIN.
func nodeNamespace(id string) string {
	parts := strings.Split(id, "~")
	if len(parts) != 4 {
		return ""
	}
	_, ns, _ := strings.Cut(parts[2], ".")
	return ns
}

// Start serves the snapshot, if there is a good one, and connects in the
// background: CoreDNS starts even when istiod is unreachable, and meshdns is
// ready once the snapshot or the first push is applied.
func (s *Source) Start(ctx context.Context, sink source.Sink) error {
	if s.retry == (backoff{}) {
		s.retry = defaultBackoff
	}
	node, err := s.node()
	if err != nil {
		return err
	}
	if err := s.startIdentity(ctx); err != nil {
		return err
	}
	sink.Up(false)
	c := &client{src: s, sink: sink, node: node, retry: s.retry}
	c.loadSnapshot()
	go c.run(ctx)
	return nil
}

// startIdentity sets up the workload certificate when the stream is to
// authenticate with one: over TLS with a token, or with certificates kept in
// cert_dir, and no client certificate of the operator's. Without a usable
// certificate, the token must be able to get one: else CoreDNS does not
// start, naming the file.
func (s *Source) startIdentity(ctx context.Context) error {
	if s.Insecure || s.CertFile != "" || (s.TokenFile == "" && s.CertDir == "") {
		return nil
	}
	id := &identity{src: s, done: make(chan struct{}), wake: make(chan struct{}, 1)}
	if err := id.load(); err != nil {
		log.Warningf("source %s: not using the kept certificate: %v", s.Name(), err)
	}
	if id.certificate() == nil {
		if s.TokenFile == "" {
			return fmt.Errorf("no certificate in %s, and no token to get one", s.CertDir)
		}
		if _, _, err := tokenAccount(s.TokenFile); err != nil {
			return fmt.Errorf("no usable certificate, and the token cannot get one: %w", err)
		}
	}
	s.id = id
	go s.id.renew(ctx)
	return nil
}

// run connects until ctx is done, backing off between attempts.
func (c *client) run(ctx context.Context) {
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			reconnects.WithLabelValues(c.src.Name()).Inc()
		}
		received, err := c.stream(ctx)
		if ctx.Err() != nil {
			return
		}
		c.sink.Up(false)
		if received {
			// The connection worked: start over from the shortest wait.
			c.retry.reset()
		}
		d := c.retry.next()
		log.Warningf("source %s: %v; reconnecting in %s", c.src.Name(), err, d.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		}
	}
}
