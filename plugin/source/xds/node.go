package xds

import (
	"strings"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshdns/meshdns/plugin/source/xds/ads"
)

// node is what istiod knows the client by. istiod builds a NameTable only for
// a node with DNS_CAPTURE, and allocates ServiceEntry addresses in it only
// with DNS_AUTO_ALLOCATE.
func (s *Source) node() (*ads.Node, error) {
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
	return &ads.Node{Id: s.NodeID, Metadata: st}, nil
}
