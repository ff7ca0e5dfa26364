//go:build xds

package main

import _ "github.com/meshdns/meshdns/plugin/source/xds"
