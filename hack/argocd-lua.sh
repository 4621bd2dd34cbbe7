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
# shellcheck source=hack/lib/cache.sh
source "$repo/hack/lib/cache.sh"
src=$repo/hack/argocd-lua

build() { build_go_module "$src" "$1" "the Argo CD Lua runner (gopher-lua)"; }
cached "$(cache_folder argocd-lua "$src/go.mod" "$src/go.sum" "$src/main.go")/argocd-lua" build
