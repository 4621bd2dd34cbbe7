#!/usr/bin/env bash
# Runs the tests of the Argo CD health check and actions for AiApps,
# deploy/argocd/resource_customizations/dataforest.dev/AiApp/{health_test.yaml,
# actions/action_test.yaml}, the way Argo CD's own tests run them: on gopher-lua (Argo CD's
# Lua engine, built by hack/argocd-lua.sh) with the libraries Argo CD opens, and on Debian's
# lua5.1 as well. lua5.1 is installed with apt-get on first use when missing (as root).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

lua=$(command -v lua5.1 || true)
if [[ -z $lua ]]; then
  if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null; then
    echo "lua5.1 is needed (Debian: apt-get install lua5.1)" >&2
    exit 1
  fi
  echo "installing lua5.1 with apt-get (first time only)" >&2
  # One installer at a time: apt holds its own lock, but a second caller would fail on it.
  exec 9>"/tmp/dataforest-operator-apt.lock"
  flock 9
  if ! command -v lua5.1 >/dev/null; then
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends lua5.1 >&2
  fi
  lua=$(command -v lua5.1)
fi
runner=$(bash "$repo/hack/argocd-lua.sh")
exec "$runner" -lua51 "$lua" "$repo/deploy/argocd/resource_customizations"
