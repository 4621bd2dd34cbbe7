# shellcheck shell=bash
# Sourced, not run: what the scripts that build a tool from this repository once and keep
# it in ${XDG_CACHE_HOME:-$HOME/.cache}/dataforest-operator/<name>-<hash>/ share. <hash>
# is that of the tool's sources, so a change to them builds it again, and a second run or
# a fresh clone on the same machine finds it. Progress goes to stderr.

# The folder for NAME built from FILES (hashed in the order given).
cache_folder() {
  local name=$1
  shift
  echo "${XDG_CACHE_HOME:-$HOME/.cache}/dataforest-operator/$name-$(cat "$@" | sha256sum | cut -c1-12)"
}

# Prints TARGET, first running `BUILDER TARGET` when TARGET is not there yet. One builder
# at a time per folder: a second caller waits for the first and then finds TARGET.
cached() {
  local target=$1 builder=$2 folder
  folder=$(dirname "$target")
  if [[ ! -x $target ]]; then
    mkdir -p "$folder"
    (
      flock 9
      [[ -x $target ]] || "$builder" "$target"
    ) 9>"$folder/.lock" || return 1
  fi
  echo "$target"
}

# Builds the Go module in SRC (go.sum as committed) into TARGET, named WHAT in messages.
build_go_module() {
  local src=$1 target=$2 what=$3 stage
  command -v go >/dev/null || { echo "go is needed to build $what" >&2; return 1; }
  echo "building $what from the Go module proxy into $(dirname "$target") (first time only)" >&2
  stage=$(mktemp -d "$(dirname "$target")/build.XXXXXX")
  # -mod=readonly: go.sum is committed and must already hold every module.
  if ! (cd "$src" && CGO_ENABLED=0 GOFLAGS=-mod=readonly GOWORK=off \
      go build -trimpath -buildvcs=false -o "$stage/out" . >&2); then
    rm -rf "$stage"
    echo "building $what failed" >&2
    return 1
  fi
  mv "$stage/out" "$target"
  rm -rf "$stage"
  echo "built $target" >&2
}
