package main

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshdns/meshdns/plugin/source/xds"
	"github.com/meshdns/meshdns/plugin/source/xds/nds"
)

// fakeADS is an in-process ADS server that sends scripted NameTables: the
// benchmark takes each stream the moment a client subscribes and pushes on
// it itself.
type fakeADS struct {
	discovery.UnimplementedAggregatedDiscoveryServiceServer
	addr    string
	streams chan *adsStream
	srv     *grpc.Server
}

// adsStream is one subscribed client.
type adsStream struct {
	st    discovery.AggregatedDiscoveryService_StreamAggregatedResourcesServer
	reqs  chan *discovery.DiscoveryRequest // ACKs and NACKs; closed when the stream ends
	done  chan struct{}                    // close to end the stream
	nonce int
}

func startFake() (*fakeADS, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f := &fakeADS{addr: l.Addr().String(), streams: make(chan *adsStream, 1),
		srv: grpc.NewServer(grpc.MaxRecvMsgSize(1<<30), grpc.MaxSendMsgSize(1<<30))}
	discovery.RegisterAggregatedDiscoveryServiceServer(f.srv, f)
	go f.srv.Serve(l)
	return f, nil
}

func (f *fakeADS) stop() { f.srv.Stop() }

func (f *fakeADS) StreamAggregatedResources(st discovery.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	sub, err := st.Recv()
	if err != nil {
		return err
	}
	if sub.GetTypeUrl() != xds.TypeURL {
		return fmt.Errorf("subscription to %q, want %q", sub.GetTypeUrl(), xds.TypeURL)
	}
	s := &adsStream{st: st, reqs: make(chan *discovery.DiscoveryRequest, 16), done: make(chan struct{})}
	go func() {
		defer close(s.reqs)
		for {
			r, err := st.Recv()
			if err != nil {
				return
			}
			s.reqs <- r
		}
	}()
	f.streams <- s
	select {
	case <-s.done:
	case <-st.Context().Done():
	}
	return nil
}

// next waits for a client to subscribe.
func (f *fakeADS) next(timeout time.Duration) (*adsStream, error) {
	select {
	case s := <-f.streams:
		return s, nil
	case <-time.After(timeout):
		return nil, errors.New("no client subscribed to the fake ADS server")
	}
}

// push is an encoded NameTable response, ready to send: the benchmark does
// not time the server's marshalling.
type push struct {
	msg   *grpc.PreparedMsg
	nonce string
	bytes int
}

func (s *adsStream) prepare(nt *nds.NameTable) (*push, error) {
	res, err := anypb.New(nt)
	if err != nil {
		return nil, err
	}
	s.nonce++
	nonce := strconv.Itoa(s.nonce)
	resp := &discovery.DiscoveryResponse{TypeUrl: xds.TypeURL, VersionInfo: "v" + nonce, Nonce: nonce, Resources: []*anypb.Any{res}}
	pm := &grpc.PreparedMsg{}
	if err := pm.Encode(s.st, resp); err != nil {
		return nil, err
	}
	return &push{msg: pm, nonce: nonce, bytes: proto.Size(resp)}, nil
}

// send sends a prepared push and waits for its ACK; it returns when it
// began sending and when the ACK arrived.
func (s *adsStream) send(p *push) (sent, acked time.Time, err error) {
	sent = time.Now()
	if err := s.st.SendMsg(p.msg); err != nil {
		return sent, sent, err
	}
	select {
	case r, ok := <-s.reqs:
		acked = time.Now()
		if !ok {
			return sent, acked, errors.New("stream ended before the ACK")
		}
		if r.GetResponseNonce() != p.nonce || r.GetErrorDetail() != nil {
			return sent, acked, fmt.Errorf("push %s: reply nonce %q, error %v; want an ACK", p.nonce, r.GetResponseNonce(), r.GetErrorDetail())
		}
		return sent, acked, nil
	case <-time.After(time.Minute):
		return sent, time.Now(), fmt.Errorf("push %s: no ACK after a minute", p.nonce)
	}
}

func (s *adsStream) close() { close(s.done) }

// nameTable is a synthetic table of n hosts, as istiod would send for a big
// mesh: 9 in 10 Kubernetes Services spread over 100 namespaces (one IPv4
// ClusterIP), 1 in 10 ServiceEntry hosts with an allocated VIP. change,
// when >= 0, gives host number change another address.
func nameTable(n, change int) *nds.NameTable {
	nt := &nds.NameTable{Table: make(map[string]*nds.NameTable_NameInfo, n)}
	for i := range n {
		ip := fmt.Sprintf("10.%d.%d.%d", 96+i>>16, i>>8&255, i&255)
		if i == change {
			ip = "10.255.255.254"
		}
		if i%10 == 9 {
			nt.Table[fmt.Sprintf("ext-%d.example.com", i)] = &nds.NameTable_NameInfo{
				Ips: []string{fmt.Sprintf("240.240.%d.%d", i>>8&255, i&255)}, Registry: "External"}
			continue
		}
		name, ns := fmt.Sprintf("svc-%d", i), fmt.Sprintf("ns-%d", i%100)
		nt.Table[name+"."+ns+".svc.cluster.local"] = &nds.NameTable_NameInfo{
			Ips: []string{ip}, Registry: "Kubernetes", Shortname: name, Namespace: ns}
	}
	return nt
}

// changedHost is the host nameTable(n, i) changes, and its new address.
func changedHost(i int) (string, string) {
	return fmt.Sprintf("svc-%d.ns-%d.svc.cluster.local.", i, i%100), "10.255.255.254"
}
