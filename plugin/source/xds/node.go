package xds

import (
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// node is what istiod knows the client by. istiod builds a NameTable only for
// a node with DNS_CAPTURE, and allocates ServiceEntry addresses in it only
// with DNS_AUTO_ALLOCATE.
func (s *Source) node() (*corev3.Node, error) {
	meta := map[string]any{
		"DNS_CAPTURE":       "true",
		"DNS_AUTO_ALLOCATE": "true",
		"CLUSTER_ID":        s.ClusterID,
	}
	if s.Namespace != "" {
		meta["NAMESPACE"] = s.Namespace
	}
	if len(s.NodeIPs) > 0 {
		// istiod filters addresses by the families of the node's IPs.
		meta["INSTANCE_IPS"] = strings.Join(s.NodeIPs, ",")
	} else if s.NodeIP != "" {
		meta["INSTANCE_IPS"] = s.NodeIP
	}
	for k, v := range s.Metadata {
		meta[k] = v
	}
	st, err := structpb.NewStruct(meta)
	if err != nil {
		return nil, err
	}
	return &corev3.Node{Id: s.NodeID, Metadata: st}, nil
}
