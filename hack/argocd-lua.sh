#!/usr/bin/env bash
# Prints the path of the Argo CD Lua test runner (hack/argocd-lua/), building it on first
# use from the Go module proxy (gopher-lua, Argo CD's Lua engine, and the JSON and YAML
# libraries Argo CD's tests use) into
# ${XDG_CACHE_HOME:-$HOME/.cache}/dataforest-operator/argocd-lua-<hash>/, where <hash> is
# that of the runner's source, go.mod and go.sum: a change to them builds it again.
#
# Progress goes to stderr; the path is the only thing on stdout.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
src=$repo/hack/argocd-lua

hash=$(cat "$src/go.mod" "$src/go.sum" "$src/main.go" | sha256sum | cut -c1-12)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/dataforest-operator/argocd-lua-$hash
bin=$cache/argocd-lua
if [[ -x $bin ]]; then
  echo "$bin"
  exit 0
fi

mkdir -p "$cache"
# One builder at a time: a second caller waits for the first and then finds the binary.
exec 9>"$cache/.lock"
flock 9
if [[ ! -x $bin ]]; then
  command -v go >/dev/null || { echo "go is needed to build the Argo CD Lua runner" >&2; exit 1; }
  echo "building the Argo CD Lua runner (gopher-lua) from the Go module proxy into $cache (first time only)" >&2
  stage=$(mktemp -d "$cache/build.XXXXXX")
  trap 'rm -rf "$stage"' EXIT
  # -mod=readonly: go.sum is committed and must already hold every module.
  if ! (cd "$src" && CGO_ENABLED=0 GOFLAGS=-mod=readonly GOWORK=off \
      go build -trimpath -buildvcs=false -o "$stage/argocd-lua" . >&2); then
    echo "building the Argo CD Lua runner failed" >&2
    exit 1
  fi
  mv "$stage/argocd-lua" "$bin"
  echo "built $bin" >&2
fi
echo "$bin"
