#!/usr/bin/env bash
# Prints the path of a helm v3 binary, building it on first use from the Go module proxy
# (`go install helm.sh/helm/v3/cmd/helm@<version>`) into
# ${XDG_CACHE_HOME:-$HOME/.cache}/dataforest-operator/helm-<version>/, where a second run
# and a fresh clone on the same machine find it. HELM, when set, names a helm v3 binary
# to use as it is.
#
# Progress goes to stderr; the path is the only thing on stdout.
set -euo pipefail

version=v3.19.0
# The Kubernetes version helm assumes without --kube-version (Capabilities.KubeVersion,
# lint's deprecation checks): what helm's own Makefile sets for v3.19, built on
# client-go v0.34.
kube_major=1 kube_minor=34

if [[ -n ${HELM:-} ]]; then
  [[ -x $HELM ]] || { echo "HELM=$HELM is not an executable" >&2; exit 1; }
  echo "$HELM"
  exit 0
fi

cache=${XDG_CACHE_HOME:-$HOME/.cache}/dataforest-operator/helm-$version
bin=$cache/helm
if [[ -x $bin ]]; then
  echo "$bin"
  exit 0
fi

mkdir -p "$cache"
# One builder at a time: a second caller waits for the first and then finds the binary.
exec 9>"$cache/.lock"
flock 9
if [[ ! -x $bin ]]; then
  command -v go >/dev/null || { echo "go is needed to build helm $version" >&2; exit 1; }
  echo "building helm $version from the Go module proxy into $cache (first time only; a few minutes on 2 cores)" >&2
  stage=$(mktemp -d "$cache/build.XXXXXX")
  trap 'rm -rf "$stage"' EXIT
  # The ldflags are those of helm's Makefile: without them `helm version` says nothing
  # and helm assumes Kubernetes v1.20, which this chart's kubeVersion refuses.
  ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$version"
  for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    ldflags+=" -X $pkg.k8sVersionMajor=$kube_major -X $pkg.k8sVersionMinor=$kube_minor"
  done
  # Built outside any module, so the repository's files never steer the build.
  if ! (cd "$stage" && GOBIN=$stage CGO_ENABLED=0 GOFLAGS= GO111MODULE=on GOWORK=off \
      go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$version" >&2); then
    echo "building helm $version failed" >&2
    exit 1
  fi
  mv "$stage/helm" "$bin"
  echo "built $bin" >&2
fi
echo "$bin"
