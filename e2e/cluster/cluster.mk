# Kubernetes control plane for the end-to-end tests and the demo (see e2e/cluster/README.md).
# Included by the top-level Makefile. Versions are pinned in e2e/cluster/versions.env.

PYTHON              ?= python3
# The launcher needs only the standard library: fall back to python3 before `make setup`.
CLUSTER_PYTHON      = $(if $(wildcard $(PYTHON)),$(PYTHON),python3)
CLUSTER_LAUNCHER    := e2e/cluster/launcher.py
CLUSTER_STATE_DIR   ?= .cache/cluster
CLUSTER_NODES       ?= 3
# Nodes that run pods for real (containerd, kubelet, kube-proxy; root on Linux). See README.
CLUSTER_REAL_NODES  ?= 0
KIND                ?= kind
KIND_CLUSTER_NAME   ?= pilothouse
include e2e/cluster/versions.env
CLUSTER_BIN_DIR     := .cache/k8s/$(KUBERNETES_VERSION)/bin
# kind publishes node images per kind release; pick one matching the pin if this tag is absent.
KIND_NODE_IMAGE     ?= kindest/node:$(KUBERNETES_VERSION)

.PHONY: cluster-binaries promtool cluster-up cluster-down cluster-status kind-up kind-down

cluster-binaries: ## build etcd, kube-*, kubectl, kwok and helm (with CLUSTER_REAL_NODES also kubelet, kube-proxy, CoreDNS)
	$(CLUSTER_PYTHON) $(CLUSTER_LAUNCHER) build --real-nodes $(CLUSTER_REAL_NODES)

promtool: ## build promtool from the pinned Prometheus Go module (once per version)
	$(CLUSTER_PYTHON) $(CLUSTER_LAUNCHER) promtool

cluster-up: ## start a local control plane (KWOK nodes, CLUSTER_REAL_NODES real ones); prints the KUBECONFIG
	$(CLUSTER_PYTHON) $(CLUSTER_LAUNCHER) up --state-dir $(CLUSTER_STATE_DIR) --nodes $(CLUSTER_NODES) \
		--real-nodes $(CLUSTER_REAL_NODES)

cluster-down: ## stop the local control plane, undo its real nodes' host changes (also after a crash)
	$(CLUSTER_PYTHON) $(CLUSTER_LAUNCHER) down --state-dir $(CLUSTER_STATE_DIR)

cluster-status: ## show the local control plane's processes and readiness
	$(CLUSTER_PYTHON) $(CLUSTER_LAUNCHER) status --state-dir $(CLUSTER_STATE_DIR)

# The alternative for machines with Docker: a kind cluster, its kubeconfig written to the
# same place, so `PILOTHOUSE_TEST_KUBECONFIG=$(CLUSTER_STATE_DIR)/kubeconfig` works for both.
kind-up: ## create a kind cluster (needs Docker and kind) with the pinned Kubernetes version
	mkdir -p $(CLUSTER_STATE_DIR)
	$(KIND) create cluster --name $(KIND_CLUSTER_NAME) \
		--image $(KIND_NODE_IMAGE) \
		--kubeconfig $(CLUSTER_STATE_DIR)/kubeconfig --wait 120s

kind-down: ## delete the kind cluster
	$(KIND) delete cluster --name $(KIND_CLUSTER_NAME) \
		--kubeconfig $(CLUSTER_STATE_DIR)/kubeconfig
