// Command pilot-discovery is Istio's istiod (pilot-discovery), built from the
// istio.io/istio module so the integration tests can run a real istiod
// without a container image or a release download. It only executes
// Istio's own root command; see ../../README.md.
package main

import (
	"os"

	"istio.io/istio/pilot/cmd/pilot-discovery/app"
	"istio.io/istio/pkg/log"
)

func main() {
	log.EnableKlogWithCobra()
	if err := app.NewRootCommand().Execute(); err != nil {
		log.Error(err)
		os.Exit(1)
	}
}
