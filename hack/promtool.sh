#!/usr/bin/env bash
# Prints the path of a promtool binary, building it on first use from the Go module proxy
# (`go install github.com/prometheus/prometheus/cmd/promtool@<version>`) into
# ${XDG_CACHE_HOME:-$HOME/.cache}/dataforest-operator/promtool-<version>/, where a second
# run and a fresh clone on the same machine find it. PROMTOOL, when set, names a promtool
# binary to use as it is.
#
# The tests check the alert rules with it (`promtool check rules`, `promtool test rules`).
# Progress goes to stderr; the path is the only thing on stdout.
set -euo pipefail

# The Go module of Prometheus v3.16.0 (Prometheus 3.x tags its Go module v0.3xx.y).
version=v0.316.0

if [[ -n ${PROMTOOL:-} ]]; then
  [[ -x $PROMTOOL ]] || { echo "PROMTOOL=$PROMTOOL is not an executable" >&2; exit 1; }
  echo "$PROMTOOL"
  exit 0
fi

cache=${XDG_CACHE_HOME:-$HOME/.cache}/dataforest-operator/promtool-$version
bin=$cache/promtool
if [[ -x $bin ]]; then
  echo "$bin"
  exit 0
fi

mkdir -p "$cache"
# One builder at a time: a second caller waits for the first and then finds the binary.
exec 9>"$cache/.lock"
flock 9
if [[ ! -x $bin ]]; then
  command -v go >/dev/null || { echo "go is needed to build promtool $version" >&2; exit 1; }
  echo "building promtool $version from the Go module proxy into $cache (first time only; several minutes on 2 cores)" >&2
  stage=$(mktemp -d "$cache/build.XXXXXX")
  trap 'rm -rf "$stage"' EXIT
  # Built outside any module, so the repository's files never steer the build.
  if ! (cd "$stage" && GOBIN=$stage CGO_ENABLED=0 GOFLAGS= GO111MODULE=on GOWORK=off \
      go install -trimpath -ldflags "-s -w" \
      "github.com/prometheus/prometheus/cmd/promtool@$version" >&2); then
    echo "building promtool $version failed" >&2
    exit 1
  fi
  mv "$stage/promtool" "$bin"
  echo "built $bin" >&2
fi
echo "$bin"
