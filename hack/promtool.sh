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

# shellcheck source=hack/lib/go-tool.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/go-tool.sh"
go_tool promtool "$version" github.com/prometheus/prometheus/cmd/promtool "-s -w" PROMTOOL
