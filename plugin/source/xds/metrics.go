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

	pushes = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: "meshdns",
		Name:      "xds_pushes_total",
		Help:      "Pushes received from the xDS server, by source and result (ack, nack).",
	}, []string{"source", "result"})
)
