# Image for manifests/deployment.yaml. Slim Python, non-root, gunicorn (gthread) via the CLI.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY webhook ./webhook
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY --from=build /install /usr/local
# 65532 matches runAsUser in the Deployment; the root filesystem is read-only there, /tmp an emptyDir.
USER 65532:65532
EXPOSE 8443
ENTRYPOINT ["waypoint-webhook"]
CMD ["serve", "--cluster", "--port=8443", "--tls-cert=/tls/tls.crt", "--tls-key=/tls/tls.key"]
