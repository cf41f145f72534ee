# The podwall image: the `podwall` CLI (agent, CNI installer, plugin) in a
# virtualenv at /opt/podwall, iptables (nft and legacy) and ipset.
#
#   podman build --network host -t podwall:0.1.0 .      (or docker build)
#   make image                                           (this repository's build, see deploy/README.md)
#
# The DaemonSet (deploy/base/daemonset.yaml) runs it three ways, all through the
# ENTRYPOINT: `podwall cni install --bundle ...` (init container), `podwall
# agent ...` and `podwall cni install --watch ...`.  `--bundle` copies this
# image's Python interpreter (/usr/local/bin/python3.11 and its shared
# libpython) and the modules the CNI plugin imports (firewall_install.bundle)
# into the host's CNI bin folder, because the plugin runs on the host, where
# there may be no Python.  So the interpreter must stay the base image's own
# build (CPython in /usr/local, as in the official python images), the
# virtualenv must be made from it, and both stages must use the same base.
# The bundle needs the glibc its interpreter was built against: with the
# default base (Debian 12) that is glibc 2.35; deploy/README.md says how to
# reach older hosts.  tests/unit/test_deploy_image.py checks these paths
# against the DaemonSet; `make test-image` builds and runs the image.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# PIP_NO_INDEX=1: install only from deploy/image/wheels (make image, offline builds)
ARG PIP_NO_INDEX=0
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_FIND_LINKS=/wheels \
    PIP_NO_INDEX=${PIP_NO_INDEX}
# python-iptables (the iptc backend) compiles a small C extension
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/podwall
WORKDIR /src
# the dependencies first, so that a code change rebuilds only the layers below
COPY deploy/image/wheels/ /wheels/
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && /opt/podwall/bin/pip install -r /tmp/requirements.txt
COPY podwall/ podwall/
COPY firewall_plugin/ firewall_plugin/
COPY firewall_install/ firewall_install/
COPY firewall_operator/ firewall_operator/
COPY firewall_lab/ firewall_lab/
RUN /opt/podwall/bin/pip install --no-deps . \
 && /opt/podwall/bin/podwall cni install --help >/dev/null

FROM ${PYTHON_IMAGE}
# iptables brings iptables-nft, iptables-legacy and libip4tc/libxtables (used by
# the iptc backend through python-iptables); ipset the set tool.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends iptables ipset \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/podwall /opt/podwall
ENV PATH=/opt/podwall/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# fail the build, not the node, when a piece is missing (`ipset --version` asks the
# kernel, which a build sandbox refuses: --help does not); `cni glibc` derives the
# host bundle (it fails when the CNI path imports what a bundle cannot carry)
RUN podwall agent --help >/dev/null \
 && podwall cni install --help >/dev/null \
 && podwall cni glibc \
 && iptables-nft --version && iptables-legacy --version && ipset --help >/dev/null
ENTRYPOINT ["/opt/podwall/bin/podwall"]
CMD ["--help"]
