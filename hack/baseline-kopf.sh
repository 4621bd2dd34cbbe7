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

hash=$(cat "$src/requirements.txt" "$src/operator.py" | sha256sum | cut -c1-12)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/dataforest-operator/baseline-kopf-$hash
bin=$cache/baseline-kopf
if [[ -x $bin ]]; then
  echo "$bin"
  exit 0
fi

mkdir -p "$cache"
# One builder at a time: a second caller waits for the first and then finds the wrapper.
exec 9>"$cache/.lock"
flock 9
if [[ ! -x $bin ]]; then
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
  echo "creating the kopf baseline's venv from PyPI in $cache (first time only)" >&2
  # The venv is made where it stays (a venv's scripts name its folder), after whatever a
  # failed run left there; the wrapper, renamed into place last, marks it complete.
  rm -rf "$cache/venv"
  "$python" -m venv "$cache/venv" >&2
  if ! "$cache/venv/bin/python" -m pip install --quiet --disable-pip-version-check \
      --no-input --requirement "$src/requirements.txt" >&2; then
    echo "installing the kopf baseline's requirements failed" >&2
    exit 1
  fi
  cp "$src/operator.py" "$src/requirements.txt" "$cache/"
  stage=$(mktemp "$cache/baseline-kopf.XXXXXX")
  trap 'rm -f "$stage"' EXIT
  cat >"$stage" <<EOF
#!/bin/sh
# The kopf baseline operator (made by hack/baseline-kopf.sh). -P: the script's own
# folder is not put on sys.path, where operator.py would hide the standard library's
# operator module; -u: the ready line is seen at once even when stdout is a pipe.
exec "$cache/venv/bin/python" -P -u "$cache/operator.py" "\$@"
EOF
  chmod +x "$stage"
  mv "$stage" "$bin"
  echo "made $bin" >&2
fi
echo "$bin"
