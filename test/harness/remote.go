package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Labels and annotations of an Istio remote secret, as `istioctl create-remote-secret` writes them.
const (
	remoteSecretLabel      = "istio/multiCluster"
	remoteSecretAnnotation = "networking.istio.io/cluster"
)

// RemoteSecret makes an istiod running against cp read remote as cluster
// name, as a primary reads a remote cluster in Istio's multicluster
// installs: a Secret in istio-system of cp, labelled istio/multiCluster, with
// remote's kubeconfig under the key name. The kubeconfig is flattened (files
// it refers to are embedded) and minified to its current context, because
// istiod reads it from the Secret, not from this machine's files.
//
// istiod picks the Secret up within a second or so; a test that depends on
// it should wait for something from remote to reach istiod's answers.
func (cp *ControlPlane) RemoteSecret(t TB, remote *ControlPlane, name string) {
	t.Helper()
	kubeconfig, err := selfContainedKubeconfig(remote.Kubeconfig)
	if err != nil {
		t.Fatalf("harness: remote secret for %s: %v", name, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cp.ensureNamespace(ctx, IstiodNamespace); err != nil {
		t.Fatalf("harness: %v", err)
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:   IstiodNamespace,
			Name:        "istio-remote-secret-" + name,
			Labels:      map[string]string{remoteSecretLabel: "true"},
			Annotations: map[string]string{remoteSecretAnnotation: name},
		},
		Data: map[string][]byte{name: kubeconfig},
	}
	if _, err := cp.Client.CoreV1().Secrets(IstiodNamespace).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatalf("harness: create remote secret for %s: %v", name, err)
	}
}

// selfContainedKubeconfig returns the kubeconfig at path with only its
// current context and with every file it names embedded.
func selfContainedKubeconfig(path string) ([]byte, error) {
	cfg, err := clientcmd.LoadFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	if err := clientcmdapi.MinifyConfig(cfg); err != nil {
		return nil, fmt.Errorf("minify %s: %w", path, err)
	}
	if err := clientcmdapi.FlattenConfig(cfg); err != nil {
		return nil, fmt.Errorf("flatten %s: %w", path, err)
	}
	// FlattenConfig embeds certificates and keys but not token files.
	for _, auth := range cfg.AuthInfos {
		if auth.TokenFile == "" {
			continue
		}
		token, err := os.ReadFile(clientcmdapi.ResolvePath(auth.TokenFile, filepath.Dir(auth.LocationOfOrigin)))
		if err != nil {
			return nil, fmt.Errorf("token file of %s: %w", path, err)
		}
		auth.Token, auth.TokenFile = strings.TrimSpace(string(token)), ""
	}
	return clientcmd.Write(*cfg)
}
