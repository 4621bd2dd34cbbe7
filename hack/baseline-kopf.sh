#!/usr/bin/env bash
# Prints the path of an executable that runs the kopf baseline operator
# (bench/baseline/kopf/operator.py), creating on first use a Python venv with its pinned
# requirements from PyPI in
# ${XDG_CACHE_HOME:-$HOME/.cache}/dataforest-operator/baseline-kopf-<hash>/, where <hash>
# is that of requirements.txt and operator.py: a change to either makes a new one.
#
# The executable is a wrapper that execs the venv's python on the copy of operator.py in
# that folder, not on the repository's: the folder's name is the hash of exactly what it
# runs, so a checkout edited later (or another branch) never runs under an old name.
#
# Progress goes to stderr; the path is the only thing on stdout.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
src=$repo/bench/baseline/kopf

# shellcheck source=hack/lib/cache.sh
source "$repo/hack/lib/cache.sh"

make_wrapper() {
  local target=$1 folder python stage
  folder=$(dirname "$target")
  python=${PYTHON:-python3}
  command -v "$python" >/dev/null || {
    echo "$python is needed for the kopf baseline (Python 3.11 or newer; on Debian: apt-get install python3 python3-venv)" >&2
    exit 1
  }
  # kopf 1.45 needs 3.11 (it says so only after pip has failed to find a version).
  "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "the kopf baseline needs Python 3.11 or newer; $python is $("$python" -V 2>&1)" >&2
    exit 1
  }
  # Debian splits venv and ensurepip out of its python3 (package python3-venv).
  "$python" -c 'import venv, ensurepip' 2>/dev/null || {
    echo "$python has no venv or ensurepip module: install it (on Debian: apt-get install python3-venv)" >&2
    exit 1
  }
  echo "creating the kopf baseline's venv from PyPI in $folder (first time only)" >&2
  # The venv is made where it stays (a venv's scripts name its folder), after whatever a
  # failed run left there; the wrapper, renamed into place last, marks it complete.
  rm -rf "$folder/venv"
  "$python" -m venv "$folder/venv" >&2
  if ! "$folder/venv/bin/python" -m pip install --quiet --disable-pip-version-check \
      --no-input --requirement "$src/requirements.txt" >&2; then
    echo "installing the kopf baseline's requirements failed" >&2
    exit 1
  fi
  cp "$src/operator.py" "$src/requirements.txt" "$folder/"
  stage=$(mktemp "$folder/baseline-kopf.XXXXXX")
  trap 'rm -f "${stage:-}"' EXIT
  cat >"$stage" <<EOF
#!/bin/sh
# The kopf baseline operator (made by hack/baseline-kopf.sh). -P: the script's own
# folder is not put on sys.path, where operator.py would hide the standard library's
# operator module; -u: the ready line is seen at once even when stdout is a pipe.
exec "$folder/venv/bin/python" -P -u "$folder/operator.py" "\$@"
EOF
  chmod +x "$stage"
  mv "$stage" "$target"
  echo "made $target" >&2
}
cached "$(cache_folder baseline-kopf "$src/requirements.txt" "$src/operator.py")/baseline-kopf" make_wrapper
