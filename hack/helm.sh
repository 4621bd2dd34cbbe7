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

# The ldflags are those of helm's Makefile: without them `helm version` says nothing and
# helm assumes Kubernetes v1.20, which this chart's kubeVersion refuses.
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$version"
for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
  ldflags+=" -X $pkg.k8sVersionMajor=$kube_major -X $pkg.k8sVersionMinor=$kube_minor"
done

# shellcheck source=hack/lib/go-tool.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/go-tool.sh"
go_tool helm "$version" helm.sh/helm/v3/cmd/helm "$ldflags" HELM
