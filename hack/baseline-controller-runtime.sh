#!/usr/bin/env bash
# Prints the path of the controller-runtime baseline operator of dataforest-bench
# (bench/baseline/controller-runtime/), building it on first use from the Go module proxy
# into ${XDG_CACHE_HOME:-$HOME/.cache}/dataforest-operator/baseline-controller-runtime-<hash>/,
# where <hash> is that of its go.mod, go.sum and Go files: a change to them builds it again.
#
# Progress goes to stderr; the path is the only thing on stdout.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=hack/lib/cache.sh
source "$repo/hack/lib/cache.sh"
src=$repo/bench/baseline/controller-runtime

# The C locale sorts the glob the same way on every machine, so the hash is stable.
export LC_ALL=C
files=("$src/go.mod" "$src/go.sum" "$src"/*.go)
build() { build_go_module "$src" "$1" "the controller-runtime baseline"; }
cached "$(cache_folder baseline-controller-runtime "${files[@]}")/baseline-controller-runtime" build
