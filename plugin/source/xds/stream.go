package xds

import (
	"context"
	"crypto/sha256"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/meshdns/meshdns/plugin/source"
	"github.com/meshdns/meshdns/plugin/source/xds/ads"
	"github.com/meshdns/meshdns/plugin/table"
)

// The ADS method istiod serves, a bidirectional stream.
const adsMethod = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"

var adsStream = grpc.StreamDesc{StreamName: "StreamAggregatedResources", ServerStreams: true, ClientStreams: true}

// client is a running source: its state outlives each connection. Only the
// run goroutine touches it after Start.
type client struct {
	src   *Source
	sink  source.Sink
	node  *ads.Node
	retry backoff

	version string // of the last push applied, sent back in NACKs
	synced  bool
	unsaved []table.Entry     // applied but not yet in the snapshot
	snapSum [sha256.Size]byte // of the snapshot file's content
}

// stream runs one connection until it fails; received tells whether istiod
// sent anything on it.
func (c *client) stream(ctx context.Context) (received bool, err error) {
	opts, err := c.src.dialOptions()
	if err != nil {
		return false, err
	}
	conn, err := grpc.NewClient(c.src.dialAddress(), opts...)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := conn.NewStream(ctx, &adsStream, adsMethod)
	if err != nil {
		return false, err
	}
	// A new stream starts from nothing: istiod pushes the whole table.
	if err := st.SendMsg(&ads.DiscoveryRequest{Node: c.node, TypeUrl: TypeURL}); err != nil {
		return false, err
	}
	for {
		resp := new(ads.DiscoveryResponse)
		if err := st.RecvMsg(resp); err != nil {
			return received, err
		}
		if !received {
			received = true
			c.sink.Up(true)
			log.Infof("source %s: connected", c.src.Name())
		}
		if err := st.SendMsg(c.handle(resp)); err != nil {
			return received, err
		}
		// After the ACK: istiod need not wait for the disk.
		c.saveSnapshot()
	}
}

// handle applies a push and returns its ACK, or its NACK if it cannot be
// applied; then the previous table keeps serving.
func (c *client) handle(resp *ads.DiscoveryResponse) *ads.DiscoveryRequest {
	req := &ads.DiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()}
	nt, err := decode(resp)
	if err != nil {
		pushes.WithLabelValues(c.src.Name(), "nack").Inc()
		log.Warningf("source %s: rejected push %q: %v", c.src.Name(), resp.GetVersionInfo(), err)
		req.VersionInfo = c.version
		req.ErrorDetail = &ads.Status{Code: int32(codes.InvalidArgument), Message: err.Error()}
		return req
	}
	pushes.WithLabelValues(c.src.Name(), "ack").Inc()
	c.version = resp.GetVersionInfo()
	req.VersionInfo = c.version
	if nt == nil {
		return req
	}
	// Bad hosts are skipped, not the push: one odd ServiceEntry must not
	// freeze every other name.
	es, bad := entries(nt)
	c.sink.Replace(es, bad)
	c.unsaved = es
	c.markSynced()
	return req
}

func (c *client) markSynced() {
	if !c.synced {
		c.synced = true
		c.sink.Synced()
	}
}
