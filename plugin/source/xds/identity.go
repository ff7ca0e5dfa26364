package xds

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"github.com/meshdns/meshdns/plugin/source/xds/ca"
)

// The method of istiod's CA that issues a certificate.
const createCertificate = "/istio.v1.auth.IstioCertificateService/CreateCertificate"

// The files of cert_dir.
const (
	keyFileName   = "key.pem"
	chainFileName = "cert-chain.pem"
)

// identity is the workload certificate meshdns holds for its xDS stream, as
// Istio's agent holds one: issued by istiod's CA against the service-account
// token once, then renewed with itself, so the stream outlives the token.
type identity struct {
	src *Source

	mu   sync.Mutex
	cert *tls.Certificate // Leaf set; nil until issued or loaded
	// obtained is when the certificate was issued (for one loaded from
	// cert_dir, when it was written): renewal is due halfway from there to
	// expiry. Not NotBefore, which CAs backdate for clock skew.
	obtained time.Time
	// done is closed when renew has returned: nothing writes to cert_dir
	// any more.
	done chan struct{}
	// wake tells renew that the certificate was dropped.
	wake chan struct{}
}

// certificate returns the certificate if it is still valid.
func (id *identity) certificate() *tls.Certificate {
	id.mu.Lock()
	defer id.mu.Unlock()
	if id.cert == nil || !time.Now().Before(id.cert.Leaf.NotAfter) {
		return nil
	}
	return id.cert
}

// forToken returns the certificate to connect with: nil if there is none,
// or if the token now names another service account than the certificate
// does (a token rotated to another identity, for one). Then the
// certificate is dropped and a new one asked for with the token. A token
// that cannot be read or is no JWT changes nothing: the certificate goes on.
func (id *identity) forToken() *tls.Certificate {
	cert := id.certificate()
	if cert == nil || id.src.TokenFile == "" || len(cert.Leaf.URIs) != 1 {
		return cert
	}
	ns, sa, err := tokenAccount(id.src.TokenFile)
	if err != nil || cert.Leaf.URIs[0].Path == "/ns/"+ns+"/sa/"+sa {
		return cert
	}
	log.Infof("source %s: the token is for %s/%s, the certificate for %s: asking for a new one", id.src.Name(), ns, sa, cert.Leaf.URIs[0])
	id.mu.Lock()
	if id.cert == cert {
		id.cert = nil
	}
	id.mu.Unlock()
	select {
	case id.wake <- struct{}{}:
	default:
	}
	return nil
}

func (id *identity) set(cert *tls.Certificate, obtained time.Time) {
	id.mu.Lock()
	id.cert, id.obtained = cert, obtained
	id.mu.Unlock()
	certExpiry.WithLabelValues(id.src.Name()).Set(float64(cert.Leaf.NotAfter.Unix()))
}

// renewAt is when the certificate is due for renewal: halfway through what
// was left of its life when it was obtained. Zero without a certificate.
func (id *identity) renewAt() time.Time {
	id.mu.Lock()
	defer id.mu.Unlock()
	if id.cert == nil {
		return time.Time{}
	}
	return id.obtained.Add(id.cert.Leaf.NotAfter.Sub(id.obtained) / 2)
}

// load reads the certificate kept in cert_dir, if there is a usable one.
func (id *identity) load() error {
	dir := id.src.CertDir
	if dir == "" {
		return nil
	}
	chainPath := filepath.Join(dir, chainFileName)
	fi, err := os.Stat(chainPath)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(chainPath, filepath.Join(dir, keyFileName))
	if err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	if !time.Now().Before(cert.Leaf.NotAfter) {
		return fmt.Errorf("%s: the certificate expired at %s", chainPath, cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	id.set(&cert, fi.ModTime())
	return nil
}

// issue gets a new certificate from istiod's CA: over mTLS with the current
// certificate while it is valid, else with the token.
func (id *identity) issue(ctx context.Context) error {
	s := id.src
	current := id.certificate()
	spiffe, err := id.spiffeID(current)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{spiffe}}, key)
	if err != nil {
		return err
	}
	cfg, err := s.tlsConfig()
	if err != nil {
		return err
	}
	opts := s.baseDialOptions()
	if current != nil {
		cfg.Certificates = []tls.Certificate{*current}
	} else {
		if s.TokenFile == "" {
			return errors.New("no valid certificate to renew with, and no token to get one")
		}
		opts = append(opts, grpc.WithPerRPCCredentials(tokenFile(s.TokenFile)))
	}
	opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	conn, err := grpc.NewClient(s.dialAddress(), opts...)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// istiod reviews the token with the API server of this cluster.
	ctx = metadata.AppendToOutgoingContext(ctx, "ClusterID", s.ClusterID)
	req := &ca.IstioCertificateRequest{
		Csr:              string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr})),
		ValidityDuration: int64(s.CertLifetime / time.Second),
	}
	resp := new(ca.IstioCertificateResponse)
	if err := conn.Invoke(ctx, createCertificate, req, resp); err != nil {
		return fmt.Errorf("CreateCertificate: %w", err)
	}
	cert, err := certificateFrom(resp.GetCertChain(), key)
	if err != nil {
		return fmt.Errorf("CreateCertificate: %w", err)
	}
	now := time.Now()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err := id.save(cert, key); err != nil {
		// The certificate still serves; it is lost only if meshdns restarts.
		log.Warningf("source %s: keeping the certificate in %s: %v", s.Name(), s.CertDir, err)
	}
	id.set(cert, now)
	return nil
}

// certificateFrom makes a TLS certificate of the chain istiod returned (the
// leaf first) and the key it is for.
func certificateFrom(chain []string, key crypto.Signer) (*tls.Certificate, error) {
	cert := &tls.Certificate{PrivateKey: key}
	for _, c := range chain {
		rest := []byte(c)
		for {
			var b *pem.Block
			if b, rest = pem.Decode(rest); b == nil {
				break
			}
			if b.Type == "CERTIFICATE" {
				cert.Certificate = append(cert.Certificate, b.Bytes)
			}
		}
	}
	if len(cert.Certificate) == 0 {
		return nil, errors.New("no certificate in the response")
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, err
	}
	if !leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(key.Public()) {
		return nil, errors.New("the certificate is not for the key sent")
	}
	cert.Leaf = leaf
	return cert, nil
}

// save keeps cert and key in cert_dir: the key readable by meshdns alone.
func (id *identity) save(cert *tls.Certificate, key *ecdsa.PrivateKey) error {
	dir := id.src.CertDir
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	var chain []byte
	for _, c := range cert.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c})...)
	}
	// The key first: a chain on disk always has its key beside it.
	if err := writeAtomic(filepath.Join(dir, keyFileName), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})); err != nil {
		return err
	}
	return writeAtomic(filepath.Join(dir, chainFileName), chain)
}

// spiffeID is the identity to ask for: the current certificate's, or the
// token's service account in the trust domain.
func (id *identity) spiffeID(current *tls.Certificate) (*url.URL, error) {
	if current != nil && len(current.Leaf.URIs) == 1 {
		return current.Leaf.URIs[0], nil
	}
	ns, sa, err := tokenAccount(id.src.TokenFile)
	if err != nil {
		return nil, err
	}
	return &url.URL{Scheme: "spiffe", Host: id.src.trustDomain(), Path: "/ns/" + ns + "/sa/" + sa}, nil
}

// tokenAccount reads the namespace and service account a Kubernetes
// service-account token is for, from its subject, and refuses a token that
// has expired. The signature is istiod's to check.
func tokenAccount(path string) (namespace, account string, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", "", err
	}
	parts := strings.Split(strings.TrimSpace(string(b)), ".")
	if len(parts) != 3 {
		return "", "", fmt.Errorf("%s: not a JWT", path)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", "", fmt.Errorf("%s: not a JWT: %v", path, err)
	}
	var claims struct {
		Sub string `json:"sub"`
		Exp int64  `json:"exp"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return "", "", fmt.Errorf("%s: not a JWT: %v", path, err)
	}
	if claims.Exp != 0 && time.Unix(claims.Exp, 0).Before(time.Now()) {
		return "", "", fmt.Errorf("%s: the token expired at %s", path, time.Unix(claims.Exp, 0).UTC().Format(time.RFC3339))
	}
	f := strings.Split(claims.Sub, ":")
	if len(f) != 4 || f[0] != "system" || f[1] != "serviceaccount" || f[2] == "" || f[3] == "" {
		return "", "", fmt.Errorf("%s: subject %q is not system:serviceaccount:NAMESPACE:NAME", path, claims.Sub)
	}
	return f[2], f[3], nil
}

// renew keeps the certificate fresh until ctx is done: due halfway through
// its life, retried with backoff on failure, with a warning from the last
// quarter of its life on; without a certificate, it retries getting one.
func (id *identity) renew(ctx context.Context) {
	defer close(id.done)
	retry := backoff{base: 5 * time.Second, max: time.Minute}
	for {
		wait := time.Until(id.renewAt())
		if id.certificate() == nil {
			wait = 0
		}
		if wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			case <-id.wake:
			}
		}
		err := id.issue(ctx)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			renewals.WithLabelValues(id.src.Name(), "ok").Inc()
			retry.reset()
			log.Infof("source %s: certificate renewed, valid until %s", id.src.Name(), id.expiry().UTC().Format(time.RFC3339))
			continue
		}
		renewals.WithLabelValues(id.src.Name(), "error").Inc()
		d := retry.next()
		if left := time.Until(id.expiry()); id.certificate() == nil || left < id.lifetime()/4 {
			log.Warningf("source %s: renewing the certificate (%s left): %v; again in %s", id.src.Name(), left.Round(time.Second), err, d.Round(time.Second))
		} else {
			log.Infof("source %s: renewing the certificate: %v; again in %s", id.src.Name(), err, d.Round(time.Second))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		}
	}
}

func (id *identity) expiry() time.Time {
	id.mu.Lock()
	defer id.mu.Unlock()
	if id.cert == nil {
		return time.Time{}
	}
	return id.cert.Leaf.NotAfter
}

func (id *identity) lifetime() time.Duration {
	id.mu.Lock()
	defer id.mu.Unlock()
	if id.cert == nil {
		return 0
	}
	return id.cert.Leaf.NotAfter.Sub(id.obtained)
}
