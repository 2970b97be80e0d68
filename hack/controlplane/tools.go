//go:build tools

// Package controlplane pins the kube-apiserver and etcd that envtest, the e2e
// suite, the demo and the benchmarks run. Nothing here is imported by Keywarden;
// hack/controlplane.sh builds the two binaries from this module and caches them
// outside the repository.
package controlplane

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
)
