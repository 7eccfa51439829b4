# Two commands set up a fresh machine (Python 3.11 and internet access to PyPI):
#   make demo   create .venv, install the pinned requirements, run predict.py on faces/ (or sample photos)
#   make test   the same set-up, then the test suite (what CI runs, via .ci/run)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt | cksum | cut -d' ' -f1)

.PHONY: demo demo-train test test-low check-inputs bench bench-quick teacher web web-deps clean

$(STAMP): requirements.txt
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if (3, 11) <= v <= (3, 13) else "Python 3.11 or 3.12 (3.13 may work) is needed; this is " + sys.version + ". Try: make PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	rm -f $(VENV)/.installed-* && touch $@

demo: $(STAMP)
	$(PY) predict.py

# Kaggle's CSVs in data/ (else synthetic faces written there) -> data.p -> a 3-epoch v2 run on
# it. Everything it writes is git-ignored: data/synthetic/, data.p, runs/ logs/ and models/ demo-train.
demo-train: $(STAMP)
	$(PY) serializer.py --out data.p
	$(PY) input_data.py summary
	$(PY) train.py --model v2_convnet --data data.p --epochs 3 --run-id demo-train --overwrite --quiet
	@echo "outputs: runs/demo-train/ (learning_curve.png, samples.png, history.csv), logs/demo-train/ (tensorboard --logdir logs), models/v2_convnet/model.keras"

test: $(STAMP)
	$(PY) -m pytest -q

# The low end of the supported range (Colab's TensorFlow 2.19, Keras 3.10, numpy 2.0;
# docs/portability.md): requirements-low.txt in .venv-low, then requirements-notebook.txt on top
# as a notebook's first cell adds it, then the tier of the suite that runs every command line once.
VENV_LOW := .venv-low
STAMP_LOW := $(VENV_LOW)/.installed-$(shell cat requirements-low.txt | cksum | cut -d' ' -f1)

$(STAMP_LOW): requirements-low.txt requirements-notebook.txt
	$(PYTHON) -m venv $(VENV_LOW)
	$(VENV_LOW)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-low.txt
	$(VENV_LOW)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-notebook.txt
	rm -f $(VENV_LOW)/.installed-* && touch $@

test-low: $(STAMP_LOW)
	FKD_REQUIREMENTS=requirements-low.txt $(VENV_LOW)/bin/python -m pytest -q -m platform

# Careless and hostile input through every command line (issue 15): one error line, no traceback.
check-inputs: $(STAMP)
	$(PY) -m pytest -q tests/test_bad_inputs.py

# The fast figures the docs quote (load, inference and photo speed, export parity), ~5 minutes.
bench-quick: $(STAMP)
	$(PY) bench/quick.py

bench: bench-quick

# dlib's face encoder, the teacher of the shipped face embedding: only to re-train it
# (python bench/recognition.py unseen, then ship; docs/recognition.md).
teacher: $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-teacher.txt

# The web page (docs/web.md): its npm packages pinned in web/package-lock.json, the page built
# into web/build/ (git-ignored) and served on http://localhost:8000 (Ctrl-C stops it).
web-deps: web/node_modules/.package-lock.json

web/node_modules/.package-lock.json: web/package-lock.json
	cd web && npm ci --no-audit --no-fund

web: $(STAMP) web-deps
	$(PY) web/build.py
	@echo "open http://localhost:8000"
	$(PY) -m http.server 8000 --bind 127.0.0.1 --directory web/build

clean:
	rm -rf $(VENV) $(VENV_LOW) data/synthetic data/samples.png data.p data.p.zip
