#!/usr/bin/env bash
# Builds kube-apiserver and etcd from the pinned Go modules in hack/controlplane
# and caches them outside the repository, so every clone on this machine reuses
# them. Prints the directory holding both binaries (usable as
# KUBEBUILDER_ASSETS). Prebuilt downloads are not available here, by design.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
mod="$here/controlplane"
key=$(cat "$mod/go.mod" "$mod/go.sum" | sha256sum | cut -c1-12)
cache="${KEYWARDEN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/keywarden}"
dir="$cache/controlplane/k8s-v1.36.3-etcd-v3.6.8-$key"
if [[ -x "$dir/kube-apiserver" && -x "$dir/etcd" ]]; then
  echo "$dir"
  exit 0
fi
mkdir -p "$cache/controlplane"
# Serialise concurrent builds (make test and make demo started together).
exec 9>"$cache/controlplane/.lock"
flock 9
if [[ ! ( -x "$dir/kube-apiserver" && -x "$dir/etcd" ) ]]; then
  tmp=$(mktemp -d "$cache/controlplane/.build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  echo "building kube-apiserver and etcd from Go modules (first time only, ~7 min on 2 cores)..." >&2
  (cd "$mod" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$tmp/etcd" go.etcd.io/etcd/server/v3) >&2
  (cd "$mod" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver) >&2
  mv "$tmp" "$dir"
  trap - EXIT
fi
echo "$dir"
