# Two entry points, each doing all set-up on a fresh machine:
#   make demo   the main job end to end (real photos -> features -> classifier)
#   make test   the test suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.skbottleneck-installed

.PHONY: demo test docs venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,examples,docs]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py

# Two workers: the suite waits on subprocesses and file locks about half the
# time: on 2 cores it ran 26 min against 39.5 in one process; each worker holds its own
# TensorFlow. `$(PY) -m pytest` alone runs it in one process.
test: $(STAMP)
	$(PY) -m pytest -n 2 --dist worksteal

docs: $(STAMP)
	$(MAKE) -C docs html

clean:
	rm -rf $(VENV) demo_data .pytest_cache .hypothesis
