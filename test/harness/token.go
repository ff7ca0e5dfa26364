package harness

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ExpiredToken returns a service-account token for the service account
// (created if missing) and audience that expired an hour ago, signed with
// the API server's service-account key as TokenRequest signs tokens: what a
// VM holds once the one-hour token istioctl wrote has run out. TokenRequest
// itself never issues one that short-lived.
func (cp *ControlPlane) ExpiredToken(t TB, namespace, serviceAccount, audience string) string {
	t.Helper()
	now := time.Now()
	return cp.signToken(t, namespace, serviceAccount, audience, now.Add(-2*time.Hour), now.Add(-time.Hour))
}

// signToken signs a bound service-account token valid from iat to exp.
func (cp *ControlPlane) signToken(t TB, namespace, serviceAccount, audience string, iat, exp time.Time) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cp.ensureNamespace(ctx, namespace); err != nil {
		t.Fatalf("harness: %v", err)
	}
	accounts := cp.Client.CoreV1().ServiceAccounts(namespace)
	sa, err := accounts.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: serviceAccount}}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		sa, err = accounts.Get(ctx, serviceAccount, metav1.GetOptions{})
	}
	if err != nil {
		t.Fatalf("harness: service account %s/%s: %v", namespace, serviceAccount, err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(cp.dir, "sa.key"))
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		t.Fatalf("harness: sa.key is not PEM")
	}
	key, err := x509.ParsePKCS1PrivateKey(block.Bytes)
	if err != nil {
		t.Fatalf("harness: sa.key: %v", err)
	}
	// The key ID the API server gives its key: the SHA-256 of the public
	// key's DER, in unpadded base64url.
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	kid := sha256.Sum256(pub)
	jti, err := randomHex(16)
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	header := map[string]string{"alg": "RS256", "kid": base64.RawURLEncoding.EncodeToString(kid[:])}
	claims := map[string]any{
		"iss": "https://kubernetes.default.svc",
		"sub": fmt.Sprintf("system:serviceaccount:%s:%s", namespace, serviceAccount),
		"aud": []string{audience},
		"iat": iat.Unix(),
		"nbf": iat.Unix(),
		"exp": exp.Unix(),
		"jti": jti,
		"kubernetes.io": map[string]any{
			"namespace":      namespace,
			"serviceaccount": map[string]string{"name": serviceAccount, "uid": string(sa.UID)},
		},
	}
	part := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("harness: %v", err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	signed := part(header) + "." + part(claims)
	digest := sha256.Sum256([]byte(signed))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, digest[:])
	if err != nil {
		t.Fatalf("harness: sign token: %v", err)
	}
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig)
}
