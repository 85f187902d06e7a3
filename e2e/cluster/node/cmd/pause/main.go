// Command pause is the sandbox ("pause") container of every pod on Pilothouse's local
// nodes: it holds the pod's namespaces, reaps orphaned children (it is PID 1 of the pod when
// the process namespace is shared) and exits on SIGINT or SIGTERM. Nothing can be pulled
// on the machines the local cluster runs on, so launcher builds this into a one-layer image
// itself instead of using registry.k8s.io/pause.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
