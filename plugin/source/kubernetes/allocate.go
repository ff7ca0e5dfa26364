package kubernetes

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"net/netip"
	"slices"
	"strings"

	apinetworking "istio.io/api/networking/v1alpha3"
)

// allocKey is one host of one ServiceEntry ("ns/name").
type allocKey struct{ se, host string }

// The ranges istiod allocates from: 240.240.0.0/16 and 2001:2::/48.
var (
	allocV4 = netip.MustParseAddr("240.240.0.0").As4()
	allocV6 = netip.MustParseAddr("2001:2::").As16()
)

// v4Slots excludes 240.240.0.0 and 240.240.255.255.
const v4Slots = 1<<16 - 2

// allocate gives every ServiceEntry host that nothing gave an address (no
// spec.addresses, no status.addresses) one IPv4 and one IPv6 address. An
// address is a hash of namespace/name/host, so every node computes the same
// one without talking to the others. On a collision, with another allocation
// or with any address in a spec or status, the next address is probed; the
// older entry keeps its address, so new entries never move existing ones.
// Eligibility is istiod's: not for resolution NONE, not when opted out by
// label, wildcard hosts only with DYNAMIC_DNS.
func allocate(ses []*serviceEntry) map[allocKey][]netip.Addr {
	taken := map[netip.Addr]bool{}
	type want struct {
		se   *serviceEntry
		host string
	}
	var wants []want
	for _, se := range ses {
		for _, a := range se.addrs {
			taken[a] = true
		}
		for _, s := range se.status {
			taken[s.addr] = true
		}
		if se.specAddrs || se.noAlloc || se.resolution == apinetworking.ServiceEntry_NONE {
			continue
		}
		for _, h := range se.hosts {
			wild := strings.HasPrefix(h, "*")
			if (wild && se.resolution != apinetworking.ServiceEntry_DYNAMIC_DNS) || len(statusAddrs(se, h)) > 0 {
				continue
			}
			wants = append(wants, want{se, h})
		}
	}
	slices.SortFunc(wants, func(a, b want) int {
		return cmp.Or(olderFirst(a.se, b.se), strings.Compare(a.host, b.host))
	})
	out := make(map[allocKey][]netip.Addr, len(wants))
	for _, w := range wants {
		sum := sha256.Sum256([]byte(w.se.ns + "/" + w.se.name + "/" + w.host))
		v4 := probe(taken, binary.BigEndian.Uint64(sum[0:8]), addrV4)
		v6 := probe(taken, binary.BigEndian.Uint64(sum[8:16]), addrV6)
		out[allocKey{w.se.key(), w.host}] = []netip.Addr{v4, v6}
	}
	return out
}

func probe(taken map[netip.Addr]bool, h uint64, addr func(uint64) netip.Addr) netip.Addr {
	for ; ; h++ {
		if a := addr(h); !taken[a] {
			taken[a] = true
			return a
		}
	}
}

func addrV4(h uint64) netip.Addr {
	b := allocV4
	n := h%v4Slots + 1
	b[2], b[3] = byte(n>>8), byte(n)
	return netip.AddrFrom4(b)
}

// addrV6 fills the low 64 bits of 2001:2::/48 (zero excluded).
func addrV6(h uint64) netip.Addr {
	b := allocV6
	binary.BigEndian.PutUint64(b[8:], h%(1<<64-1)+1)
	return netip.AddrFrom16(b)
}
