package kubernetes

import (
	"strconv"
	"strings"
	"time"

	"github.com/coredns/caddy"

	"github.com/meshdns/meshdns/plugin/source"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
)

// DefaultCluster names the source when no cluster is given; it is Istio's
// default cluster ID.
const DefaultCluster = "Kubernetes"

// Parse reads a kubernetes source from the Corefile, the cursor being on
// "kubernetes":
//
//	kubernetes [KUBECONFIG [CONTEXT]] {
//	    cluster NAME
//	    namespaces NAMESPACE...
//	    labels SELECTOR
//	    startup_timeout DURATION
//	    qps N
//	    burst N
//	    auto_allocate
//	    mesh_wide
//	    client_cluster
//	    network NAME
//	}
//
// The meshdns block sets Domain and Namespace afterwards.
func Parse(c *caddy.Controller) (*Source, error) {
	s := &Source{Cluster: DefaultCluster, StartupTimeout: 5 * time.Second, Domain: "cluster.local"}
	args := c.RemainingArgs()
	switch len(args) {
	case 2:
		s.Context = args[1]
		fallthrough
	case 1:
		s.Kubeconfig = args[0]
	case 0:
	default:
		return nil, c.Errf("kubernetes: want 'kubernetes [KUBECONFIG [CONTEXT]]', got %q", args)
	}
	for c.NextBlock() {
		opt := c.Val()
		args := c.RemainingArgs()
		switch opt {
		case "cluster":
			if len(args) != 1 || len(validation.IsDNS1123Label(strings.ToLower(args[0]))) > 0 {
				return nil, c.Errf("kubernetes: cluster: want one name, got %q", args)
			}
			s.Cluster = args[0]
		case "namespaces":
			if len(args) == 0 {
				return nil, c.Err("kubernetes: namespaces: want at least one namespace")
			}
			for _, ns := range args {
				if len(validation.IsDNS1123Label(ns)) > 0 {
					return nil, c.Errf("kubernetes: namespaces: invalid namespace %q", ns)
				}
			}
			s.Namespaces = args
		case "labels":
			sel := strings.Join(args, " ")
			if _, err := labels.Parse(sel); err != nil || sel == "" {
				return nil, c.Errf("kubernetes: labels: invalid selector %q: %v", sel, err)
			}
			s.Labels = sel
		case "startup_timeout":
			d, err := oneArg(c, opt, args, time.ParseDuration)
			if err != nil {
				return nil, err
			}
			if d < 0 {
				return nil, c.Errf("kubernetes: startup_timeout: negative duration %s", d)
			}
			s.StartupTimeout = d
		case "qps":
			q, err := oneArg(c, opt, args, func(v string) (float64, error) { return strconv.ParseFloat(v, 32) })
			if err != nil {
				return nil, err
			}
			if q <= 0 {
				return nil, c.Errf("kubernetes: qps: want a positive number, got %v", q)
			}
			s.QPS = float32(q)
		case "burst":
			b, err := oneArg(c, opt, args, strconv.Atoi)
			if err != nil {
				return nil, err
			}
			if b <= 0 {
				return nil, c.Errf("kubernetes: burst: want a positive number, got %d", b)
			}
			s.Burst = b
		case "network":
			if len(args) != 1 || len(validation.IsDNS1123Label(strings.ToLower(args[0]))) > 0 {
				return nil, c.Errf("kubernetes: network: want one name, got %q", args)
			}
			s.Network = args[0]
		case "auto_allocate", "mesh_wide", "client_cluster":
			if len(args) != 0 {
				return nil, c.Errf("kubernetes: %s takes no arguments", opt)
			}
			switch opt {
			case "auto_allocate":
				s.AutoAllocate = true
			case "mesh_wide":
				s.MeshWide = true
			default:
				s.ClientCluster = true
			}
		default:
			return nil, c.Errf("kubernetes: unknown property %q", opt)
		}
	}
	return s, nil
}

func oneArg[T any](c *caddy.Controller, opt string, args []string, parse func(string) (T, error)) (T, error) {
	var zero T
	if len(args) != 1 {
		return zero, c.Errf("kubernetes: %s: want one value, got %q", opt, args)
	}
	v, err := parse(args[0])
	if err != nil {
		return zero, c.Errf("kubernetes: %s: %v", opt, err)
	}
	return v, nil
}

func init() {
	source.Register("kubernetes", func(c *caddy.Controller, _ string) (source.Source, error) {
		s, err := Parse(c)
		if err != nil {
			return nil, err
		}
		return s, nil
	})
}

// Finish takes the meshdns block's cluster domain and client namespace.
func (s *Source) Finish(domain, namespace string) error {
	s.Domain, s.Namespace = domain, namespace
	return nil
}
