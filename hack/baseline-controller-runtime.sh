#!/usr/bin/env bash
# Prints the path of the controller-runtime baseline operator of dataforest-bench
# (bench/baseline/controller-runtime/), building it on first use from the Go module proxy
# into ${XDG_CACHE_HOME:-$HOME/.cache}/dataforest-operator/baseline-controller-runtime-<hash>/,
# where <hash> is that of its go.mod, go.sum and Go files: a change to them builds it again.
#
# Progress goes to stderr; the path is the only thing on stdout.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
src=$repo/bench/baseline/controller-runtime

# The C locale sorts the glob the same way on every machine, so the hash is stable.
hash=$(cd "$src" && export LC_ALL=C && cat go.mod go.sum ./*.go | sha256sum | cut -c1-12)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/dataforest-operator/baseline-controller-runtime-$hash
bin=$cache/baseline-controller-runtime
if [[ -x $bin ]]; then
  echo "$bin"
  exit 0
fi

mkdir -p "$cache"
# One builder at a time: a second caller waits for the first and then finds the binary.
exec 9>"$cache/.lock"
flock 9
if [[ ! -x $bin ]]; then
  command -v go >/dev/null || { echo "go is needed to build the controller-runtime baseline" >&2; exit 1; }
  echo "building the controller-runtime baseline from the Go module proxy into $cache (first time only, a few minutes)" >&2
  stage=$(mktemp -d "$cache/build.XXXXXX")
  trap 'rm -rf "$stage"' EXIT
  # -mod=readonly: go.sum is committed and must already hold every module.
  if ! (cd "$src" && CGO_ENABLED=0 GOFLAGS=-mod=readonly GOWORK=off \
      go build -trimpath -buildvcs=false -o "$stage/baseline-controller-runtime" . >&2); then
    echo "building the controller-runtime baseline failed" >&2
    exit 1
  fi
  mv "$stage/baseline-controller-runtime" "$bin"
  echo "built $bin" >&2
fi
echo "$bin"
