package harness

import (
	"os"
	"path/filepath"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
)

// The kubeconfig in a remote secret is read by istiod, not on this machine:
// whatever files it names must end up inside it, and only the current
// context is kept.
func TestSelfContainedKubeconfig(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"ca.crt": "CA PEM",
		"token":  "secret-token\n",
		"kubeconfig": `apiVersion: v1
kind: Config
clusters:
- name: remote
  cluster: {server: "https://127.0.0.1:6443", certificate-authority: ca.crt}
- name: other
  cluster: {server: "https://127.0.0.2:6443"}
users:
- name: reader
  user: {tokenFile: token}
contexts:
- name: remote
  context: {cluster: remote, user: reader}
- name: other
  context: {cluster: other, user: reader}
current-context: remote
`,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	b, err := selfContainedKubeconfig(filepath.Join(dir, "kubeconfig"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.Load(b)
	if err != nil {
		t.Fatalf("load the result: %v\n%s", err, b)
	}
	if len(cfg.Clusters) != 1 || len(cfg.Contexts) != 1 || cfg.CurrentContext != "remote" {
		t.Errorf("clusters %d, contexts %d, current %q; want the current context only:\n%s", len(cfg.Clusters), len(cfg.Contexts), cfg.CurrentContext, b)
	}
	c := cfg.Clusters["remote"]
	if c == nil || c.CertificateAuthority != "" || string(c.CertificateAuthorityData) != "CA PEM" {
		t.Errorf("cluster %+v: want the CA embedded", c)
	}
	u := cfg.AuthInfos["reader"]
	if u == nil || u.TokenFile != "" || u.Token != "secret-token" {
		t.Errorf("user %+v: want the token embedded", u)
	}
}
