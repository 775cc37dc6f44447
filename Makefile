# waypoint-webhook: two commands do all set-up on a fresh machine.
#   make run   serve the webhook on https://127.0.0.1:8443 with the examples' cluster state
#   make test  lint, then unit, server (gunicorn over TLS), robustness, end-to-end (kube-apiserver), pod
#              (the image built from the Dockerfile, run as the shipped Deployment) and oracle (the real
#              istiod) tiers
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock | cksum | cut -d' ' -f1)
PORT ?= 8443
NAMESPACE ?= waypoint-webhook
CERTS_OUT ?= certs/generated
MANIFESTS ?= manifests
PYTEST_ARGS ?=


.PHONY: bench-peers bench-stall lock image sbom generate bench-check test-random-worlds install run test test-unit test-server test-e2e test-pod test-oracle prereqs lint certs renew-certs controlplane controlplane-oldest helm promtool helm-lint istiod bench bench-hostile bench-audit bench-core bench-memory bench-scrape clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

certs/dev/tls.crt: | install
	$(BIN)/waypoint-webhook certs --out certs/dev --dns localhost --ip 127.0.0.1 >/dev/null

run: install certs/dev/tls.crt
	@echo "make run: the CLI is $(BIN)/waypoint-webhook (kubectl waypoint with $(BIN) on PATH)"
	$(BIN)/waypoint-webhook serve --host 127.0.0.1 --port $(PORT) --workers 1 \
	  --tls-cert certs/dev/tls.crt --tls-key certs/dev/tls.key --state examples/state

lint: install
	$(BIN)/ruff check webhook testkit tests $(wildcard bench)
	$(BIN)/ruff format --check webhook testkit tests $(wildcard bench)
	$(BIN)/mypy
	$(BIN)/lint-imports

# Every artefact derived from the code (the README's code table, the rules index, the CEL conditions,
# the fail-open policies); tests/unit/test_generated.py fails when one is stale.
generate: install
	$(BIN)/python -m webhook.cli.generate .

prereqs:
	@PYTHON=$(PYTHON) tests/prereqs.sh

controlplane:
	tests/e2e/controlplane/build.sh

# The oldest Kubernetes the README's compatibility table claims (its kube-apiserver, cached likewise).
controlplane-oldest:
	tests/e2e/controlplane/build.sh oldest

# The real helm for the chart tests (built once from the Go module proxy).
helm:
	tests/e2e/helm/build.sh

# The real promtool for the alert tests (built once from the Go module proxy).
promtool:
	tests/e2e/promtool/build.sh

helm-lint: helm
	"$$(tests/e2e/helm/build.sh | tail -n1)" lint --strict charts/waypoint-webhook

# The real istiod, the oracle of the differential tier (built once from the Go module proxy).
istiod:
	tests/oracle/istiod/build.sh

E2E_ENV = KUBEBUILDER_ASSETS="$$(tests/e2e/controlplane/build.sh | tail -n1)" \
	KUBEBUILDER_ASSETS_OLDEST="$$(tests/e2e/controlplane/build.sh oldest | tail -n1)" \
	HELM_BIN="$$(tests/e2e/helm/build.sh | tail -n1)" \
	PROMTOOL_BIN="$$(tests/e2e/promtool/build.sh | tail -n1)"

test: prereqs install lint controlplane controlplane-oldest helm promtool istiod
	$(E2E_ENV) ISTIOD_BIN="$$(tests/oracle/istiod/build.sh | tail -n1)" $(BIN)/pytest -q $(PYTEST_ARGS) tests

test-unit: install
	$(BIN)/pytest -q tests/unit

test-server: install
	$(BIN)/pytest -q tests/server

test-e2e: install controlplane controlplane-oldest helm promtool
	$(E2E_ENV) $(BIN)/pytest -q tests/e2e

test-oracle: install controlplane istiod
	KUBEBUILDER_ASSETS="$$(tests/e2e/controlplane/build.sh | tail -n1)" \
	ISTIOD_BIN="$$(tests/oracle/istiod/build.sh | tail -n1)" $(BIN)/pytest -q tests/oracle

# The seeded random differential at length: WORLDS random worlds (default 150, about 800 consumers)
# replayed into the real istiod and judged by the webhook (make test runs 30).
test-random-worlds: install controlplane istiod
	KUBEBUILDER_ASSETS="$$(tests/e2e/controlplane/build.sh | tail -n1)" \
	ISTIOD_BIN="$$(tests/oracle/istiod/build.sh | tail -n1)" WAYPOINT_WORLDS=$(or $(WORLDS),150) \
	WAYPOINT_WORLDS_SEED=$(or $(SEED),1) $(BIN)/pytest -q -s tests/oracle/test_random_worlds.py

test-pod: prereqs install controlplane
	KUBEBUILDER_ASSETS="$$(tests/e2e/controlplane/build.sh | tail -n1)" $(BIN)/pytest -q tests/pod

# The install for namespace $(NAMESPACE): serving certificate for waypoint-webhook.$(NAMESPACE).svc, its
# Secret, and a kustomization with the caBundle and namespace (then: kubectl apply -k certs/).
certs: install
	$(BIN)/waypoint-webhook certs --namespace $(NAMESPACE) --out $(CERTS_OUT) --manifests $(MANIFESTS) \
	  $(if $(FAIL_OPEN),--fail-open) $(if $(EXISTING_NAMESPACE),--existing-namespace)

# One command renews the self-managed serving certificate (same CA, so the caBundle stays valid)
# and applies it; the pods reload it in place. Use the same NAMESPACE/FAIL_OPEN as the install.
renew-certs: certs
	kubectl apply -k $(CERTS_OUT)

bench: install controlplane
	KUBEBUILDER_ASSETS="$$(tests/e2e/controlplane/build.sh | tail -n1)" $(BIN)/python bench/run.py

# 200 hostile connections held open while real reviews are measured (about a minute).
bench-hostile: install
	$(BIN)/python bench/hostile.py --tenants $(or $(TENANTS),0)

# The rules' own cost per request, in-process (seconds).
bench-core: install
	$(BIN)/python bench/core.py

# check on a repository of 523 files as a CI job runs it (seconds): median wall time and peak RSS.
bench-check: install
	$(BIN)/python bench/check_repo.py

# The shipped Deployment's memory (PSS of the whole pod, leader and standby) at 20,000 Pods / 5,000
# namespaces and 100,000 Pods / 10,000 namespaces on the e2e control plane (about 15 minutes).
bench-memory: install controlplane
	KUBEBUILDER_ASSETS="$$(tests/e2e/controlplane/build.sh | tail -n1)" $(BIN)/python bench/scale_memory.py

# The API server's cost of each way of enforcing the rules, side by side: none, the generated
# ValidatingAdmissionPolicies, Kyverno (built from the Go module proxy on first use, cached), this
# webhook, and the fail-open install (bench/peers.py; about 30 minutes). bench-stall: the open-loop tail alone.
bench-peers: install controlplane
	KUBEBUILDER_ASSETS="$$(tests/e2e/controlplane/build.sh | tail -n1)" $(BIN)/python -m bench.peers $(PEERS_ARGS)

bench-stall: install controlplane
	KUBEBUILDER_ASSETS="$$(tests/e2e/controlplane/build.sh | tail -n1)" $(BIN)/python -m bench.stall $(PEERS_ARGS)

# Review latency with 16 scrapers of a 5,000-namespace /metrics in a loop, against idle (about 5 minutes).
bench-scrape: install controlplane
	KUBEBUILDER_ASSETS="$$(tests/e2e/controlplane/build.sh | tail -n1)" $(BIN)/python bench/scrape.py

# The audit at 10,000 namespaces, 1,000 waypoints and 50,000 consumers: full and incremental (seconds).
bench-audit: install
	$(BIN)/python bench/audit_scale.py

# The image's pinned dependency set (requirements.lock, hashes of every file on the index) and the
# SBOM tool's. pip-compile keeps existing pins; `make lock UPGRADE=1` moves them to the newest.
LOCK_FLAGS := --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links $(if $(UPGRADE),--upgrade)
lock: install
	$(BIN)/pip-compile $(LOCK_FLAGS) --build-deps-for wheel --output-file requirements.lock pyproject.toml
	$(BIN)/pip-compile $(LOCK_FLAGS) --output-file requirements-sbom.lock requirements-sbom.in

# The image, labelled with the version and the revision it is built from (see Supply chain).
IMAGE ?= waypoint-webhook
CONTAINER_TOOL ?= $(shell command -v podman >/dev/null 2>&1 && echo podman || echo docker)
IMAGE_ARGS = --build-arg VERSION=$$($(PYTHON) -c 'import tomllib; print(tomllib.load(open("pyproject.toml","rb"))["project"]["version"])') \
  --build-arg REVISION=$$(git rev-parse HEAD 2>/dev/null || echo unknown) \
  --build-arg CREATED=$$(date -u +%Y-%m-%dT%H:%M:%SZ)
image:
	$(CONTAINER_TOOL) build $(IMAGE_ARGS) -t $(IMAGE):$$($(PYTHON) -c 'import tomllib; print(tomllib.load(open("pyproject.toml","rb"))["project"]["version"])') .

# The image's CycloneDX SBOM, from its installed environment: sbom/waypoint-webhook.cdx.json.
sbom:
	$(CONTAINER_TOOL) build $(IMAGE_ARGS) --target sbom --output type=local,dest=sbom .

clean:
	rm -rf $(VENV) certs/dev certs/generated .pytest_cache .mypy_cache .ruff_cache
