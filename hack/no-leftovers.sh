#!/usr/bin/env bash
# Fails when a control plane started by the tests is still running: every test must
# stop what it starts, also on failure. Their command lines name a dataforest-testenv-
# folder, which sets them apart from any other kube-apiserver on the machine.
set -euo pipefail
if left=$(pgrep -af 'dataforest-testenv-' | grep -v -e pgrep -e no-leftovers); then
  echo "processes left behind by the tests:" >&2
  echo "$left" >&2
  exit 1
fi
echo "no control-plane process left behind"
