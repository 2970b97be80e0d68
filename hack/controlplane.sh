#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager (namespace deletion and
# garbage collection in tests) and etcd from the pinned Go modules in hack/controlplane
# and caches them outside the repository, so every clone on this machine reuses
# them. Prints the directory holding both binaries (usable as
# KUBEBUILDER_ASSETS). Prebuilt downloads are not available here, by design.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
mod="$here/controlplane"
# The cache is keyed by the pinned versions (read from go.mod), so adding a
# binary reuses the ones already built.
k8s=$(awk '$1=="k8s.io/kubernetes"{print $2}' "$mod/go.mod")
etcd=$(awk '$1=="go.etcd.io/etcd/server/v3"{print $2}' "$mod/go.mod")
cache="${KEYWARDEN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/keywarden}"
dir="$cache/controlplane/k8s-$k8s-etcd-$etcd"
bins=(etcd kube-apiserver kube-controller-manager)
complete() { for b in "${bins[@]}"; do [[ -x "$dir/$b" ]] || return 1; done; }
if complete; then
  echo "$dir"
  exit 0
fi
mkdir -p "$cache/controlplane"
# Serialise concurrent builds (make test and make demo started together).
exec 9>"$cache/controlplane/.lock"
flock 9
if ! complete; then
  mkdir -p "$dir"
  echo "building the control plane from Go modules (first time only, ~7 min on 2 cores)..." >&2
  for b in "${bins[@]}"; do
    [[ -x "$dir/$b" ]] && continue
    case $b in
      etcd) pkg=go.etcd.io/etcd/server/v3 ;;
      *) pkg=k8s.io/kubernetes/cmd/$b ;;
    esac
    # Build to a temporary name and rename, so an interrupted build never
    # leaves a half-written binary that looks complete.
    (cd "$mod" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$dir/.$b.tmp" "$pkg") >&2
    mv "$dir/.$b.tmp" "$dir/$b"
  done
fi
echo "$dir"
