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
  pkgs=()
  for b in "${bins[@]}"; do
    [[ -x "$dir/$b" ]] && continue
    case $b in
      etcd) pkgs+=(go.etcd.io/etcd/server/v3) ;;
      *) pkgs+=("k8s.io/kubernetes/cmd/$b") ;;
    esac
  done
  echo "building the control plane from Go modules (first time only: ${pkgs[*]})..." >&2
  # One go build for all of them: the packages they share compile once and
  # one binary links while the others still compile, so both cores stay busy.
  # No DWARF (-dwarf=false, -w) and no symbol table (-s): nobody debugs these
  # binaries, and the compiler and linker skip that work. Build into a
  # temporary directory and rename, so an interrupted build never leaves a
  # half-written binary that looks complete.
  start=$SECONDS
  tmp="$dir/.build.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  (cd "$mod" && CGO_ENABLED=0 go build -trimpath -gcflags=all=-dwarf=false -ldflags='-s -w' -o "$tmp/" "${pkgs[@]}") >&2
  # go build names etcd's binary after its package path without the major
  # version suffix: server.
  [[ -x "$tmp/server" ]] && mv "$tmp/server" "$tmp/etcd"
  for b in "${bins[@]}"; do
    [[ -x "$tmp/$b" ]] && mv "$tmp/$b" "$dir/$b"
  done
  rm -rf "$tmp"
  complete || { echo "control-plane build left $dir incomplete" >&2; exit 1; }
  echo "control plane built in $((SECONDS - start)) s" >&2
fi
echo "$dir"
