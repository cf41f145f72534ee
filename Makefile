# podwall: the two front-door commands are `make demo` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
DEB_PACKAGES := iptables ipset conntrack iproute2 nftables containernetworking-plugins busybox-static
# the host python to build the virtualenv from (the first real 3.11+ one)
HOST_PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	  c=$$(command -v $$p) || continue; \
	  $$c -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null && { $$c -c 'import sys; print(sys.executable)'; break; }; \
	done)

.PHONY: test unit kernel e2e lint demo bench deps venv clean image image-deps test-image

test: deps venv lint
	$(PY) -m pytest -q $(PYTEST_ARGS) tests

unit: venv
	$(PY) -m pytest -q $(PYTEST_ARGS) tests/unit

kernel: deps venv
	$(PY) -m pytest -q $(PYTEST_ARGS) tests/kernel

e2e: deps venv
	$(PY) -m pytest -q $(PYTEST_ARGS) tests/e2e

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

demo: deps venv
	$(VENV)/bin/podwall demo

bench: deps venv
	$(PY) -m bench

# Debian packages the kernel tests need; installed only when missing and root.
deps:
	@missing=""; \
	for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "missing Debian packages:$$missing (kernel tests will skip; run as root to install)"; \
	  fi; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -n "$(HOST_PYTHON)" || { echo "need Python >= 3.11"; exit 1; }
	test -x $(PY) || $(HOST_PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info

# ---- the container image (deploy/README.md, "The image") ----
# `make image` builds $(IMAGE) with podman.  No registry is reachable from the
# build machines, so unless $(BASE_IMAGE) exists it is assembled first
# (deploy/image/local-base.sh: debootstrap + the virtualenv's own CPython in
# /usr/local, the layout of the official python:3.11-slim image).  A release
# build passes the official base instead: `make image BASE_IMAGE=python:3.11-slim-bookworm`.
IMAGE ?= localhost/podwall:dev
BASE_IMAGE ?= localhost/podwall-python:3.11-slim-bookworm
IMAGE_BUILD_DIR ?= build/image
IMAGE_DEB_PACKAGES := podman buildah runc debootstrap busybox-static binutils
# 1: the dependencies' wheels come from this machine's pip (deploy/image/wheels/README.md)
LOCAL_WHEELS ?= 1
PODMAN := CONTAINERS_CONF=$(CURDIR)/deploy/image/containers.conf podman

image: image-deps venv
	@mkdir -p $(IMAGE_BUILD_DIR)
	@if ! $(PODMAN) image exists $(BASE_IMAGE); then \
	  echo "assembling $(BASE_IMAGE) (debootstrap, ~1 min)"; \
	  deploy/image/local-base.sh $(IMAGE_BUILD_DIR)/base $(BASE_IMAGE) \
	    "$$($(PY) -c 'import sys; print(sys._base_executable)')"; \
	fi
	@if [ "$(LOCAL_WHEELS)" = 1 ]; then \
	  $(PY) -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
	    > $(IMAGE_BUILD_DIR)/requirements.txt && \
	  $(PY) -m pip wheel -q -w deploy/image/wheels -r $(IMAGE_BUILD_DIR)/requirements.txt 'setuptools>=77' wheel; \
	fi
	$(PODMAN) build --network host --build-arg PYTHON_IMAGE=$(BASE_IMAGE) \
	  --build-arg PIP_NO_INDEX=$(LOCAL_WHEELS) -t $(IMAGE) .

# opt-in tier (not in `make test`): the image's own commands against the lab
test-image: deps image
	PODWALL_TEST_IMAGE=$(IMAGE) PODWALL_TEST_BASE_IMAGE=$(BASE_IMAGE) \
	  CONTAINERS_CONF=$(CURDIR)/deploy/image/containers.conf \
	  $(PY) -m pytest -q $(PYTEST_ARGS) tests/image

# machine setup for the image targets: installs Debian packages (as root, when missing)
image-deps:
	@missing=""; \
	for p in $(IMAGE_DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "missing Debian packages:$$missing (run as root to install)"; exit 1; \
	  fi; \
	fi
