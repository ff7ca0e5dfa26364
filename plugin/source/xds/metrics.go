package xds

import (
	"github.com/coredns/coredns/plugin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	reconnects = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: "meshdns",
		Name:      "xds_reconnects_total",
		Help:      "Connection attempts to the xDS server after the first, by source.",
	}, []string{"source"})

	certExpiry = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: plugin.Namespace,
		Subsystem: "meshdns",
		Name:      "xds_cert_expiry_timestamp_seconds",
		Help:      "When the workload certificate the source holds from istiod's CA expires (Unix time), by source.",
	}, []string{"source"})

	renewals = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: "meshdns",
		Name:      "xds_cert_renewals_total",
		Help:      "Workload certificates asked of istiod's CA (the first one included), by source and result (ok, error).",
	}, []string{"source", "result"})

	pushes = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: "meshdns",
		Name:      "xds_pushes_total",
		Help:      "Pushes received from the xDS server, by source and result (ack, nack).",
	}, []string{"source", "result"})
)
