//go:build meshdns

package main

import (
	_ "github.com/meshdns/meshdns/plugin/meshdns"
	_ "github.com/meshdns/meshdns/plugin/source/file"
)

func init() { plugins = append(plugins, "meshdns") }
