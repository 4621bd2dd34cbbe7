#!/usr/bin/env bash
# usage: control-plane-assets.sh [kube-controller-manager]
#
# Prints the folder that holds kube-apiserver and kubectl (and etcd, when
# KUBEBUILDER_ASSETS names it) for the local control plane, building what is missing
# on first use. With the argument kube-controller-manager it prints the folder that
# holds kube-controller-manager instead (the tests that need kube-controller-manager's
# controllers, such as ClusterRole aggregation, run it).
#
# - KUBEBUILDER_ASSETS, when set, must name a folder with all three (what
#   setup-envtest provides); it is used as it is. setup-envtest ships no
#   kube-controller-manager: it is taken from there when present, otherwise built into
#   the cache below.
# - Otherwise kube-apiserver, kubectl and kube-controller-manager are built from the Go
#   module proxy through the wrapper module in hack/k8s (its go.mod pins the Kubernetes
#   version) into ${XDG_CACHE_HOME:-$HOME/.cache}/dataforest-operator/k8s-<version>/; a
#   fresh clone on the same machine reuses the cache. etcd then comes from the
#   etcd-bin-vendored-linux-amd64 crate, which testenv depends on.
#
# Progress goes to stderr; the folder is the only thing on stdout.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
need=(kube-apiserver kubectl etcd)
want=${1:-control-plane}
case $want in
  control-plane | kube-controller-manager) ;;
  *) echo "usage: $0 [kube-controller-manager]" >&2; exit 2 ;;
esac

if [[ $want == kube-controller-manager && -n ${KUBEBUILDER_ASSETS:-} && -x $KUBEBUILDER_ASSETS/kube-controller-manager ]]; then
  echo "$KUBEBUILDER_ASSETS"
  exit 0
fi

if [[ $want == control-plane && -n ${KUBEBUILDER_ASSETS:-} ]]; then
  for bin in "${need[@]}"; do
    if [[ ! -x $KUBEBUILDER_ASSETS/$bin ]]; then
      echo "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS has no executable $bin" >&2
      exit 1
    fi
  done
  echo "$KUBEBUILDER_ASSETS"
  exit 0
fi

version=$(grep -oE 'k8s\.io/kubernetes v[0-9]+\.[0-9]+\.[0-9]+' "$repo/hack/k8s/go.mod" | head -n 1 | cut -d' ' -f2)
[[ $version =~ ^v([0-9]+)\.([0-9]+)\.[0-9]+$ ]] || { echo "cannot read the Kubernetes version from hack/k8s/go.mod" >&2; exit 1; }
major=${BASH_REMATCH[1]} minor=${BASH_REMATCH[2]}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/dataforest-operator/k8s-$version
mkdir -p "$cache"

# One builder at a time: a second caller waits for the first and then finds the files.
exec 9>"$cache/.lock"
flock 9

build() { # build <name> <package>
  local name=$1 pkg=$2 count=0
  command -v go >/dev/null || { echo "go is needed to build $name (Go 1.26 or newer)" >&2; exit 1; }
  echo "building $name $version from the Go module proxy into $cache (first time only; about 10 to 15 minutes on 2 cores)" >&2
  local ldflags="-X k8s.io/component-base/version.gitVersion=$version -X k8s.io/component-base/version.gitMajor=$major -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
  # -v names each package as it is compiled; a line every 100 shows the build moving.
  (cd "$repo/hack/k8s" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -v -trimpath -ldflags "$ldflags" -o "$cache/$name.partial" "$pkg" 2>&1) |
    while IFS= read -r line; do
      count=$((count + 1))
      if [[ $line == *" "* ]]; then echo "  $line" >&2; fi
      if (( count % 100 == 0 )); then echo "  $name: $count packages compiled..." >&2; fi
    done
  [[ ${PIPESTATUS[0]} == 0 && -x $cache/$name.partial ]] || { echo "building $name failed" >&2; exit 1; }
  mv "$cache/$name.partial" "$cache/$name"
  echo "built $cache/$name" >&2
}

if [[ $want == control-plane ]]; then
  [[ -x $cache/kube-apiserver ]] || build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
  [[ -x $cache/kubectl ]] || build kubectl k8s.io/kubernetes/cmd/kubectl
fi
# Built with the others, so the first `make test` or `make assets` builds it up front
# (a few minutes more: it shares most packages with kube-apiserver).
[[ -x $cache/kube-controller-manager ]] || build kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager

echo "$cache"
