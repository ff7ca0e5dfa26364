// Command istio-dns runs Istio's own agent DNS proxy
// (istio.io/istio/pkg/dns/client.LocalDNSServer) with a fixed NDS NameTable
// read from a file, as a peer to compare meshdns with. It does not talk to
// istiod.
//
// The table file is an istio.networking.nds.v1.NameTable in protojson:
//
//	{"table": {"reviews.bookinfo.svc.cluster.local": {"ips": ["10.96.0.10"],
//	  "registry": "Kubernetes", "shortname": "reviews", "namespace": "bookinfo"}}}
//
// Upstream servers and search domains come from /etc/resolv.conf, as in the
// agent; see ../../README.md to give it a test resolv.conf. SIGHUP reloads
// the table (the agent rebuilds everything on every push too); SIGTERM or
// SIGINT stops it.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	dnsclient "istio.io/istio/pkg/dns/client"
	dnsproto "istio.io/istio/pkg/dns/proto"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:15053", "host:port to serve DNS on, UDP and TCP")
	namespace := flag.String("namespace", "default", "namespace of the proxy: decides which Kubernetes short names (name.) resolve")
	domain := flag.String("domain", "", "DNS domain of the proxy, as the agent passes it: NAMESPACE.svc.cluster.local "+
		"(the leading namespace label is optional); default NAMESPACE.svc.cluster.local")
	tablePath := flag.String("table", "", "NameTable file in protojson (required)")
	flag.Parse()
	if *tablePath == "" {
		log.Fatal("istio-dns: -table is required")
	}
	if *domain == "" {
		*domain = *namespace + ".svc.cluster.local"
	}

	table, err := loadTable(*tablePath)
	if err != nil {
		log.Fatalf("istio-dns: %v", err)
	}
	server, err := dnsclient.NewLocalDNSServer(*namespace, *domain, *addr)
	if err != nil {
		log.Fatalf("istio-dns: %v", err)
	}
	begin := time.Now()
	server.UpdateLookupTable(table)
	log.Printf("istio-dns: lookup table built from %d hosts in %s", len(table.Table), time.Since(begin))
	server.StartDNS()
	log.Printf("istio-dns: serving on %s (namespace %s, domain %s)", *addr, *namespace, *domain)

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	for sig := range signals {
		if sig != syscall.SIGHUP {
			break
		}
		table, err := loadTable(*tablePath)
		if err != nil {
			log.Printf("istio-dns: reload: %v (keeping the old table)", err)
			continue
		}
		begin := time.Now()
		server.UpdateLookupTable(table)
		log.Printf("istio-dns: lookup table rebuilt from %d hosts in %s", len(table.Table), time.Since(begin))
	}
	server.Close()
}

func loadTable(path string) (*dnsproto.NameTable, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	table := &dnsproto.NameTable{}
	if err := protojson.Unmarshal(data, table); err != nil {
		return nil, fmt.Errorf("decode %s: %w", path, err)
	}
	return table, nil
}
