#!/usr/bin/env bash
# `make demo`: the main job on embedded defaults, on this machine alone. Starts a real
# kube-apiserver and etcd, installs the CRD, serves the Data Forest emulator, runs the
# operator, creates the credentials Secret and the sample AiApp, waits until the app
# Succeeded, and shows what kubectl sees. Everything it starts is stopped on exit.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

work=$(mktemp -d -t dataforest-demo-XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { printf '\n==> %s\n' "$*"; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_for() { # wait_for <what> <pid> <command...>: poll until the command succeeds
  local what=$1 pid=$2; shift 2
  for _ in $(seq 1 600); do
    "$@" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || { echo "$what exited; its log:" >&2; cat "$work"/*.log >&2; return 1; }
    sleep 0.2
  done
  echo "timed out waiting for $what" >&2
  return 1
}

step "control-plane binaries (built once, then cached)"
assets=$(bash hack/control-plane-assets.sh)
kubectl=$assets/kubectl
echo "$assets"

step "building dataforest-operator, dataforest-emulator and testenv"
cargo build --quiet --bins -p dataforest-operator -p dataforest-emulator -p dataforest-testenv
operator=target/debug/dataforest-operator
emulator=target/debug/dataforest-emulator

step "starting kube-apiserver and etcd on loopback, installing the AiApp CRD"
export KUBECONFIG=$work/kubeconfig
target/debug/testenv --kubeconfig-out "$KUBECONFIG" --apply crds/aiapps.dataforest.dev.yaml >"$work/testenv.log" 2>&1 &
pids+=($!)
wait_for "the control plane" "${pids[-1]}" test -s "$KUBECONFIG"
"$kubectl" version

step "starting the Data Forest emulator"
port=$(free_port)
endpoint=http://127.0.0.1:$port
access_key=DEMOACCESSKEY0000001
secret_key=demo-secret-key-for-the-emulator
account_id=demoAccount0000000001
"$emulator" --listen "127.0.0.1:$port" --credential "$access_key:$secret_key:$account_id" >"$work/emulator.log" 2>&1 &
pids+=($!)
wait_for "the emulator" "${pids[-1]}" curl -sf "$endpoint/_emulator/stats"
echo "emulator at $endpoint"

step "creating the credentials Secret and the sample AiApp (deploy/samples/aiapp.yaml)"
"$kubectl" create secret generic ncp-credentials \
  --from-literal=accessKey="$access_key" --from-literal=secretKey="$secret_key" \
  --from-literal=accountId="$account_id" --from-literal=endpoint="$endpoint"
"$kubectl" apply -f deploy/samples/aiapp.yaml

step "starting the operator (dataforest-operator run)"
WATCH_NAMESPACE=default POD_NAMESPACE=default POD_NAME=demo-operator \
  DATAFOREST_ALLOWED_ENDPOINTS="$endpoint" METRICS_ADDRESS="127.0.0.1:$(free_port)" \
  POLL_MIN=500ms POLL_CEILING=2s "$operator" run >"$work/operator.log" 2>&1 &
pids+=($!)

step "waiting for the AiApp to succeed (Pending -> Submitting -> Accepted -> Running -> Succeeded)"
if ! "$kubectl" wait aiapp/mnist-train --for=jsonpath='{.status.phase}'=Succeeded --timeout=120s; then
  echo "the AiApp did not succeed; the operator's log:" >&2
  tail -n 40 "$work/operator.log" >&2
  exit 1
fi

step "kubectl get aiapps -o wide"
"$kubectl" get aiapps -o wide

step "its status and Events (kubectl describe aiapp mnist-train)"
"$kubectl" describe aiapp mnist-train | sed -n '/^Status:/,$p'

step "the app in the emulator"
curl -s "$endpoint/_emulator/apps"
echo
