"""A real, local Kubernetes control plane for development and tests.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler run as plain
processes bound to 127.0.0.1 (binaries from hack/build-control-plane.sh). There
are no nodes, so pods stay Pending. Not used by the operator at runtime.
"""
