// Command istioctl is Istio's istioctl, built from the istio.io/istio module
// so the VM tests can onboard a VM the way Istio's guide does
// (`istioctl x workload entry configure`) without a release download. It
// only executes Istio's own root command; see ../../README.md.
package main

import (
	"fmt"
	"os"

	// Every client auth plugin, as Istio's own main imports them.
	_ "k8s.io/client-go/plugin/pkg/client/auth"

	"istio.io/istio/istioctl/cmd"
	"istio.io/istio/pkg/log"
)

func main() {
	if err := cmd.ConfigAndEnvProcessing(); err != nil {
		fmt.Fprintf(os.Stderr, "Could not initialize: %v\n", err)
		os.Exit(cmd.GetExitCode(err))
	}
	root := cmd.GetRootCmd(os.Args[1:])
	log.EnableKlogWithCobra()
	if err := root.Execute(); err != nil {
		os.Exit(cmd.GetExitCode(err))
	}
}
