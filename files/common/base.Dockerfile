# The first layers of every app image genai-workstation builds, put in place of the
# `# genai:include common/base.Dockerfile [apt package...]` line of files/<app>/Dockerfile
# by the render (stacks/builtin.py app_dockerfile); the packages go to base-setup.sh.
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

SHELL ["/bin/sh", "-eu", "-c"]

# Each ARG is declared just before the first step that uses it: a changed value (they are the
# inventory's settings) then rebuilds from that step on, never the PyTorch layer for a new
# app ref or custom node. ARGs are in the environment of RUN steps: pip reads
# PIP_INDEX_URL and PIP_TRUSTED_HOST (set by the render for an http:// index) from there.
ARG APT_MIRROR=
ARG PIP_INDEX_URL=https://pypi.org/simple
ARG PIP_TRUSTED_HOST=
COPY apt-mirror.sh base-setup.sh /opt/genai/
RUN sh /opt/genai/base-setup.sh "${APT_MIRROR}" @@APT_PACKAGES@@
