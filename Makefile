# Keywarden. `make test` and `make demo` install what they need by themselves:
# the control plane (kube-apiserver, etcd) is built once from Go modules by
# hack/controlplane.sh and cached outside the repository; controller-gen,
# golangci-lint and helm are Go tools of the hack/tools module.

IMG ?= keywarden/manager:dev
# One source of truth for the build flags: the Dockerfile, internal/testenv and
# this file use the same ones (test/e2e checks that they agree).
GO_BUILD_FLAGS ?= -trimpath -ldflags=-s\ -w
export CGO_ENABLED ?= 0

# The Go tools of hack/tools that `make test` runs (controller-gen for the
# generated files, helm for the chart tests) are built once into bin/tools and
# rebuilt only when hack/tools/go.mod or go.sum change: a first run on a fresh
# machine downloads their modules here, in make, not inside a test that reads
# the tool's output (Go prints "go: downloading ..." on stderr).
TOOLS_BIN := $(CURDIR)/bin/tools
CONTROLLER_GEN := $(TOOLS_BIN)/controller-gen
HELM := $(TOOLS_BIN)/helm
CRD_REF_DOCS := $(TOOLS_BIN)/crd-ref-docs
# docs/api-reference.md: crd-ref-docs renders the Go types of api/v1alpha1
# with the configuration and templates of hack/crd-ref-docs (test/docs runs
# the same command and fails when the committed file differs).
API_DOCS_FLAGS := --source-path=api/v1alpha1 --config=hack/crd-ref-docs/config.yaml --renderer=markdown --templates-dir=hack/crd-ref-docs/templates/markdown --output-path=docs/api-reference.md --log-level=ERROR
GOLANGCI_LINT := go tool -modfile=hack/tools/go.mod golangci-lint
ASSETS = $$(hack/controlplane.sh)
TEST_FLAGS ?=
BENCH_FLAGS ?=

.PHONY: all
all: build

##@ Development

$(CONTROLLER_GEN): hack/tools/go.mod hack/tools/go.sum
	cd hack/tools && go build -o $@ sigs.k8s.io/controller-tools/cmd/controller-gen

$(HELM): hack/tools/go.mod hack/tools/go.sum
	cd hack/tools && go build -o $@ helm.sh/helm/v4/cmd/helm

$(CRD_REF_DOCS): hack/tools/go.mod hack/tools/go.sum
	cd hack/tools && go build -o $@ github.com/elastic/crd-ref-docs

.PHONY: tools
tools: $(CONTROLLER_GEN) $(HELM) $(CRD_REF_DOCS) ## Build the Go tools the tests run (controller-gen, helm, crd-ref-docs) into bin/tools.

.PHONY: manifests
manifests: $(CONTROLLER_GEN) $(CRD_REF_DOCS) ## Generate CRDs and RBAC from the kubebuilder markers, the Helm chart's copies of them, the dashboard and docs/api-reference.md.
	$(CONTROLLER_GEN) rbac:roleName=keywarden-manager-role crd webhook paths="./..." output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac
	go run ./hack/chartgen -config config -chart charts/keywarden
	@$(MAKE) --no-print-directory dashboard
	$(CRD_REF_DOCS) $(API_DOCS_FLAGS)

.PHONY: dashboard
dashboard: ## Generate the Grafana dashboard config/grafana/keywarden.json (hack/dashboard).
	cd hack/dashboard && go run . -o ../../config/grafana/keywarden.json

.PHONY: helm-lint
helm-lint: manifests $(HELM) ## helm lint the chart (Helm is a Go tool of hack/tools).
	$(HELM) lint --strict charts/keywarden

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate deepcopy code.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."

.PHONY: fmt
fmt: ## go fmt.
	go fmt ./...

.PHONY: vet
vet: ## go vet.
	go vet ./...

.PHONY: lint
lint: ## golangci-lint.
	$(GOLANGCI_LINT) run ./...

.PHONY: controlplane
controlplane: ## Build (once) and print the kube-apiserver/etcd directory.
	@hack/controlplane.sh

.PHONY: test
test: manifests generate vet tools ## Run every test: unit, envtest, e2e and the reduced fault suite.
	KUBEBUILDER_ASSETS="$(ASSETS)" KEYWARDEN_HELM="$(HELM)" KEYWARDEN_CRD_REF_DOCS="$(CRD_REF_DOCS)" go test -count=1 -timeout 85m $(TEST_FLAGS) ./...

.PHONY: test-repeat
test-repeat: tools ## Run the controller suite, e2e and the reduced fault suite REPEAT times each under a CPU burner (flake hunt; asserts no timing).
	KUBEBUILDER_ASSETS="$(ASSETS)" KEYWARDEN_HELM="$(HELM)" hack/test-repeat.sh -n $(or $(REPEAT),10) $(if $(SUITES),-s "$(SUITES)") $(if $(PARALLEL),-p)

.PHONY: ci-fresh
ci-fresh: ## Rehearse CI as a fresh machine: a clean clone of HEAD, empty GOMODCACHE and GOCACHE, .ci/run.
	hack/fresh-ci.sh

.PHONY: test-faults
test-faults: ## The full fault-tolerance suite.
	KUBEBUILDER_ASSETS="$(ASSETS)" KEYWARDEN_FAULTS=full go test -count=1 -timeout 90m -v ./test/faults/...

##@ Build

.PHONY: build
build: ## Build the manager and the API simulator into bin/.
	go build $(GO_BUILD_FLAGS) -o bin/manager ./cmd/manager
	go build $(GO_BUILD_FLAGS) -o bin/apisim ./cmd/apisim
	go build $(GO_BUILD_FLAGS) -o bin/kubectl-keywarden ./cmd/kubectl-keywarden

.PHONY: plugin
plugin: ## Build the kubectl plugin into bin/kubectl-keywarden (put it on PATH: kubectl keywarden).
	go build $(GO_BUILD_FLAGS) -o bin/kubectl-keywarden ./cmd/kubectl-keywarden

.PHONY: run
run: manifests generate ## Run the manager against the current kubeconfig.
	go run ./cmd/manager

.PHONY: docker-build
docker-build: ## Build the container image (needs a Docker engine).
	docker build -t $(IMG) .

.PHONY: demo
demo: build ## Local control plane + simulators + manager, live view. Ctrl-C stops everything.
	KUBEBUILDER_ASSETS="$(ASSETS)" go run ./hack/demo $(DEMO_FLAGS)

.PHONY: bench
bench: build ## Benchmarks at N=1000 (docs/performance.md).
	KUBEBUILDER_ASSETS="$(ASSETS)" go run ./hack/bench $(BENCH_FLAGS)

.PHONY: bench-quick
bench-quick: build ## Benchmark smoke run (N=100, then a sharded N=30); asserts nothing about timing.
	KUBEBUILDER_ASSETS="$(ASSETS)" go run ./hack/bench -n 100 -quick $(BENCH_FLAGS)
	KUBEBUILDER_ASSETS="$(ASSETS)" go run ./hack/bench -n 30 -quick -sharded -skip steady $(BENCH_FLAGS)

.PHONY: bench-scale
bench-scale: build ## Scale run: 10,000 ApiKeys + 10,000 RevioTokens over 500 namespaces (slow: tens of minutes on 2 cores).
	KUBEBUILDER_ASSETS="$(ASSETS)" go run ./hack/bench -n 10000 -namespaces 500 -skip rotation,storm,memory -timeout 60m $(BENCH_FLAGS)

.PHONY: bench-sharded
bench-sharded: build ## Three replicas (main + shard1 + shard2) on 2000 + 2000 objects split by label.
	KUBEBUILDER_ASSETS="$(ASSETS)" go run ./hack/bench -n 2000 -sharded $(BENCH_FLAGS)

##@ Deployment

.PHONY: install
install: manifests ## Install the CRDs into the current kubeconfig.
	kubectl apply --server-side -k config/crd

.PHONY: uninstall
uninstall: ## Remove the CRDs from the current kubeconfig.
	kubectl delete --ignore-not-found -k config/crd

.PHONY: deploy
deploy: manifests ## Deploy the operator with image IMG.
	cd config/manager && kubectl kustomize . >/dev/null
	kubectl kustomize config/default | sed 's#image: controller:latest#image: $(IMG)#' | kubectl apply --server-side -f -

.PHONY: undeploy
undeploy: ## Remove the operator.
	kubectl delete --ignore-not-found -k config/default

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*##/ { printf "  %-14s %s\n", $$1, $$2 } /^##@/ { printf "\n%s\n", substr($$0, 5) }' $(MAKEFILE_LIST)
