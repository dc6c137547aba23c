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

test: $(STAMP)
	$(PY) -m pytest

docs: $(STAMP)
	$(MAKE) -C docs html

clean:
	rm -rf $(VENV) demo_data .pytest_cache .hypothesis
