# CASI — run `make help` for the targets.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.casi-installed
DISTS  := proto sim learner orchestrator
# Ray is an optional extra for users; the tests cover it
EXTRAS_orchestrator := dev,ray
CONFIG ?= experiments/exp2_honest.toml
ARGS   ?=

.DEFAULT_GOAL := help
.PHONY: help setup interop proto docs test test-fast compose-test lint experiment experiments bench bench-worlds fuzz clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: $(STAMP) ## create .venv and install the four distributions (editable, dev extras)

$(STAMP): $(addsuffix /pyproject.toml,$(DISTS))
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0   # CPU build; the learner's range (torch>=2.6) is then met
	$(PY) -m pip install -q $(foreach d,$(DISTS),-e ./$(d)[$(or $(EXTRAS_$(d)),dev)])
	touch $@

# The Node/TypeScript Net (interop/node) that tests/interop runs; without npm those tests skip.
NODE_NET := interop/node
interop: ## build the Node/TypeScript Net in interop/node (npm ci, tsc) for tests/interop
	@if command -v npm >/dev/null; then $(MAKE) --no-print-directory $(NODE_NET)/dist/main.js; \
	else echo "note: npm not found: tests/interop will skip (apt-get install nodejs npm)"; fi

$(NODE_NET)/node_modules/.casi-installed: $(NODE_NET)/package.json $(NODE_NET)/package-lock.json
	cd $(NODE_NET) && npm ci --no-audit --no-fund
	touch $@

$(NODE_NET)/dist/main.js: $(NODE_NET)/node_modules/.casi-installed $(NODE_NET)/tsconfig.json $(wildcard $(NODE_NET)/src/*.ts)
	cd $(NODE_NET) && npm run build

proto: $(STAMP) ## regenerate the committed gRPC code from proto/casi/v1/net.proto
	$(PY) -m casi_proto.generate proto

docs: $(STAMP) ## regenerate docs/config.md (the config reference) from the config models
	$(PY) -m casi_orchestrator.config_doc > docs/config.md

test: $(STAMP) interop ## run every test, the expensive ones too (what CI runs)
	$(PY) -m pytest -q --durations=25 $(ARGS)

test-fast: $(STAMP) interop ## the inner loop: every test not marked expensive (under 90 s)
	$(PY) -m pytest -q -m "not expensive" $(ARGS)

compose-test: $(STAMP) ## docker compose for real: start dockerd, build both images offline, run the scenarios (root)
	docker info >/dev/null 2>&1 || { dockerd >/tmp/dockerd.log 2>&1 & \
	    for i in $$(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done; }
	docker info >/dev/null || { echo "no Docker engine (see /tmp/dockerd.log)"; exit 1; }
	scripts/build-images.sh
	CASI_COMPOSE_TEST=1 $(PY) -m pytest -q -m compose tests/deploy $(ARGS)

lint: $(STAMP) ## ruff (lint + format check) and mypy on the hand-written code
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy proto/casi_proto sim/casi_sim learner/casi_learner orchestrator/casi_orchestrator

experiment: $(STAMP) ## run the default experiment (exp2_honest) and plot it
	$(VENV)/bin/casi run $(CONFIG) $(ARGS)

experiments: $(STAMP) ## run every experiment in experiments/ (3 trials each; runs already there go on), then tabulate them
	for f in experiments/exp*.toml; do \
	    case " $(ARGS) " in *" --force "*|*" --resume "*) go=;; *) go=$$(test -d runs/$$(basename $$f .toml) && echo --resume);; esac; \
	    $(VENV)/bin/casi run $$f --trials 3 $$go $(ARGS) || exit $$?; \
	done
	$(VENV)/bin/casi summary $(patsubst experiments/%.toml,runs/%,$(wildcard experiments/exp*.toml))

bench: $(STAMP) ## run the benchmarks in bench/ (never part of the tests)
	for b in sim link train profile_iteration start learn scale; do $(PY) bench/$$b.py || exit $$?; done

fuzz: $(STAMP) ## the property-based fuzz suites with a long budget (CASI_FUZZ_EXAMPLES, 2000 each)
	CASI_FUZZ_EXAMPLES=$${CASI_FUZZ_EXAMPLES:-2000} $(PY) -m pytest -q tests/proto/test_fuzz_wire.py tests/orchestrator/test_fuzz_loaders.py $(ARGS)

bench-worlds: $(STAMP) ## agent-steps to 0.9 per world size, exp5's settings then with masking (hours)
	$(PY) bench/worlds.py && $(PY) bench/worlds.py --settings masked:algorithm.mask_pointless=true

clean: ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
