# The two commands of the README, and a few more for developers.
#   make serve  — install ModelDB and start it on the embedded default (http://127.0.0.1:8000)
#   make test   — install everything, start real Kafka/PostgreSQL/Neo4j, run the whole suite

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PORT   ?= 8000
PYTEST_ARGS ?=

.PHONY: serve test install-server install-dev infra-up infra-down lint bench bench-quick demo clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.server: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[server]"
	touch $@

$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[dev]"
	touch $@ $(VENV)/.server

install-server: $(VENV)/.server
install-dev: $(VENV)/.dev

serve: install-server
	$(BIN)/modeldb serve --port $(PORT)

demo: install-server
	$(BIN)/modeldb demo --url http://127.0.0.1:$(PORT)

infra-up: install-dev
	$(BIN)/modeldb infra up

infra-down:
	-$(BIN)/modeldb infra down

# The servers are stopped whatever the tests' outcome; pytest's exit code is kept.
test: install-dev
	$(BIN)/ruff check .
	$(BIN)/modeldb infra up
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS); status=$$?; \
	  $(BIN)/python -m bench --quick --engines || status=1; \
	  $(BIN)/modeldb infra down; \
	  exit $$status

lint: install-dev
	$(BIN)/ruff check .

bench: install-dev
	$(BIN)/modeldb infra up
	$(BIN)/python -m bench --engines

bench-quick: install-dev
	$(BIN)/python -m bench --quick

clean:
	rm -rf $(VENV) .venv-mlflow .infra build *.egg-info
