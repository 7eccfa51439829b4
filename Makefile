# Two commands set up a fresh machine (Python 3.11 and internet access to PyPI):
#   make demo   create .venv, install the pinned requirements, run predict.py on faces/ (or sample photos)
#   make test   the same set-up, then the test suite (what CI runs, via .ci/run)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt | cksum | cut -d' ' -f1)

.PHONY: demo demo-train test bench bench-quick clean

$(STAMP): requirements.txt
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if (3, 11) <= v <= (3, 13) else "Python 3.11 (3.12/3.13 may work) is needed; this is " + sys.version + ". Try: make PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	rm -f $(VENV)/.installed-* && touch $@

demo: $(STAMP)
	$(PY) predict.py

demo-train: $(STAMP)
	$(PY) input_data.py summary
	$(PY) serializer.py
	$(PY) train.py --model v2_convnet --dry-run

test: $(STAMP)
	$(PY) -m pytest -q

# The fast figures the docs quote (load, inference and photo speed, export parity), ~5 minutes.
bench-quick: $(STAMP)
	$(PY) bench/quick.py

bench: bench-quick

clean:
	rm -rf $(VENV) data/synthetic data/samples.png data.p data.p.zip
