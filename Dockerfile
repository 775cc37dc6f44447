# The image manifests/deployment.yaml runs. Users build it on the public slim Python image:
#   podman build -t waypoint-webhook:0.1.0 .        (or docker build)
# BASE may name any Debian-like image with python3 (>= 3.11) and its venv module; the test suite
# builds it on a base made from Debian packages, since no registry is reachable there.
ARG BASE=docker.io/library/python:3.11-slim

FROM ${BASE} AS build
# Declared so that a build can pass the CA bundle pip must trust (never stored in the image).
ARG PIP_CERT
ARG PIP_INDEX_URL
# A virtualenv: the layout does not depend on how the base packages Python.
RUN python3 -m venv /opt/waypoint-webhook
COPY pyproject.toml README.md /src/
COPY webhook /src/webhook
RUN /opt/waypoint-webhook/bin/pip install --no-cache-dir --no-compile --disable-pip-version-check /src \
 && /opt/waypoint-webhook/bin/python -m compileall -q /opt/waypoint-webhook/lib \
 && /opt/waypoint-webhook/bin/pip uninstall --yes --quiet pip setuptools

FROM ${BASE}
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
