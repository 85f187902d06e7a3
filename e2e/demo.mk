# The demo: Pilothouse end to end on this machine (see docs/demo.md). Included by the top-level
# Makefile after e2e/cluster/cluster.mk (cluster-binaries, KIND, KIND_CLUSTER_NAME) and
# charts/chart.mk (image, IMAGE, HELM), which kind-demo uses.
#
#   make demo                  the full demo (the top-level `demo` rule runs it)
#   make demo-smoke            a short flood and scale-down window (what e2e/test_demo_smoke.py runs)
#   make demo DEMO_ARGS='--flood 90 --window 20'
#   make kind-demo             the examples with real pods in a kind cluster (Docker and kind)

DEMO_ARGS           ?=
DEMO                ?= PYTHONPATH=e2e $(PYTHON) -m demo
KIND_DEMO_DIR       := e2e/demo/kind
KIND_KUBECONFIG     ?= $(CLUSTER_STATE_DIR)/kubeconfig
KUBECTL             ?= $(firstword $(wildcard $(CLUSTER_BIN_DIR)/kubectl) kubectl)
KIND_KUBECTL        = $(KUBECTL) --kubeconfig $(KIND_KUBECONFIG)

.PHONY: demo demo-smoke kind-demo

# The top-level `demo: setup` rule holds the recipe; this adds the control-plane binaries.
demo: cluster-binaries

demo-smoke: setup cluster-binaries ## the demo with a short flood (25 requests, 5 s window)
	$(DEMO) --smoke $(DEMO_ARGS)

kind-demo: image ## the examples on kind with real pods: image, cluster, chart, Redis/PostgreSQL/mock LLM
	$(KIND) get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER_NAME)' || $(MAKE) --no-print-directory kind-up
	$(KIND) load docker-image $(IMAGE) --name $(KIND_CLUSTER_NAME)
	$(HELM) upgrade --install pilothouse charts/pilothouse --kubeconfig $(KIND_KUBECONFIG) \
		--namespace pilothouse-system --create-namespace \
		--set image.repository=$(firstword $(subst :, ,$(IMAGE))) \
		--set image.tag=$(lastword $(subst :, ,$(IMAGE))) --wait --timeout 5m
	sed 's|image: pilothouse:.*|image: $(IMAGE)|' $(KIND_DEMO_DIR)/services.yaml | $(KIND_KUBECTL) apply -f -
	$(KIND_KUBECTL) -n pilothouse-system wait --for=condition=Available --timeout 5m \
		deployment/redis deployment/postgres deployment/mock-llm deployment/tools
	$(KIND_KUBECTL) create namespace demo --dry-run=client -o yaml | $(KIND_KUBECTL) apply -f -
	$(KIND_KUBECTL) -n demo apply -f crds/examples/
	$(KIND_KUBECTL) -n demo patch agd customer-support --type json --patch-file $(KIND_DEMO_DIR)/agent-patch.json
	$(KIND_KUBECTL) -n demo wait --for=condition=Ready agd/customer-support --timeout 5m
	$(KIND_KUBECTL) -n demo get pilothouse -o wide
	@echo
	@echo "Talk to the agent:"
	@echo "  $(KIND_KUBECTL) -n demo port-forward svc/customer-support 8080:80 &"
	@echo "  curl -s 'localhost:8080/v1/requests?wait=30' -H 'content-type: application/json' -d '{\"input\": \"What is 2+2?\"}'"
	@echo "Remove it: make kind-down"
