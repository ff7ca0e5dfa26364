package xds

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"strings"

	"github.com/meshdns/meshdns/plugin/source"
	"github.com/meshdns/meshdns/plugin/source/xds/ads"
	"github.com/meshdns/meshdns/plugin/source/xds/nds"
	"github.com/meshdns/meshdns/plugin/table"
)

// TypeURL is the NDS resource type.
const TypeURL = "type.googleapis.com/istio.networking.nds.v1.NameTable"

// errRegistry marks an unknown NameInfo.registry.
var errRegistry = errors.New("invalid_registry")

// decode returns the table a push carries, or an error for a push that cannot
// be applied at all (to NACK). A push without resources returns nil: istiod
// never sends one, and Istio's agent ignores it rather than clear its table.
func decode(resp *ads.DiscoveryResponse) (*nds.NameTable, error) {
	if resp.GetTypeUrl() != TypeURL {
		return nil, fmt.Errorf("unexpected type %q", resp.GetTypeUrl())
	}
	var nt *nds.NameTable
	for i, r := range resp.GetResources() {
		part := &nds.NameTable{}
		if err := r.UnmarshalTo(part); err != nil {
			return nil, fmt.Errorf("resource %d: %w", i, err)
		}
		// istiod sends one; several would be parts of one table.
		if nt == nil {
			nt = part
		} else {
			if nt.Table == nil {
				nt.Table = map[string]*nds.NameTable_NameInfo{}
			}
			maps.Copy(nt.Table, part.Table)
		}
	}
	return nt, nil
}

// entries converts a table, leaving out (and returning) the hosts that the
// file source would refuse, so a snapshot of the rest always loads.
func entries(nt *nds.NameTable) ([]table.Entry, []source.Rejection) {
	out := make([]table.Entry, 0, len(nt.GetTable()))
	var bad []source.Rejection
	for host, info := range nt.GetTable() {
		e, err := entry(host, info)
		if err != nil {
			reason := table.Reason(err)
			if errors.Is(err, errRegistry) {
				reason = errRegistry.Error()
			}
			bad = append(bad, source.Rejection{Object: host, Reason: reason, Err: err})
			continue
		}
		out = append(out, e)
	}
	return out, bad
}

// entry mirrors the file source's checks. NDS has no ports, endpoint names
// or CNAME targets: a headless service's pods come as hosts of their own.
func entry(host string, info *nds.NameTable_NameInfo) (table.Entry, error) {
	reg, err := table.ParseRegistry(info.GetRegistry())
	if err != nil {
		return table.Entry{}, fmt.Errorf("%w: %s: %v", errRegistry, host, err)
	}
	e := table.Entry{Host: host, Registry: reg}
	short, ns := info.GetShortname(), info.GetNamespace()
	if short != "" || ns != "" {
		if reg != table.Kubernetes || !strings.HasPrefix(strings.ToLower(host), strings.ToLower(short+"."+ns+".svc.")) {
			return e, fmt.Errorf("%w: %s: shortname %q and namespace %q need registry Kubernetes and a host <shortname>.<namespace>.svc.<domain>",
				table.ErrHost, host, short, ns)
		}
	}
	e.Addrs = make([]netip.Addr, 0, len(info.GetIps()))
	for _, s := range info.GetIps() {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return e, fmt.Errorf("%w: %s: %v", table.ErrAddress, host, err)
		}
		e.Addrs = append(e.Addrs, a)
	}
	return table.Normalize(e)
}
