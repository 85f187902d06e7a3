// Command kube-node is a multi-call binary holding the node agents of Pilothouse's local
// clusters with real pods: kubelet and kube-proxy, linked once, from the same
// k8s.io/kubernetes version as the control plane in ../../../cmd/kube.
//
// It dispatches on the name it was invoked by (a symlink such as bin/kubelet -> kube-node),
// or on its first argument (kube-node kubelet --config ...).
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // JSON log format
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics
	_ "k8s.io/component-base/metrics/prometheus/version"  // version metric
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
)

var commands = map[string]func() int{
	"kubelet": func() int {
		return cli.Run(kubelet.NewKubeletCommand(context.Background()))
	},
	"kube-proxy": func() int {
		return cli.Run(proxy.NewProxyCommand())
	},
}

func main() {
	name := filepath.Base(os.Args[0])
	if _, ok := commands[name]; !ok && len(os.Args) > 1 {
		// Invoked as "kube-node <command> args...": shift so the command sees its own argv.
		name = os.Args[1]
		os.Args = os.Args[1:]
	}
	run, ok := commands[name]
	if !ok {
		names := make([]string, 0, len(commands))
		for n := range commands {
			names = append(names, n)
		}
		sort.Strings(names)
		fmt.Fprintf(os.Stderr, "usage: kube-node {%s} [args...]\n", strings.Join(names, "|"))
		os.Exit(2)
	}
	os.Exit(run())
}
