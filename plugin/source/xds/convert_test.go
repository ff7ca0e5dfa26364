package xds

import (
	"maps"
	"slices"
	"testing"

	"github.com/meshdns/meshdns/plugin/source/xds/ads"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshdns/meshdns/plugin/source/xds/nds"
)

// What Istio's own generated code writes decodes here: same field numbers.
func TestWireCompatible(t *testing.T) {
	// Encoded by hand from the field numbers of Istio's nds.proto.
	bytesField := func(b []byte, num protowire.Number, v []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(b, num, protowire.BytesType), v)
	}
	var info []byte
	for i, v := range []string{"10.96.0.1", "Kubernetes", "a", "ns", "x"} {
		info = bytesField(info, protowire.Number(i+1), []byte(v))
	}
	key := "a.ns.svc.cluster.local"
	entry := bytesField(bytesField(nil, 1, []byte(key)), 2, info)
	wire := bytesField(nil, 1, entry)

	var nt nds.NameTable
	if err := proto.Unmarshal(wire, &nt); err != nil {
		t.Fatal(err)
	}
	got := nt.GetTable()[key]
	if !slices.Equal(got.GetIps(), []string{"10.96.0.1"}) || got.GetRegistry() != "Kubernetes" || got.GetShortname() != "a" ||
		got.GetNamespace() != "ns" || !slices.Equal(got.GetAltHosts(), []string{"x"}) {
		t.Errorf("decoded %v", got)
	}
	if a, _ := anypb.New(&nt); a.GetTypeUrl() != TypeURL {
		t.Errorf("type URL %q", a.GetTypeUrl())
	}
}

func TestDecode(t *testing.T) {
	part := func(tbl map[string]*nds.NameTable_NameInfo) *anypb.Any {
		a, _ := anypb.New(&nds.NameTable{Table: tbl})
		return a
	}
	tests := []struct {
		name  string
		res   []*anypb.Any
		hosts []string // nil: no table
	}{
		{"none", nil, nil},
		{"one", []*anypb.Any{part(map[string]*nds.NameTable_NameInfo{"a.example": ips("240.240.0.1")})}, []string{"a.example"}},
		{"empty table", []*anypb.Any{part(nil)}, []string{}},
		{"parts merged", []*anypb.Any{part(nil), part(map[string]*nds.NameTable_NameInfo{"a.example": ips("240.240.0.1")}),
			part(map[string]*nds.NameTable_NameInfo{"b.example": ips("240.240.0.2")})}, []string{"a.example", "b.example"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nt, err := decode(&ads.DiscoveryResponse{TypeUrl: TypeURL, Resources: tt.res})
			if err != nil {
				t.Fatal(err)
			}
			if tt.hosts == nil {
				if nt != nil {
					t.Errorf("table %v, want none", nt)
				}
				return
			}
			if got := slices.Sorted(maps.Keys(nt.GetTable())); !slices.Equal(got, tt.hosts) {
				t.Errorf("hosts %q, want %q", got, tt.hosts)
			}
		})
	}
}
