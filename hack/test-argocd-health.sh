#!/usr/bin/env bash
# Runs deploy/argocd/health.lua against sample AiApp statuses (hack/argocd-health-cases.lua).
# Argo CD evaluates health checks with gopher-lua, a Lua 5.1, so the cases run on lua5.1;
# Debian's lua5.1 package is installed on first use when missing (as root).
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
exec "$lua" "$repo/hack/argocd-health-cases.lua" "$repo/deploy/argocd/health.lua"
