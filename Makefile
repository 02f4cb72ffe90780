# The commands of the README (demo, test; lint is part of test). Each creates .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo demo-tools eval-demo test lint bench clean third-party-servers

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Stamp files: reinstall only when pyproject.toml changes.
$(VENV)/.installed: $(PY) pyproject.toml
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: $(PY) pyproject.toml
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(VENV)/.installed $@

# The third-party test servers (mockllm, llm-katan) in an environment of their own, so that their
# dependencies never change ours (tests/third_party_support.py says why); `make test` makes it (without
# it, a bare pytest skips their tests, saying so). The stamp is touched only once pip succeeded.
THIRD_PARTY := $(VENV)/third-party

$(THIRD_PARTY)/.installed: tests/third_party_requirements.txt
	rm -rf $(THIRD_PARTY)
	$(PYTHON) -m venv $(THIRD_PARTY)
	$(THIRD_PARTY)/bin/python -m pip install --quiet -r tests/third_party_requirements.txt
	touch $@

third-party-servers: $(THIRD_PARTY)/.installed

# `forge run` with no participants and no API key: three offline mock participants.
# Exit 1 (ended without converging) is a demo outcome too. Its last lines say what to do next, with
# commands that run as printed ($(VENV)/bin/forge ... --db forge-demo.db: forge is not on the PATH).
# (The command is echoed short, without the env part, so that at 80 columns no word of it is broken.)
demo: $(VENV)/.installed
	@echo '$(VENV)/bin/forge run "Design a TODO app API" --db forge-demo.db'
	@env -u ANTHROPIC_API_KEY -u OPENAI_API_KEY $(VENV)/bin/forge run "Design a TODO app API" --db forge-demo.db \
		|| [ $$? -eq 1 ]

# The same, grounded in this repository: mock participants read README.md with tools (one natively, one
# by TOOL_CALL lines); every call and result goes to the log, and `forge rerun` replays them without running any.
demo-tools: $(VENV)/.installed
	env -u ANTHROPIC_API_KEY -u OPENAI_API_KEY $(VENV)/bin/forge run "Review README.md and propose improvements" \
		-p "mock:alice?tools=file&word_delay=0.01" -p "mock:bob?tools=file,search&tool_mode=text&word_delay=0.01" \
		-p "mock:carol?word_delay=0.01" --workspace . --db forge-demo.db || [ $$? -eq 1 ]

# Does the council beat one model? The shipped task set (forge_actors/evals/basic.jsonl), answered by a council
# of three offline mocks right 70% of the time and by one such mock alone; then the same evaluation re-run from
# its recordings (no provider call). The report, its JSON and the accuracy/cost chart go to eval-demo/.
EVAL_DEMO := env -u ANTHROPIC_API_KEY -u OPENAI_API_KEY $(VENV)/bin/forge eval --db eval-demo.db
eval-demo: $(VENV)/.installed
	rm -rf eval-demo eval-demo.db eval-demo.db-wal eval-demo.db-shm
	$(EVAL_DEMO) basic -p "mock:alice?accuracy=0.7" -p "mock:bob?accuracy=0.7" -p "mock:carol?accuracy=0.7" \
		--baseline "mock:solo?accuracy=0.7" -o eval-demo > /dev/null
	@cat eval-demo/report.md
	$(EVAL_DEMO) --rerun "$$($(PY) -c "import json, sys; print(json.load(open(sys.argv[1]))['run_id'])" \
		eval-demo/report.json)" -o eval-demo/rerun > /dev/null
	@head -3 eval-demo/rerun/report.md
	@echo "The chart: eval-demo/accuracy-cost.svg; the sessions: .venv/bin/forge sessions --db eval-demo.db"

# ruff (style, real problems) and mypy (strict on eventstore, the pure core and engine.trust), both configured
# in pyproject.toml.
lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# Two workers, a test file each at a time (module fixtures — a browser, a PostgreSQL server — stay
# one per file): the suite takes about half as long on a 2-core host as one process did.
test: lint $(THIRD_PARTY)/.installed
	$(PY) -m pytest -q -n 2 --dist loadfile

bench: $(VENV)/.installed-dev
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) benchmarks/eventstore.py
	$(PY) benchmarks/providers.py
	$(PY) benchmarks/session_start.py
	$(PY) benchmarks/deliberation.py
	$(PY) benchmarks/server.py
	$(PY) benchmarks/log_growth.py
	$(PY) benchmarks/eval_overhead.py

clean:
	rm -rf $(VENV) build dist *.egg-info
