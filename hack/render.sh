#!/usr/bin/env bash
# Regenerates what is derived from the chart and the CRD:
#   charts/dataforest-operator/crds/aiapps.dataforest.dev.yaml  a copy of crds/aiapps.dataforest.dev.yaml
#   deploy/operator.yaml   `helm template` of the chart with default values in namespace
#                          dataforest-system, CRD included, after a Namespace object
# With --check it changes nothing and fails when either file is out of date.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

check=false
case ${1:-} in
  --check) check=true ;;
  "") ;;
  *) echo "usage: hack/render.sh [--check]" >&2; exit 2 ;;
esac

namespace=dataforest-system
release=dataforest-operator
chart=charts/dataforest-operator
crd=crds/aiapps.dataforest.dev.yaml
chart_crd=$chart/crds/aiapps.dataforest.dev.yaml
out=deploy/operator.yaml

helm=$(bash hack/helm.sh)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The chart's CRD first: the manifests include it.
if $check; then
  if ! cmp -s "$crd" "$chart_crd"; then
    echo "$chart_crd differs from $crd: run hack/render.sh (or make render)" >&2
    diff -u "$crd" "$chart_crd" | head -n 20 >&2 || true
    exit 1
  fi
else
  cp "$crd" "$chart_crd"
fi

{
  echo "# DO_NOT_EDIT: rendered by hack/render.sh (make render) from $chart with its default"
  echo "# values, for namespace $namespace. Change the chart or its values, then re-render."
  echo "# Install: kubectl apply --server-side -f $out"
  echo "---"
  echo "apiVersion: v1"
  echo "kind: Namespace"
  echo "metadata:"
  echo "  name: $namespace"
  echo "  labels:"
  echo "    app.kubernetes.io/name: dataforest-operator"
  echo "    app.kubernetes.io/part-of: dataforest-operator"
  echo "    # The operator's pods meet the restricted Pod Security Standard."
  echo "    pod-security.kubernetes.io/enforce: restricted"
  "$helm" template "$release" "$chart" --namespace "$namespace" --include-crds
} > "$work/operator.yaml"

if $check; then
  if ! cmp -s "$work/operator.yaml" "$out"; then
    echo "$out is not what the chart renders: run hack/render.sh (or make render)" >&2
    diff -u "$out" "$work/operator.yaml" | head -n 40 >&2 || true
    exit 1
  fi
  echo "$out and $chart_crd are up to date"
else
  mv "$work/operator.yaml" "$out"
  echo "rendered $out and copied $chart_crd" >&2
fi
