#!/usr/bin/env bash
# Regenerates what is derived from the chart and the CRD:
#   charts/dataforest-operator/templates/crds/aiapps.dataforest.dev.yaml
#       crds/aiapps.dataforest.dev.yaml (generated from src/crd.rs) as a chart template,
#       as cert-manager ships its CRDs: the same CRD with the chart's labels and, with
#       crds.keep, the annotation helm.sh/resource-policy: keep, behind crds.enabled;
#       so `helm upgrade` upgrades the CRD and `helm uninstall` keeps it.
#   deploy/operator.yaml
#       `helm template` of the chart with default values in namespace dataforest-system,
#       after a Namespace object; the plain manifests of the kustomize base in deploy/
#       (deploy/kustomization.yaml). Rendered with crds.keep=false and, after rendering,
#       without the label app.kubernetes.io/managed-by: Helm: Helm does not manage
#       these objects, kubectl or kustomize does.
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
chart_crd=$chart/templates/crds/aiapps.dataforest.dev.yaml
out=deploy/operator.yaml

helm=$(bash hack/helm.sh)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The CRD template: the generated CRD from its apiVersion line on, with the chart's
# labels and the keep annotation added to its metadata (right after metadata.name).
# The generated metadata holds only the name; anything else there, or text that Go
# templates would read as an action, stops the render rather than being mangled.
crd_template() {
  if grep -q '{{' "$crd"; then
    echo "$crd contains '{{': the chart template would read it as a template action" >&2
    exit 1
  fi
  cat <<'HEADER'
{{- /*
DO_NOT_EDIT: written by hack/render.sh (make render) from crds/aiapps.dataforest.dev.yaml,
which is generated from src/crd.rs (make generate). The generated CRD, with the chart's
labels and, with crds.keep, helm.sh/resource-policy: keep (helm uninstall leaves it).
*/}}
{{- if .Values.crds.enabled }}
HEADER
  awk '
    BEGIN { body = 0; meta = 0; named = 0 }
    !body && /^apiVersion:/ { body = 1 }
    !body { next }
    /^metadata:$/ { meta = 1; print; next }
    meta && /^[^ ]/ { meta = 0 }
    meta && /^  (labels|annotations):/ {
      print "the generated CRD has metadata." $1 " of its own: teach hack/render.sh to merge it" > "/dev/stderr"
      exit 1
    }
    { print }
    meta && /^  name: / && !named {
      named = 1
      print "  labels:"
      print "    {{- include \"dataforest-operator.labels\" . | nindent 4 }}"
      print "  {{- if .Values.crds.keep }}"
      print "  annotations:"
      print "    # helm uninstall leaves the CRD, so the AiApps stay (deleting it deletes them all)."
      print "    helm.sh/resource-policy: keep"
      print "  {{- end }}"
    }
    END {
      if (!named) { print "no metadata.name in the generated CRD" > "/dev/stderr"; exit 1 }
    }
  ' "$crd"
  echo '{{- end }}'
}
crd_template > "$work/crd-template.yaml"

if $check; then
  if ! cmp -s "$work/crd-template.yaml" "$chart_crd"; then
    echo "$chart_crd is not $crd as a template: run hack/render.sh (or make render)" >&2
    diff -u "$chart_crd" "$work/crd-template.yaml" | head -n 20 >&2 || true
    exit 1
  fi
else
  mkdir -p "$(dirname "$chart_crd")"
  cp "$work/crd-template.yaml" "$chart_crd"
fi

{
  echo "# DO_NOT_EDIT: rendered by hack/render.sh (make render) from $chart with its default"
  echo "# values, for namespace $namespace. Change the chart or its values, then re-render."
  echo "# Install: kubectl apply -k deploy/ (or -f $out); upgrade: kubectl apply --server-side"
  echo "# --force-conflicts -k deploy/. No app.kubernetes.io/managed-by label: Helm does not manage them."
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
  "$helm" template "$release" "$chart" --namespace "$namespace" --set crds.keep=false \
    | sed -e '/^ *app\.kubernetes\.io\/managed-by: "\{0,1\}Helm"\{0,1\}$/d'
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
  echo "rendered $out and $chart_crd" >&2
fi
