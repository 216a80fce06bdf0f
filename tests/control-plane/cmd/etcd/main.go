// Command etcd is etcd's own server, built from its module at the version Kubernetes v1.37.2
// requires (go.etcd.io/etcd/server/v3 v3.7.0), for the control-plane tests.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
