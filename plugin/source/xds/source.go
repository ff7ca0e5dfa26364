// Package xds is the source that gets the mesh's names from istiod, as Istio's
// agent does: the NDS NameTable over an ADS stream (state of the world). Each
// push is the whole table; the table diffs it against what this source applied
// last, so a push costs only its changes.
package xds

import (
	"context"
	"fmt"
	"net/netip"
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

	// Domain comes from the meshdns block.
	Domain string

	retry backoff
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
	var missing []string
	for _, f := range []struct{ name, v string }{{"node_ip", s.NodeIP}, {"workload", s.Workload}, {"namespace", s.Namespace}} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("no node identity: want node_id, or node_ip, workload and namespace (missing %s)", strings.Join(missing, ", "))
	}
	// Istio's sidecar form; istiod reads the namespace from it.
	ip, err := netip.ParseAddr(s.NodeIP)
	if err != nil {
		return fmt.Errorf("node_ip: %w", err)
	}
	s.NodeID = fmt.Sprintf("sidecar~%s~%s.%s~%s.svc.%s", ip, s.Workload, s.Namespace, s.Namespace, domain)
	return nil
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
	sink.Up(false)
	c := &client{src: s, sink: sink, node: node, retry: s.retry}
	c.loadSnapshot()
	go c.run(ctx)
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
