# Packaging: the Pilothouse image and the Helm chart. Included by the top-level Makefile
# (after e2e/cluster/cluster.mk, whose helm binary `chart-lint` uses). See docs/packaging.md.

VERSION            ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
REVISION           ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
IMAGE              ?= pilothouse:$(VERSION)
BASE_IMAGE         ?= python:3.11-slim
LOCAL_BASE_IMAGE   ?= pilothouse-base:bookworm-py311
DOCKER             ?= docker
# Host networking: works with or without a bridge network (docker/dockerd.sh starts none);
# --force-rm: a failed step leaves no stopped container behind.
DOCKER_BUILD_FLAGS ?= --network host --force-rm
CHART_DIR          := charts/pilothouse
HELM               ?= $(firstword $(wildcard .cache/k8s/*/bin/helm) helm)

.PHONY: image image-offline chart-docs chart-lint

image: ## build the image (both entry points); BASE_IMAGE=... IMAGE=... to override
	$(DOCKER) build $(DOCKER_BUILD_FLAGS) \
		--build-arg BASE_IMAGE=$(BASE_IMAGE) \
		--build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) \
		-t $(IMAGE) .

image-offline: ## build the image without a registry: dockerd if needed, a debootstrapped base
	docker/dockerd.sh start
	docker/base-image.sh $(LOCAL_BASE_IMAGE)
	$(MAKE) image BASE_IMAGE=$(LOCAL_BASE_IMAGE)

chart-docs: setup ## regenerate the chart's README.md and values.schema.json from values.yaml
	$(PYTHON) charts/chartdocs.py

chart-lint: setup cluster-binaries ## helm lint with every ci/ values file; docs up to date; ruff
	$(PYTHON) charts/chartdocs.py --check
	$(HELM) lint --strict $(CHART_DIR)
	for values in $(CHART_DIR)/ci/*-values.yaml; do \
		$(HELM) lint --strict $(CHART_DIR) -f $$values || exit 1; \
	done
	$(VENV)/bin/ruff check charts
	$(VENV)/bin/ruff format --check charts
