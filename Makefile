# napari-segpl developer commands. `make test` and `make run` set everything up first.

SHELL       := /bin/bash
PYTHON      ?= python3
VENV        := .venv
PY          := $(VENV)/bin/python
STAMP       := $(VENV)/.segpl-setup-done
PYTEST_ARGS ?=
# pytest workers (pytest-xdist; each test file runs whole in one worker); 0 runs in one process
TEST_WORKERS ?= 2

# Libraries Qt/napari need to open a (virtual) display, plus the Xvfb server itself.
APT_PACKAGES := xvfb libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxkbcommon-x11-0 \
	libxcb-image0 libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xfixes0 \
	libxcb-xkb1 libdbus-1-3 libfontconfig1 libegl1 libgl1

.PHONY: setup system-packages test lint format run bench clean distclean

setup: system-packages $(STAMP)

# Cheap check every time (a fresh machine may come with an old .venv); apt only when needed.
system-packages:
	@if ! command -v dpkg-query >/dev/null 2>&1; then \
		echo "setup: no dpkg here; install the equivalents of: $(APT_PACKAGES)"; exit 0; \
	fi; \
	missing=""; \
	for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${db:Status-Abbrev}' "$$p" 2>/dev/null | grep -q '^ii' \
			|| missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
		echo "setup: installing Debian packages:$$missing"; \
		$$sudo apt-get update && \
		$$sudo env DEBIAN_FRONTEND=noninteractive \
			apt-get install -y --no-install-recommends $$missing; \
	fi

$(STAMP): setup.cfg pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
		echo "setup: '$(PYTHON) -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv)"; \
		exit 1; }
	$(PY) -m pip install -e '.[testing]'
	touch $@

test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

run: setup
	$(PY) examples/run_napari.py

bench: setup
	@if [ -f benchmarks/__main__.py ]; then $(PY) -m benchmarks; \
	else echo "bench: no benchmarks yet (benchmarks/__main__.py is missing)"; fi

clean:
	rm -rf build dist .pytest_cache .ruff_cache *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
