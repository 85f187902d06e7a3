// Command coredns is the cluster DNS of Pilothouse's local clusters with real nodes: CoreDNS
// with only the plugins a test cluster needs (kubernetes, bind, forward, cache, errors, health,
// ready), so Service names such as redis.pilothouse-system.svc resolve in pods as on any
// cluster. CoreDNS's own main links every plugin and its cloud SDKs; this one compiles in a
// fraction of the time.
package main

import (
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/ready"

	"github.com/coredns/coredns/coremain"
)

func main() {
	coremain.Run()
}
