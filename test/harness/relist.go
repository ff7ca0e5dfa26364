package harness

import (
	"context"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
)

// outdateKey is written by OutdateResourceVersions, outside the API server's
// /registry prefix: the API server never reads it.
const outdateKey = "/meshdns-harness/outdate"

// OutdateResourceVersions makes every resource version a client holds too
// old for the API server, so that a watcher that reconnects after
// StartAPIServer must list everything again (a 410 Gone, "too old resource
// version"), as after a long outage of a real control plane. Call it while
// the API server is stopped; it returns etcd's revision, compacted.
//
// Without it a reconnecting watcher may just resume: the new API server's
// watch cache starts from etcd's revision when it lists, and a watch from a
// resource version at or after that revision is served from the cache. A
// client's resource version can be etcd's latest (a bookmark carries it),
// and nothing need write to etcd while the API server is down. So this
// writes a key of its own, which moves the revision past every resource
// version handed out, and compacts etcd up to it, so that a request that
// reaches etcd with an older one fails too.
func (cp *ControlPlane) OutdateResourceVersions(ctx context.Context) (int64, error) {
	if cp.apiserver != nil && !cp.apiserver.Exited() {
		return 0, errors.New("harness: OutdateResourceVersions: stop the API server first")
	}
	etcd, err := clientv3.New(clientv3.Config{Endpoints: []string{cp.etcdURL}, DialTimeout: 10 * time.Second})
	if err != nil {
		return 0, fmt.Errorf("harness: etcd client: %w", err)
	}
	defer etcd.Close()
	put, err := etcd.Put(ctx, outdateKey, time.Now().UTC().Format(time.RFC3339Nano))
	if err != nil {
		return 0, fmt.Errorf("harness: write %s into etcd: %w", outdateKey, err)
	}
	rev := put.Header.Revision
	// Physical: returns once the old revisions are gone from the backend.
	if _, err := etcd.Compact(ctx, rev, clientv3.WithCompactPhysical()); err != nil {
		return 0, fmt.Errorf("harness: compact etcd at revision %d: %w", rev, err)
	}
	return rev, nil
}

// DeleteServiceInEtcd deletes a ClusterIP Service and the IPAddress
// objects of its ClusterIPs straight from etcd, while the API server is
// stopped: the Service is gone when it starts again, and no watch event
// ever says so. A watcher that then answers for it no more has listed
// again; one that still answers has not.
func (cp *ControlPlane) DeleteServiceInEtcd(ctx context.Context, svc *corev1.Service) error {
	if cp.apiserver != nil && !cp.apiserver.Exited() {
		return errors.New("harness: DeleteServiceInEtcd: stop the API server first")
	}
	etcd, err := clientv3.New(clientv3.Config{Endpoints: []string{cp.etcdURL}, DialTimeout: 10 * time.Second})
	if err != nil {
		return fmt.Errorf("harness: etcd client: %w", err)
	}
	defer etcd.Close()
	keys := []string{"/registry/services/specs/" + svc.Namespace + "/" + svc.Name}
	for _, ip := range svc.Spec.ClusterIPs {
		keys = append(keys, "/registry/ipaddresses/"+ip)
	}
	var cmps []clientv3.Cmp
	var dels []clientv3.Op
	for _, k := range keys {
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(k), ">", 0))
		dels = append(dels, clientv3.OpDelete(k))
	}
	resp, err := etcd.Txn(ctx).If(cmps...).Then(dels...).Commit()
	if err != nil {
		return fmt.Errorf("harness: delete service %s/%s from etcd: %w", svc.Namespace, svc.Name, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("harness: delete service %s/%s from etcd: one of %v is missing", svc.Namespace, svc.Name, keys)
	}
	return nil
}

// APIServerPid is the process ID of the running kube-apiserver: a new one
// after each StartAPIServer.
func (cp *ControlPlane) APIServerPid() int {
	cp.t.Helper()
	if cp.apiserver == nil || cp.apiserver.Exited() {
		cp.t.Fatalf("harness: APIServerPid: the API server is not running")
	}
	return cp.apiserver.Pid()
}
