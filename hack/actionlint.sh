#!/usr/bin/env bash
# Checks the GitHub Actions workflows in .github/workflows/ with actionlint, building it
# on first use from the Go module proxy (`go install
# github.com/rhysd/actionlint/cmd/actionlint@<version>`) into
# ${XDG_CACHE_HOME:-$HOME/.cache}/dataforest-operator/actionlint-<version>/, as
# hack/helm.sh does for helm. ACTIONLINT, when set, names an actionlint binary to use as
# it is.
#
# actionlint runs shellcheck on the `run:` scripts: shellcheck is installed with apt-get
# on first use when missing (as root, as hack/test-argocd-health.sh does for lua5.1);
# elsewhere without it the scripts' shell is not checked, and this says so.
#
# Usage: hack/actionlint.sh [--path]   (--path: print the binary's path and check nothing)
# Progress goes to stderr; actionlint's findings to stdout; exit 1 when it finds any.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

version=v1.7.12

source "$repo/hack/lib/go-tool.sh"
bin=$(go_tool actionlint "$version" github.com/rhysd/actionlint/cmd/actionlint \
  "-s -w -X main.version=$version" ACTIONLINT)
case ${1:-} in
  --path) echo "$bin"; exit 0 ;;
  "") ;;
  *) echo "usage: hack/actionlint.sh [--path]" >&2; exit 2 ;;
esac

if ! command -v shellcheck >/dev/null; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "installing shellcheck with apt-get (first time only)" >&2
    exec 8>"${XDG_CACHE_HOME:-$HOME/.cache}/dataforest-operator/.apt-shellcheck.lock"
    flock 8
    if ! command -v shellcheck >/dev/null; then
      apt-get update -qq >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends shellcheck >&2
    fi
  else
    echo "shellcheck is missing (Debian: apt-get install shellcheck): run: scripts are not checked" >&2
  fi
fi

cd "$repo"
# With no file arguments actionlint checks every workflow under .github/workflows/.
"$bin" -no-color
echo "actionlint $version: .github/workflows/ is clean" >&2
