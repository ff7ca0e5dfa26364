package xds

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshdns/meshdns/plugin/source/xds/nds"
	"github.com/meshdns/meshdns/plugin/table"
)

func start(t *testing.T, s *Source, sink *recSink) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := s.Start(ctx, sink); err != nil {
		t.Fatal(err)
	}
}

// The stream: the node announces itself, each push is applied as a diff and
// ACKed, a push that cannot be applied is NACKed and changes nothing.
func TestPushes(t *testing.T) {
	f := newFake()
	addr, _ := serve(t, f, "127.0.0.1:0")
	s := testSource(addr)
	sink := newSink()
	start(t, s, sink)

	first := f.next(t)
	if first.TypeUrl != TypeURL || first.VersionInfo != "" || first.ResponseNonce != "" || first.ErrorDetail != nil {
		t.Errorf("first request %v", first.DiscoveryRequest)
	}
	if want := "sidecar~10.0.0.5~vm1.vm-ns~vm-ns.svc.cluster.local"; first.Node.GetId() != want {
		t.Errorf("node id %q, want %q", first.Node.GetId(), want)
	}
	meta := first.Node.GetMetadata().AsMap()
	for k, v := range map[string]string{"DNS_CAPTURE": "true", "DNS_AUTO_ALLOCATE": "true", "NAMESPACE": "vm-ns", "CLUSTER_ID": "Kubernetes", "INSTANCE_IPS": "10.0.0.5"} {
		if meta[k] != v {
			t.Errorf("metadata %s = %v, want %q", k, meta[k], v)
		}
	}

	garbage := &discovery.DiscoveryResponse{VersionInfo: "v3", Nonce: "n3", TypeUrl: TypeURL,
		Resources: []*anypb.Any{{TypeUrl: TypeURL, Value: []byte{0xff, 0xff, 0xff}}}}
	otherMsg, _ := anypb.New(structpb.NewStringValue("x"))
	wrongAny := &discovery.DiscoveryResponse{VersionInfo: "v3", Nonce: "n4", TypeUrl: TypeURL, Resources: []*anypb.Any{otherMsg}}
	wrongType := nameTable("v3", "n5", nil)
	wrongType.TypeUrl = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	empty := &discovery.DiscoveryResponse{VersionInfo: "v5", Nonce: "n7", TypeUrl: TypeURL}

	a := "a.ns.svc.cluster.local Kubernetes 10.96.0.1"
	steps := []struct {
		name        string
		push        *discovery.DiscoveryResponse
		nack        string // substring of the NACK's message; "" for an ACK
		version     string // in the ACK or NACK
		hosts       []string
		result      *table.Result // nil: no Replace
		rejects     []string
		wantReplace bool
	}{
		{"first push", nameTable("v1", "n1", map[string]*nds.NameTable_NameInfo{
			"a.ns.svc.cluster.local": kube("a", "ns", "10.96.0.1"),
			"b.ns.svc.cluster.local": kube("b", "ns", "10.96.0.2"),
			"ext.example.com":        ips("240.240.0.1", "2001:2::1"),
		}), "", "v1", []string{a, "b.ns.svc.cluster.local Kubernetes 10.96.0.2", "ext.example.com External 240.240.0.1,2001:2::1"},
			&table.Result{Added: 3}, nil, true},
		{"change is a diff", nameTable("v2", "n2", map[string]*nds.NameTable_NameInfo{
			"a.ns.svc.cluster.local": kube("a", "ns", "10.96.0.1"),
			"b.ns.svc.cluster.local": kube("b", "ns", "10.96.0.3"),
			"c.example.com":          {Ips: []string{"240.240.0.2", "240.240.0.2"}, Registry: "External"},
		}), "", "v2", []string{a, "b.ns.svc.cluster.local Kubernetes 10.96.0.3", "c.example.com External 240.240.0.2"},
			&table.Result{Added: 1, Changed: 1, Deleted: 1, Unchanged: 1}, nil, true},
		{"undecodable", garbage, "resource 0", "v2", nil, nil, nil, false},
		{"other message in the Any", wrongAny, "mismatched message type", "v2", nil, nil, nil, false},
		{"other resource type", wrongType, `unexpected type "type.googleapis.com/envoy.config.cluster.v3.Cluster"`, "v2", nil, nil, nil, false},
		{"bad hosts skipped", nameTable("v4", "n6", map[string]*nds.NameTable_NameInfo{
			"a.ns.svc.cluster.local": kube("a", "ns", "10.96.0.1"),
			"badip.example.com":      ips("10.0.0.300"),
			"unspecified.example":    ips("0.0.0.0"),
			"reg.example.com":        {Ips: []string{"10.0.0.1"}, Registry: "Consul"},
			"x.ns.svc.cluster.local": kube("y", "ns", "10.96.0.9"),
			"bad_-.example.com.-":    ips("10.0.0.1"),
		}), "", "v4", []string{a}, &table.Result{Deleted: 2, Unchanged: 1},
			[]string{"bad_-.example.com.- invalid_host", "badip.example.com invalid_address", "reg.example.com invalid_registry",
				"unspecified.example invalid_address", "x.ns.svc.cluster.local invalid_host"}, true},
		{"empty push", empty, "", "v5", []string{a}, nil, nil, false},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			before := sink.nReplaces()
			var rejBefore int
			sink.state(func(s *recSink) { rejBefore = len(s.rejects) })
			f.send(t, st.push)
			r := f.next(t)
			if r.ResponseNonce != st.push.Nonce || r.VersionInfo != st.version || r.TypeUrl != st.push.TypeUrl || r.Node != nil {
				t.Errorf("reply nonce %q version %q type %q node %v, want %q %q %q nil", r.ResponseNonce, r.VersionInfo, r.TypeUrl, r.Node, st.push.Nonce, st.version, st.push.TypeUrl)
			}
			if st.nack == "" && r.ErrorDetail != nil {
				t.Errorf("NACK %v, want ACK", r.ErrorDetail)
			}
			if st.nack != "" && (r.ErrorDetail == nil || r.ErrorDetail.Code == 0 || !strings.Contains(r.ErrorDetail.Message, st.nack)) {
				t.Errorf("error detail %v, want a NACK containing %q", r.ErrorDetail, st.nack)
			}
			sink.state(func(s *recSink) {
				if got := len(s.replaces) - before; got != map[bool]int{true: 1}[st.wantReplace] {
					t.Fatalf("%d Replace calls", got)
				}
				if st.wantReplace {
					// The sink got the whole new state, and the table changed only what changed.
					if got := hostLines(s.replaces[len(s.replaces)-1]); !slices.Equal(got, st.hosts) {
						t.Errorf("Replace got\n%q\nwant\n%q", got, st.hosts)
					}
					if res := s.results[len(s.results)-1]; res.Added != st.result.Added || res.Changed != st.result.Changed ||
						res.Deleted != st.result.Deleted || res.Unchanged != st.result.Unchanged || len(res.Rejected) != 0 {
						t.Errorf("table result %+v, want %+v", res, *st.result)
					}
				}
				rej := slices.Sorted(slices.Values(s.rejects[rejBefore:]))
				if !slices.Equal(rej, st.rejects) {
					t.Errorf("rejects %q, want %q", rej, st.rejects)
				}
				if s.synced != 1 || !s.up[len(s.up)-1] {
					t.Errorf("synced %d up %v", s.synced, s.up)
				}
			})
			if st.hosts != nil {
				if got := sink.hosts(); !slices.Equal(got, st.hosts) {
					t.Errorf("table\n%q\nwant\n%q", got, st.hosts)
				}
			}
		})
	}
	name := s.Name()
	if ack, nack := testutil.ToFloat64(pushes.WithLabelValues(name, "ack")), testutil.ToFloat64(pushes.WithLabelValues(name, "nack")); ack != 4 || nack != 3 {
		t.Errorf("pushes: %v ack, %v nack", ack, nack)
	}
	if n := f.streams.Load(); n != 1 {
		t.Errorf("%d streams, want 1: a NACK must not reconnect", n)
	}
}

// istiod gone: the source is down and keeps its table; istiod back: it
// reconnects on its own and applies new pushes.
func TestReconnect(t *testing.T) {
	f := newFake()
	addr, stop := serve(t, f, "127.0.0.1:0")
	s := testSource(addr)
	sink := newSink()
	start(t, s, sink)

	f.next(t)
	f.send(t, nameTable("v1", "n1", map[string]*nds.NameTable_NameInfo{"a.example.com": ips("240.240.0.1")}))
	f.next(t)
	eventually(t, "up", sink.isUp)

	stop()
	eventually(t, "down", func() bool { return !sink.isUp() })
	reconnects := func() float64 { return testutil.ToFloat64(reconnects.WithLabelValues(s.Name())) }
	eventually(t, "retries", func() bool { return reconnects() >= 2 })
	if got := sink.hosts(); !slices.Equal(got, []string{"a.example.com External 240.240.0.1"}) {
		t.Errorf("table while down: %q", got)
	}

	serve(t, f, addr)
	r := f.next(t)
	if r.Node.GetId() == "" || r.ResponseNonce != "" || r.stream != 2 {
		t.Errorf("first request after reconnect: %v on stream %d", r.DiscoveryRequest, r.stream)
	}
	f.send(t, nameTable("v2", "n2", map[string]*nds.NameTable_NameInfo{"b.example.com": ips("240.240.0.2")}))
	if r := f.next(t); r.VersionInfo != "v2" || r.ErrorDetail != nil {
		t.Errorf("ACK %v", r.DiscoveryRequest)
	}
	eventually(t, "up again", sink.isUp)
	if got := sink.hosts(); !slices.Equal(got, []string{"b.example.com External 240.240.0.2"}) {
		t.Errorf("table after reconnect: %q", got)
	}
	sink.state(func(s *recSink) {
		if s.synced != 1 {
			t.Errorf("synced %d times", s.synced)
		}
	})
}

// Start returns at once even when istiod is unreachable, and the source is
// not ready until something is loaded.
func TestStartDoesNotBlock(t *testing.T) {
	sink := newSink()
	begin := time.Now()
	start(t, testSource(freeAddr(t)), sink)
	if d := time.Since(begin); d > time.Second {
		t.Errorf("Start took %s", d)
	}
	time.Sleep(100 * time.Millisecond)
	sink.state(func(s *recSink) {
		if s.synced != 0 || len(s.replaces) != 0 || len(s.up) == 0 || s.up[len(s.up)-1] {
			t.Errorf("synced %d replaces %d up %v", s.synced, len(s.replaces), s.up)
		}
	})
}

func TestStopsWithContext(t *testing.T) {
	f := newFake()
	addr, stop := serve(t, f, "127.0.0.1:0")
	s := testSource(addr)
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Start(ctx, newSink()); err != nil {
		t.Fatal(err)
	}
	f.next(t)
	cancel()
	// A source still running would now retry the stopped server.
	stop()
	time.Sleep(200 * time.Millisecond)
	if n := testutil.ToFloat64(reconnects.WithLabelValues(s.Name())); n != 0 {
		t.Errorf("%v reconnects after cancel", n)
	}
}
