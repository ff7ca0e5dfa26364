//go:build forward

package main

import (
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/metrics"
)

func init() { plugins = append(plugins, "forward", "prometheus") }
