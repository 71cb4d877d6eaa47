# o2c: `make help` lists the targets.
SHELL := /bin/bash
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)
NPM_STAMP := node_modules/.o2c-installed

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-18s %s\n", $$1, $$2}'

$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

deps: $(NPM_STAMP) ## install the Node 24 toolchain and libraries (npm ci)

generate: deps ## regenerate protobuf-es code into runtime/src/gen
	bash scripts/generate.sh

manifests: deps ## regenerate CRD YAML (crds/generated, chart) and RBAC from crds/*.ts
	tsx crds/generate.ts

check-generated: generate manifests ## fail when regenerating changes committed files
	@git diff --exit-code --stat -- runtime/src/gen crds charts || { echo "generated files are stale: run make generate manifests and commit" >&2; exit 1; }
	@test -z "$$(git status --porcelain -- runtime/src/gen crds charts)" || { git status --porcelain -- runtime/src/gen crds charts; echo "untracked generated files" >&2; exit 1; }

lint: deps ## biome, tsc, buf lint (+ buf breaking against main)
	biome check .
	tsc -p tsconfig.json --noEmit
	bash scripts/buf-check.sh

services: ## start RabbitMQ and PostgreSQL when they are down, enable broker plugins
	bash scripts/services.sh

envtest: ## build (or reuse the cached) kube-apiserver and etcd for the tests
	bash test/envtest/build.sh

helm: ## build (or reuse the cached) helm v3 with its release version ldflags; prints its path
	@bash scripts/tools/helm.sh

tryton: ## install Tryton from Debian packages and build the fixture database snapshot
	bash test/tryton/setup.sh

test-unit: deps ## unit tests (no I/O)
	vitest run --config vitest.unit.config.ts

test-integration: deps services envtest helm tryton image ## integration tests against real services
	vitest run --config vitest.integration.config.ts

test: deps check-generated lint services envtest helm tryton image ## everything CI runs: generated-code check, lint, unit, integration, e2e-local
	vitest run --config vitest.unit.config.ts
	vitest run --config vitest.integration.config.ts
	bash test/e2e/local.sh

chart-test: deps services envtest helm ## helm lint/template per environment, schema rules, server-side dry-run
	vitest run --config vitest.integration.config.ts test/integration/chart.test.ts

demo: deps services ## the reference O2C flow end to end on embedded defaults
	tsx scripts/demo.ts

dev: deps ## o2c dev -f examples/distributor/ (order API on 127.0.0.1:8080)
	tsx runtime/src/cli/o2c.ts dev -f examples/distributor/

run-operator: deps envtest ## run the operator against the local API server (or KUBECONFIG)
	tsx operator/src/dev.ts

BENCHMARKS := bench-api bench-bus bench-operator bench-connectors bench-workflow bench-image

bench: deps ## all benchmarks (each runs even when one before it failed), then one table: figures, aims, peer, machine
	@failed=; for b in $(BENCHMARKS); do $(MAKE) --no-print-directory $$b || failed="$$failed $$b"; done; \
	tsx bench/summary.ts; \
	if [ -n "$$failed" ]; then echo "benchmarks that failed:$$failed" >&2; exit 1; fi

bench-summary: ## the table of bench/results/*.json: each figure, its aim, the peer, the machine
	tsx bench/summary.ts

bench-api: deps services ## SubmitOrder throughput and latency -> bench/results/api.json
	tsx bench/api.ts

bench-bus: deps services ## RabbitMQ publish/consume figures -> bench/results/bus.json
	tsx bench/bus.ts

bench-operator: deps envtest ## 1,000 Pipelines through the operator -> bench/results/operator.json
	tsx bench/operator.ts

bench-connectors: deps services tryton ## connector driver figures -> bench/results/connectors.json
	tsx bench/connectors.ts

bench-peer: deps ## install the Temporal peer (CLI dev server from its Go module, TypeScript SDK) under bench/peer; O2C_BENCH_PEER=0 skips it
	@if [ "$${O2C_BENCH_PEER:-1}" != 0 ]; then bash bench/peer/temporal/install.sh && tsc -p bench/peer/temporal/tsconfig.json --noEmit; fi

bench-workflow: deps services bench-peer ## completed O2C orders/s, 1 and 2 replicas, and the Temporal peer -> bench/results/workflow.json
	tsx bench/workflow.ts

bench-image: deps services envtest image ## image size, docker start -> /readyz per role -> bench/results/image.json
	tsx bench/image.ts

argocd-cm: deps ## regenerate examples/argocd/argocd-cm.yaml from examples/argocd/health.lua
	tsx test/argocd/argocd-cm.ts

argocd-fixtures: deps services envtest ## capture the Argo CD health fixtures (test/argocd/fixtures) from a real API server
	tsx test/argocd/capture.ts

build: deps ## compile runtime, operator and CRD types to JavaScript in dist/ (what the image runs)
	rm -rf dist
	tsc -p tsconfig.build.json

docker: ## install (Debian docker.io) and start a Docker engine when none answers
	bash scripts/docker.sh

image: deps ## build the o2c image (o2c:<chart appVersion>, o2c:dev) on locally built base images
	bash scripts/image/build.sh >/dev/null

cluster: ## a real single-node Kubernetes here (containerd, kubelet, CoreDNS, RabbitMQ, PostgreSQL); prints its kubeconfig
	@bash test/cluster/up.sh

cluster-down: ## stop make cluster's processes and remove its state (built binaries stay cached)
	@bash test/cluster/down.sh

e2e-local: deps helm image ## the e2e scenario on make cluster's node here (brings the cluster up and down when it was down)
	bash test/e2e/local.sh

e2e: deps ## the same e2e scenario on kind (skips, saying why, where kind's node image cannot be pulled)
	bash test/e2e/run.sh

.PHONY: cluster cluster-down e2e-local build docker help deps generate manifests check-generated lint services envtest helm chart-test tryton test-unit test-integration test demo dev run-operator bench bench-api bench-bus bench-operator bench-connectors bench-workflow bench-peer bench-summary bench-image e2e argocd-cm argocd-fixtures
