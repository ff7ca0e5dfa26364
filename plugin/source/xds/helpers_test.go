package xds

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	grpcpeer "google.golang.org/grpc/peer"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
	securityapi "istio.io/api/security/v1alpha1"

	"github.com/meshdns/meshdns/plugin/source"
	"github.com/meshdns/meshdns/plugin/source/xds/nds"
	"github.com/meshdns/meshdns/plugin/table"
)

// fakeADS is a scripted xDS server: the test pushes responses and reads the
// requests. It survives restarts of the gRPC server that serves it.
type fakeADS struct {
	discovery.UnimplementedAggregatedDiscoveryServiceServer
	reqs    chan request
	push    chan *discovery.DiscoveryResponse
	kick    chan struct{} // ends the current stream
	streams atomic.Int32
	ca      *fakeCA // served beside ADS when set
}

// request is what the fake received, with the stream's bearer token and
// the identity of the client certificate it came with.
type request struct {
	*discovery.DiscoveryRequest
	auth, peer string
	stream     int32
}

func newFake() *fakeADS {
	return &fakeADS{reqs: make(chan request, 100), push: make(chan *discovery.DiscoveryResponse), kick: make(chan struct{})}
}

func (f *fakeADS) StreamAggregatedResources(st discovery.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	n := f.streams.Add(1)
	auth, peer := callerOf(st.Context())
	errc := make(chan error, 1)
	go func() {
		for {
			req, err := st.Recv()
			if err != nil {
				errc <- err
				return
			}
			select {
			case f.reqs <- request{req, auth, peer, n}:
			case <-st.Context().Done():
				return
			}
		}
	}()
	for {
		select {
		case r := <-f.push:
			if err := st.Send(r); err != nil {
				return err
			}
		case <-f.kick:
			return grpcstatus.Error(codes.Unavailable, "kicked")
		case err := <-errc:
			return err
		case <-st.Context().Done():
			return st.Context().Err()
		}
	}
}

// serve serves f on addr ("127.0.0.1:0" for any port) until the test ends or
// the returned stop is called.
func serve(t *testing.T, f *fakeADS, addr string, opts ...grpc.ServerOption) (string, func()) {
	t.Helper()
	var l net.Listener
	var err error
	// A restarted server takes its port back; the old socket may linger briefly.
	for range 50 {
		if l, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(opts...)
	discovery.RegisterAggregatedDiscoveryServiceServer(s, f)
	if f.ca != nil {
		securityapi.RegisterIstioCertificateServiceServer(s, f.ca)
	}
	go s.Serve(l)
	t.Cleanup(s.Stop)
	return l.Addr().String(), s.Stop
}

// next returns the next request, failing the test after a while.
func (f *fakeADS) next(t *testing.T) request {
	t.Helper()
	select {
	case r := <-f.reqs:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("no request from the client")
		return request{}
	}
}

// quiet checks that no request arrives for a while.
func (f *fakeADS) quiet(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case r := <-f.reqs:
		t.Fatalf("unexpected request %v", r.DiscoveryRequest)
	case <-time.After(d):
	}
}

func (f *fakeADS) send(t *testing.T, r *discovery.DiscoveryResponse) {
	t.Helper()
	select {
	case f.push <- r:
	case <-time.After(5 * time.Second):
		t.Fatal("no stream to push on")
	}
}

// nameTable is a push of one NameTable.
func nameTable(version, nonce string, tbl map[string]*nds.NameTable_NameInfo) *discovery.DiscoveryResponse {
	a, err := anypb.New(&nds.NameTable{Table: tbl})
	if err != nil {
		panic(err)
	}
	return &discovery.DiscoveryResponse{VersionInfo: version, Nonce: nonce, TypeUrl: TypeURL, Resources: []*anypb.Any{a}}
}

func ips(addrs ...string) *nds.NameTable_NameInfo { return &nds.NameTable_NameInfo{Ips: addrs} }

func kube(short, ns string, addrs ...string) *nds.NameTable_NameInfo {
	return &nds.NameTable_NameInfo{Ips: addrs, Registry: "Kubernetes", Shortname: short, Namespace: ns}
}

// recSink records what a source does and applies it to a real table.
type recSink struct {
	mu       sync.Mutex
	tbl      *table.Table
	id       table.SourceID
	replaces [][]table.Entry
	results  []table.Result
	rejects  []string // "object reason"
	synced   int
	up       []bool
}

func newSink() *recSink {
	t := table.New(table.Config{Domain: "cluster.local", TTL: 30})
	return &recSink{tbl: t, id: t.AddSource("xds")}
}

func (s *recSink) Replace(es []table.Entry, skipped []source.Rejection) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range skipped {
		s.rejects = append(s.rejects, r.Object+" "+r.Reason)
	}
	s.replaces = append(s.replaces, es)
	s.results = append(s.results, s.tbl.Replace(s.id, es))
}

func (s *recSink) Apply([]table.Entry, []string) { panic("the xds source only replaces") }

func (s *recSink) Reject(object, reason string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rejects = append(s.rejects, object+" "+reason)
}

func (s *recSink) Synced() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.synced++
}

func (s *recSink) Up(up bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.up = append(s.up, up)
}

// state reads the sink under its lock.
func (s *recSink) state(f func(s *recSink)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

func (s *recSink) isUp() bool {
	var up bool
	s.state(func(s *recSink) { up = len(s.up) > 0 && s.up[len(s.up)-1] })
	return up
}

func (s *recSink) nReplaces() int {
	var n int
	s.state(func(s *recSink) { n = len(s.replaces) })
	return n
}

// hosts is the table's content for the source: "host addr,addr" sorted.
func (s *recSink) hosts() []string {
	var out []string
	for _, e := range s.tbl.Entries(s.id) {
		out = append(out, hostLine(e))
	}
	return out
}

func hostLine(e table.Entry) string {
	var as []string
	for _, a := range e.Addrs {
		as = append(as, a.String())
	}
	return e.Host + " " + e.Registry.String() + " " + strings.Join(as, ",")
}

func hostLines(es []table.Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, hostLine(e))
	}
	slices.Sort(out)
	return out
}

// eventually polls cond for up to 5 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// testSource is an insecure source for addr with quick retries.
func testSource(addr string) *Source {
	s := &Source{Address: addr, NodeIP: "10.0.0.5", Workload: "vm1", Namespace: "vm-ns", ClusterID: DefaultCluster, Insecure: true,
		retry: backoff{base: 10 * time.Millisecond, max: 50 * time.Millisecond}}
	if err := s.Finish("cluster.local", ""); err != nil {
		panic(err)
	}
	return s
}

// freeAddr is a loopback address nothing listens on (yet).
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// pki is a CA with a server and a client certificate, as PEM files.
type pki struct {
	ca, serverCert, serverKey, clientCert, clientKey string
	pool                                             *x509.CertPool
	caCert                                           *x509.Certificate
	caKey                                            *ecdsa.PrivateKey
}

func newPKI(t *testing.T, dir string) pki {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	p := pki{ca: filepath.Join(dir, "root.pem"), pool: x509.NewCertPool(), caCert: ca, caKey: caKey}
	p.pool.AddCert(ca)
	writePEM(t, p.ca, "CERTIFICATE", caDER)
	leaf := func(name string, serial int64, usage x509.ExtKeyUsage) (string, string) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			DNSNames: []string{"istiod.istio-system.svc"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, _ := x509.MarshalECPrivateKey(key)
		cert, keyFile := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
		writePEM(t, cert, "CERTIFICATE", der)
		writePEM(t, keyFile, "EC PRIVATE KEY", kder)
		return cert, keyFile
	}
	p.serverCert, p.serverKey = leaf("server", 2, x509.ExtKeyUsageServerAuth)
	p.clientCert, p.clientKey = leaf("client", 3, x509.ExtKeyUsageClientAuth)
	return p
}

// serverTLS is the server side; with clientAuth it demands a client
// certificate from this CA, which optionalClientTLS takes when given.
func (p pki) serverTLS(t *testing.T, clientAuth bool) *tls.Config {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(p.serverCert, p.serverKey)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	if clientAuth {
		cfg.ClientAuth, cfg.ClientCAs = tls.RequireAndVerifyClientCert, p.pool
	}
	return cfg
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// fakeJWT is a token with a Kubernetes service account's subject that
// expires after ttl, unsigned: meshdns reads its claims, istiod checks it.
func fakeJWT(t *testing.T, sub string, ttl time.Duration) string {
	t.Helper()
	claims, err := json.Marshal(map[string]any{"sub": sub, "exp": time.Now().Add(ttl).Unix(), "aud": []string{"istio-ca"}})
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256"}`)) + "." + enc(claims) + "." + enc([]byte("signature"))
}

// optionalClientTLS is istiod's TLS: a client certificate from this CA is
// verified when there is one; a token is the other way in.
func (p pki) optionalClientTLS(t *testing.T) *tls.Config {
	cfg := p.serverTLS(t, false)
	cfg.ClientAuth, cfg.ClientCAs = tls.VerifyClientCertIfGiven, p.pool
	return cfg
}

// callerOf is who made a call: its bearer token, and the URI of its client
// certificate.
func callerOf(ctx context.Context) (auth, peerID string) {
	if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get("authorization")) > 0 {
		auth = md.Get("authorization")[0]
	}
	if p, ok := grpcpeer.FromContext(ctx); ok {
		if info, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(info.State.PeerCertificates) > 0 && len(info.State.PeerCertificates[0].URIs) > 0 {
			peerID = info.State.PeerCertificates[0].URIs[0].String()
		}
	}
	return auth, peerID
}

// fakeCA is istiod's CA: it signs a CSR for its own SAN with the lifetime
// asked for (an hour by default), backdated a minute as istiod does, and
// records how each caller authenticated.
type fakeCA struct {
	securityapi.UnimplementedIstioCertificateServiceServer
	p     pki
	calls chan caCall
	fail  atomic.Bool
}

type caCall struct {
	auth, peer, san, clusterID string
	validity                   int64
}

func newFakeCA(p pki) *fakeCA { return &fakeCA{p: p, calls: make(chan caCall, 100)} }

func (c *fakeCA) CreateCertificate(ctx context.Context, req *securityapi.IstioCertificateRequest) (*securityapi.IstioCertificateResponse, error) {
	auth, peer := callerOf(ctx)
	call := caCall{auth: auth, peer: peer, validity: req.GetValidityDuration()}
	if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get("ClusterID")) > 0 {
		call.clusterID = md.Get("ClusterID")[0]
	}
	block, _ := pem.Decode([]byte(req.GetCsr()))
	if block == nil {
		return nil, grpcstatus.Error(codes.InvalidArgument, "no CSR")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil || len(csr.URIs) != 1 {
		return nil, grpcstatus.Errorf(codes.InvalidArgument, "CSR: %v", err)
	}
	call.san = csr.URIs[0].String()
	// Decided before the call is reported, so a test that flips fail after
	// seeing a call does not change that call's answer.
	refuse := c.fail.Load() || (auth == "" && peer == "")
	c.calls <- call
	if refuse {
		return nil, grpcstatus.Error(codes.Unauthenticated, "refused")
	}
	life := time.Hour
	if v := req.GetValidityDuration(); v > 0 {
		life = time.Duration(v) * time.Second
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(now.UnixNano()), NotBefore: now.Add(-time.Minute), NotAfter: now.Add(life),
		URIs: csr.URIs, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.p.caCert, csr.PublicKey, c.p.caKey)
	if err != nil {
		return nil, err
	}
	return &securityapi.IstioCertificateResponse{CertChain: []string{
		string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.p.caCert.Raw})),
	}}, nil
}

// next returns the next call, failing the test after a while.
func (c *fakeCA) next(t *testing.T, within time.Duration) caCall {
	t.Helper()
	select {
	case call := <-c.calls:
		return call
	case <-time.After(within):
		t.Fatal("no call to the CA")
		return caCall{}
	}
}
