# shellcheck shell=bash
# Sourced, not run: `go_tool NAME VERSION PACKAGE LDFLAGS OVERRIDE` prints the path of a Go
# command-line tool, building it on first use from the Go module proxy
# (`go install PACKAGE@VERSION`) into
# ${XDG_CACHE_HOME:-$HOME/.cache}/dataforest-operator/NAME-VERSION/, where a second run and
# a fresh clone on the same machine find it. When the environment variable named OVERRIDE
# is set, it names a binary to use as it is. Progress goes to stderr; the path is the only
# thing on stdout.

go_tool() {
  local name=$1 version=$2 package=$3 ldflags=$4 override=$5
  if [[ -n ${!override:-} ]]; then
    [[ -x ${!override} ]] || { echo "$override=${!override} is not an executable" >&2; return 1; }
    echo "${!override}"
    return 0
  fi
  local cache=${XDG_CACHE_HOME:-$HOME/.cache}/dataforest-operator/$name-$version
  local bin=$cache/$name
  if [[ -x $bin ]]; then
    echo "$bin"
    return 0
  fi
  mkdir -p "$cache"
  # One builder at a time: a second caller waits for the first and then finds the binary.
  (
    flock 9
    if [[ ! -x $bin ]]; then
      command -v go >/dev/null || { echo "go is needed to build $name $version" >&2; exit 1; }
      echo "building $name $version from the Go module proxy into $cache (first time only)" >&2
      stage=$(mktemp -d "$cache/build.XXXXXX")
      trap 'rm -rf "$stage"' EXIT
      # Built outside any module, so the repository's files never steer the build.
      if ! (cd "$stage" && GOBIN=$stage CGO_ENABLED=0 GOFLAGS='' GO111MODULE=on GOWORK=off \
          go install -trimpath -ldflags "$ldflags" "$package@$version" >&2); then
        echo "building $name $version failed" >&2
        exit 1
      fi
      mv "$stage/$name" "$bin"
      echo "built $bin" >&2
    fi
  ) 9>"$cache/.lock" || return 1
  echo "$bin"
}
