package meshdns

// The tests read Corefiles with every source; a binary links those it
// imports (cmd/coredns, cmd/meshdns).
import (
	_ "github.com/meshdns/meshdns/plugin/source/file"
	_ "github.com/meshdns/meshdns/plugin/source/kubernetes"
	_ "github.com/meshdns/meshdns/plugin/source/xds"
)
