# The image manifests/deployment.yaml runs. Users build it on the public slim Python image:
#   make image                      (podman or docker build with the version and revision labels)
#   make sbom                       (its CycloneDX SBOM, in sbom/waypoint-webhook.cdx.json)
# BASE may name any Debian-like image with python3 (3.11, the interpreter requirements.lock was
# resolved for) and its venv module; the test suite builds it on a base made from Debian packages,
# since no registry is reachable there.
ARG BASE=docker.io/library/python:3.11-slim

FROM ${BASE} AS build
# Declared so that a build can pass the CA bundle pip must trust (never stored in the image).
ARG PIP_CERT
ARG PIP_INDEX_URL
ARG REVISION=unknown
# A virtualenv: the layout does not depend on how the base packages Python.
RUN python3 -m venv /opt/waypoint-webhook
# Every dependency from the lock, each file checked against its hash (pip refuses anything
# unpinned, unhashed or missing from it); the project itself without dependencies and without
# build isolation, so even its build backend comes from the lock. pip check proves the set whole.
COPY requirements.lock /src/
RUN /opt/waypoint-webhook/bin/pip install --no-cache-dir --no-compile --disable-pip-version-check \
      --require-hashes --only-binary=:all: -r /src/requirements.lock
COPY pyproject.toml README.md /src/
COPY webhook /src/webhook
RUN /opt/waypoint-webhook/bin/pip install --no-cache-dir --no-compile --disable-pip-version-check \
      --no-deps --no-build-isolation /src \
 && printf '%s\n' "${REVISION}" > "$(/opt/waypoint-webhook/bin/python -c \
      'import os, webhook.cli; print(os.path.dirname(webhook.cli.__file__))')/REVISION" \
 && /opt/waypoint-webhook/bin/pip uninstall --yes --quiet setuptools wheel \
 && /opt/waypoint-webhook/bin/pip check \
 && /opt/waypoint-webhook/bin/python -m compileall -q /opt/waypoint-webhook/lib \
 && /opt/waypoint-webhook/bin/pip uninstall --yes --quiet pip

# `--target sbom --output type=local,dest=sbom`: the SBOM of exactly what the image holds,
# generated from the installed environment by CycloneDX's own tool (pinned in its lock).
FROM build AS sbom-tool
ARG PIP_CERT
ARG PIP_INDEX_URL
COPY requirements-sbom.lock pyproject.toml /sbom-src/
RUN python3 -m venv /opt/sbom \
 && /opt/sbom/bin/pip install --no-cache-dir --disable-pip-version-check --require-hashes \
      -r /sbom-src/requirements-sbom.lock \
 && mkdir /out \
 && /opt/sbom/bin/cyclonedx-py environment --pyproject /sbom-src/pyproject.toml --mc-type application \
      --output-reproducible --output-format JSON --output-file /out/waypoint-webhook.cdx.json \
      /opt/waypoint-webhook
FROM scratch AS sbom
COPY --from=sbom-tool /out/ /

FROM ${BASE}
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=
LABEL org.opencontainers.image.title="waypoint-webhook" \
      org.opencontainers.image.description="Kubernetes admission webhook that validates and defaults Istio ambient-mode waypoint configuration" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="https://github.com/waypoint-webhook/waypoint-webhook" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/waypoint-webhook /opt/waypoint-webhook
ENV PATH=/opt/waypoint-webhook/bin:/usr/local/bin:/usr/bin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# 65532 matches runAsUser in the Deployment, whose root filesystem is read-only: the process
# writes only below /tmp (an emptyDir), and creates what it needs there itself.
USER 65532:65532
EXPOSE 8443
ENTRYPOINT ["waypoint-webhook"]
CMD ["serve", "--cluster", "--port=8443", "--tls-cert=/tls/tls.crt", "--tls-key=/tls/tls.key"]
