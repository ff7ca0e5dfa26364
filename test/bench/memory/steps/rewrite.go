//go:build rewrite

package main

import (
	_ "github.com/coredns/coredns/plugin/rewrite"
	_ "github.com/coredns/coredns/plugin/template"
)

func init() {
	plugins = append(plugins, "rewrite", "template")
}
