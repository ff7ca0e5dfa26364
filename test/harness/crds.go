package harness

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"
)

var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// installIstioCRDs server-side applies the CRDs shipped in the istio.io/api
// module the test module depends on, so they match the Istio client exactly,
// and waits until every one is established.
func installIstioCRDs(ctx context.Context, config *rest.Config) error {
	path, err := istioCRDFile()
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open CRDs: %w", err)
	}
	defer f.Close()
	crds, err := readCRDs(path, f)
	if err != nil {
		return err
	}
	return applyCRDs(ctx, config, crds)
}

// applyCRDs server-side applies crds and waits until every one is
// established.
func applyCRDs(ctx context.Context, config *rest.Config, crds []*unstructured.Unstructured) error {
	client, err := dynamic.NewForConfig(config)
	if err != nil {
		return fmt.Errorf("dynamic client: %w", err)
	}
	api := client.Resource(crdResource)
	for _, crd := range crds {
		opts := metav1.ApplyOptions{FieldManager: "meshdns-test-harness", Force: true}
		if _, err := api.Apply(ctx, crd.GetName(), crd, opts); err != nil {
			return fmt.Errorf("apply CRD %s: %w", crd.GetName(), err)
		}
	}
	for _, crd := range crds {
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			got, err := api.Get(ctx, crd.GetName(), metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			return established(got), nil
		})
		if err != nil {
			return fmt.Errorf("wait for CRD %s to be established: %w", crd.GetName(), err)
		}
	}
	return nil
}

func established(crd *unstructured.Unstructured) bool {
	conditions, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
	for _, c := range conditions {
		if c, ok := c.(map[string]any); ok && c["type"] == "Established" && c["status"] == "True" {
			return true
		}
	}
	return false
}

// istioCRDFile locates kubernetes/customresourcedefinitions.gen.yaml of the
// istio.io/api version selected by the test module, downloading the module
// if it is not in the module cache yet.
func istioCRDFile() (string, error) {
	modDir, err := findModuleDir(testModule)
	if err != nil {
		return "", err
	}
	dir, err := goCommand(modDir, "list", "-m", "-f", "{{.Dir}}", "istio.io/api")
	if err == nil && dir == "" {
		if _, err = goCommand(modDir, "mod", "download", "istio.io/api"); err == nil {
			dir, err = goCommand(modDir, "list", "-m", "-f", "{{.Dir}}", "istio.io/api")
		}
	}
	if err != nil {
		return "", fmt.Errorf("locate the istio.io/api module: %w", err)
	}
	if dir == "" {
		return "", errors.New("locate the istio.io/api module: go list reports no directory")
	}
	return filepath.Join(dir, "kubernetes", "customresourcedefinitions.gen.yaml"), nil
}

func goCommand(dir string, args ...string) (string, error) {
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return strings.TrimSpace(string(out)), nil
}

// readCRDs decodes the CustomResourceDefinitions of a multi-document YAML
// file; path names it in errors.
func readCRDs(path string, f io.Reader) ([]*unstructured.Unstructured, error) {
	var crds []*unstructured.Unstructured
	docs := utilyaml.NewYAMLReader(bufio.NewReader(f))
	for {
		doc, err := docs.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		data, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, fmt.Errorf("decode %s: %w", path, err)
		}
		if bytes.Equal(bytes.TrimSpace(data), []byte("null")) {
			continue // empty document, e.g. only a comment
		}
		// UnmarshalJSON keeps integers as int64, as the API server expects.
		crd := &unstructured.Unstructured{}
		if err := crd.UnmarshalJSON(data); err != nil {
			return nil, fmt.Errorf("decode %s: %w", path, err)
		}
		if crd.GetKind() != "CustomResourceDefinition" {
			return nil, fmt.Errorf("%s: unexpected %s %s", path, crd.GetKind(), crd.GetName())
		}
		crds = append(crds, crd)
	}
	if len(crds) == 0 {
		return nil, fmt.Errorf("%s: no CRDs found", path)
	}
	return crds, nil
}
