package harness

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// NameTableType is the xDS type URL of Istio's NDS (Name Discovery Service).
const NameTableType = "type.googleapis.com/istio.networking.nds.v1.NameTable"

// NameInfo is istio.networking.nds.v1.NameTable.NameInfo.
type NameInfo struct {
	IPs       []string
	Registry  string
	Shortname string
	Namespace string
}

// NameTable is a decoded NDS NameTable: host (no trailing dot) to its data.
type NameTable map[string]NameInfo

// String lists the table sorted by host, one host a line.
func (nt NameTable) String() string {
	hosts := make([]string, 0, len(nt))
	for h := range nt {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	var b strings.Builder
	for _, h := range hosts {
		fmt.Fprintf(&b, "%s: %+v\n", h, nt[h])
	}
	return b.String()
}

// SidecarNode is the xDS node meshdns's xds source sends for node_ip ip,
// workload name and namespace ns in cluster.local (docs/xds.md, Node
// identity), with extra metadata added or overriding the defaults. A raw NDS
// client using it gets the table that source gets.
func SidecarNode(ip, name, ns string, extra map[string]string) *core.Node {
	md := map[string]any{
		"DNS_CAPTURE":       "true",
		"DNS_AUTO_ALLOCATE": "true",
		"CLUSTER_ID":        "Kubernetes",
		"NAMESPACE":         ns,
		"INSTANCE_IPS":      ip,
	}
	for k, v := range extra {
		md[k] = v
	}
	meta, err := structpb.NewStruct(md)
	if err != nil {
		panic(err) // only strings
	}
	return &core.Node{
		Id:       fmt.Sprintf("sidecar~%s~%s.%s~%s.svc.cluster.local", ip, name, ns, ns),
		Metadata: meta,
	}
}

// FetchNameTable subscribes to NDS on istiod's plaintext ADS address as node,
// ACKs every push, and returns the first table for which done returns true
// (done nil: the first table). On error, or when ctx ends, it returns the
// last table received with the error.
func FetchNameTable(ctx context.Context, addr string, node *core.Node, done func(NameTable) bool) (NameTable, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<30)))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return WatchNameTable(ctx, conn, node, done)
}

// WatchNameTable is FetchNameTable over a connection the caller made (with
// TLS, say, and a token in ctx).
func WatchNameTable(ctx context.Context, conn *grpc.ClientConn, node *core.Node, done func(NameTable) bool) (NameTable, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return nil, err
	}
	req := &discovery.DiscoveryRequest{Node: node, TypeUrl: NameTableType}
	var last NameTable
	for {
		if err := stream.Send(req); err != nil {
			return last, err
		}
		resp, err := stream.Recv()
		if err != nil {
			return last, err
		}
		if resp.GetTypeUrl() != NameTableType {
			return last, fmt.Errorf("response of type %q, want %q", resp.GetTypeUrl(), NameTableType)
		}
		if len(resp.GetResources()) != 1 {
			return last, fmt.Errorf("NDS response with %d resources, want 1", len(resp.GetResources()))
		}
		if last, err = UnpackNameTable(resp.GetResources()[0]); err != nil {
			return nil, err
		}
		if done == nil || done(last) {
			return last, nil
		}
		// ACK, and wait for the next push.
		req = &discovery.DiscoveryRequest{TypeUrl: NameTableType, VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}
	}
}

// UnpackNameTable decodes an NDS resource.
func UnpackNameTable(a *anypb.Any) (NameTable, error) {
	if a.GetTypeUrl() != NameTableType {
		return nil, fmt.Errorf("resource of type %q, want %q", a.GetTypeUrl(), NameTableType)
	}
	table, err := DecodeNameTable(a.GetValue())
	if err != nil {
		return nil, fmt.Errorf("decode NameTable: %w", err)
	}
	return table, nil
}

// WaitNameTable is FetchNameTable with a deadline that fails the test, with
// the last table in the message.
func WaitNameTable(t TB, addr string, node *core.Node, timeout time.Duration, done func(NameTable) bool) NameTable {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	table, err := FetchNameTable(ctx, addr, node, done)
	if err != nil {
		t.Fatalf("harness: NDS from %s for %s: %v; last table (%d hosts):\n%s", addr, node.GetId(), err, len(table), table)
	}
	return table
}

// DecodeNameTable decodes the wire form of
//
//	message NameTable { map<string, NameInfo> table = 1; }
//	message NameInfo { repeated string ips = 1; string registry = 2; string shortname = 3; string namespace = 4; ... }
//
// without depending on istio.io/istio for the generated type; unknown fields
// are skipped.
func DecodeNameTable(b []byte) (NameTable, error) {
	table := NameTable{}
	err := ndsFields(b, func(num protowire.Number, entry []byte) error {
		if num != 1 {
			return nil
		}
		var host string
		var info NameInfo
		err := ndsFields(entry, func(num protowire.Number, v []byte) error {
			switch num {
			case 1:
				host = string(v)
			case 2:
				return ndsFields(v, func(num protowire.Number, v []byte) error {
					switch num {
					case 1:
						info.IPs = append(info.IPs, string(v))
					case 2:
						info.Registry = string(v)
					case 3:
						info.Shortname = string(v)
					case 4:
						info.Namespace = string(v)
					}
					return nil
				})
			}
			return nil
		})
		if err != nil {
			return err
		}
		table[host] = info
		return nil
	})
	return table, err
}

// ndsFields calls fn for every length-delimited field of a message, in
// order, and skips the others.
func ndsFields(b []byte, fn func(protowire.Number, []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if err := fn(num, v); err != nil {
			return err
		}
	}
	return nil
}
