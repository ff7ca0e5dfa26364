package harness

import (
	"slices"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

func TestDecodeNameTable(t *testing.T) {
	str := func(num protowire.Number, s string) []byte {
		return protowire.AppendString(protowire.AppendTag(nil, num, protowire.BytesType), s)
	}
	msg := func(num protowire.Number, m ...[]byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), slices.Concat(m...))
	}
	unknown := protowire.AppendVarint(protowire.AppendTag(nil, 9, protowire.VarintType), 300)
	wire := slices.Concat(
		msg(1, str(1, "a.example.com"), msg(2, str(1, "1.2.3.4"), str(1, "::1"), unknown, str(2, "External"))),
		msg(1, str(1, "b.ns.svc.cluster.local"), msg(2, str(1, "10.96.0.1"), str(2, "Kubernetes"), str(3, "b"), str(4, "ns"))),
	)
	got, err := DecodeNameTable(wire)
	if err != nil {
		t.Fatal(err)
	}
	want := NameTable{
		"a.example.com":          {IPs: []string{"1.2.3.4", "::1"}, Registry: "External"},
		"b.ns.svc.cluster.local": {IPs: []string{"10.96.0.1"}, Registry: "Kubernetes", Shortname: "b", Namespace: "ns"},
	}
	if got.String() != want.String() {
		t.Errorf("decoded:\n%s\nwant:\n%s", got, want)
	}
	if _, err := DecodeNameTable(wire[:len(wire)-1]); err == nil {
		t.Error("a truncated NameTable decodes without error")
	}
}

func TestSidecarNode(t *testing.T) {
	n := SidecarNode("10.0.0.5", "vm1", "vm-ns", map[string]string{"DNS_AUTO_ALLOCATE": "false", "ISTIO_VERSION": "1.31.1"})
	if want := "sidecar~10.0.0.5~vm1.vm-ns~vm-ns.svc.cluster.local"; n.GetId() != want {
		t.Errorf("id %q, want %q", n.GetId(), want)
	}
	md := n.GetMetadata().AsMap()
	for k, v := range map[string]string{"DNS_CAPTURE": "true", "DNS_AUTO_ALLOCATE": "false", "CLUSTER_ID": "Kubernetes",
		"NAMESPACE": "vm-ns", "INSTANCE_IPS": "10.0.0.5", "ISTIO_VERSION": "1.31.1"} {
		if md[k] != v {
			t.Errorf("metadata %s = %v, want %q", k, md[k], v)
		}
	}
}
