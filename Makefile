# dataforest-operator: the commands people and CI run. `make help` lists them.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

CARGO ?= cargo
BIN := target/debug/dataforest-operator
CRD := crds/aiapps.dataforest.dev.yaml

.PHONY: help
help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

.PHONY: assets
assets: ## Build (once) and cache kube-apiserver, kube-controller-manager and kubectl; print their folder
	@bash hack/control-plane-assets.sh

.PHONY: build
build: ## Build the operator and the test environment
	$(CARGO) build --workspace --all-targets

.PHONY: release-binary
release-binary: ## Build the release binary as the Dockerfile and the release workflow do
	$(CARGO) build --release --locked -p dataforest-operator --bin dataforest-operator

.PHONY: actionlint
actionlint: ## Check .github/workflows/ with actionlint (built once from the Go module proxy)
	bash hack/actionlint.sh

.PHONY: generate
generate: ## Regenerate the CRD from the Rust types, then the chart's CRD template and deploy/operator.yaml
	$(CARGO) run --quiet --bin dataforest-operator -- crd > $(CRD).new && mv $(CRD).new $(CRD)
	bash hack/render.sh

.PHONY: render
render: ## Re-render deploy/operator.yaml and the chart's CRD template (make test fails when stale)
	bash hack/render.sh

.PHONY: helm
helm: ## Build (once) and cache helm v3.19.0; print its path
	@bash hack/helm.sh

.PHONY: test
test: ## Run the whole test suite against a real kube-apiserver and etcd
	bash hack/control-plane-assets.sh > /dev/null
	bash hack/helm.sh > /dev/null
	bash hack/actionlint.sh --path > /dev/null
	bash hack/promtool.sh > /dev/null
	bash hack/argocd-lua.sh > /dev/null
	$(CARGO) test --workspace --all-targets --no-fail-fast
	bash hack/no-leftovers.sh

.PHONY: chaos
chaos: ## 300 AiApps under faults, crashes, an apiserver restart and a paused leader, 3 rounds; prints the figures
	bash hack/control-plane-assets.sh > /dev/null
	for round in 1 2 3; do \
	  CHAOS_AIAPPS=$${CHAOS_AIAPPS:-300} $(CARGO) test --test e2e -- chaos:: --nocapture ; \
	  $(CARGO) test --test e2e -- controller::two_operators ; \
	  $(CARGO) test --test e2e -- controller::an_operator_killed ; \
	  $(CARGO) test --test e2e -- exactly_once::a_leader_stopped ; \
	done

BENCH_ARGS ?=

# dataforest-bench builds each baseline of --operators once, through its hack script.
.PHONY: bench
bench: ## Ours beside a plain controller-runtime operator on a burst of AiApps, each on its own fresh control plane, 3 repeats: rates, latency, cost, RSS, CPU (BENCH_ARGS="--aiapps 1000 --operators dataforest,controller-runtime,kopf")
	bash hack/control-plane-assets.sh > /dev/null
	$(CARGO) build --release -p dataforest-operator -p dataforest-bench --bin dataforest-operator --bin dataforest-bench
	target/release/dataforest-bench $(BENCH_ARGS)

.PHONY: bench-emulator
bench-emulator: ## Emulator throughput (submits/s) and memory while apps churn
	$(CARGO) bench --bench emulator

.PHONY: lint
lint: ## rustfmt and clippy, as CI wants them
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

.PHONY: cluster
cluster: ## Start a local control plane with the CRD installed; prints the KUBECONFIG export
	bash hack/control-plane-assets.sh > /dev/null
	$(CARGO) run --quiet -p dataforest-testenv --bin testenv -- --apply $(CRD)

.PHONY: demo
demo: ## Control plane + CRD + a sample AiApp, ending with kubectl get aiapps
	bash hack/demo.sh
