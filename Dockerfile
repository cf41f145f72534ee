# The podwall image: the `podwall` CLI (agent, CNI installer, plugin) in a
# virtualenv at /opt/podwall, iptables (nft and legacy) and ipset.
#
#   docker build -t podwall:0.1.0 .
#
# The DaemonSet (deploy/base/daemonset.yaml) runs it three ways, all through the
# ENTRYPOINT: `podwall cni install --bundle ...` (init container), `podwall
# agent ...` and `podwall cni install --watch ...`.  `--bundle` copies this
# image's Python interpreter (/usr/local/bin/python3.11 and its shared
# libpython), its standard library and the firewall_plugin package into the
# host's CNI bin folder, because the plugin runs on the host, where there may be
# no Python.  So the interpreter must stay the base image's own build (not a
# distribution python3 with its stdlib spread over dist-packages), the
# virtualenv must be made from it, and both stages must use the same base.
# tests/unit/test_deploy_image.py checks these paths against the DaemonSet.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY podwall/ podwall/
COPY firewall_plugin/ firewall_plugin/
COPY firewall_operator/ firewall_operator/
COPY firewall_lab/ firewall_lab/
RUN python -m venv /opt/podwall \
 && /opt/podwall/bin/pip install . \
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
# fail the build, not the node, when a piece is missing
RUN podwall agent --help >/dev/null \
 && podwall cni install --help >/dev/null \
 && iptables-nft --version && iptables-legacy --version && ipset --version
ENTRYPOINT ["/opt/podwall/bin/podwall"]
CMD ["--help"]
