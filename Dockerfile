# integration-api: the gateway server. Build: docker build -t integration-api .
# Run: docker run -p 50051:50051 -v ia-data:/data -e INTEGRATION_API_JWT_SECRET=... integration-api
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    INTEGRATION_API_HOST=0.0.0.0 \
    INTEGRATION_API_PORT=50051 \
    INTEGRATION_API_DATA_DIR=/data

# uid/gid 999 pinned (what --system picked anyway): the Helm chart's runAsUser names it, as Kubernetes'
# runAsNonRoot cannot check a user given by name.
RUN groupadd --system --gid 999 gateway && useradd --system --uid 999 --gid gateway --home-dir /app gateway \
    && mkdir -p /app /data && chown gateway:gateway /data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY integration_api ./integration_api
COPY providers ./providers
COPY auth ./auth
RUN pip install '.[server]'

USER gateway
VOLUME ["/data"]
EXPOSE 50051

# `health` finds the server the way `serve` does: INTEGRATION_API_PORT (127.0.0.1 for the 0.0.0.0 host), and TLS
# verified against INTEGRATION_API_TLS_CERT_FILE when it is set (INTEGRATION_API_TLS_SERVER_NAME: the name to check,
# when the certificate does not name 127.0.0.1).
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["integration-api", "health"]

ENTRYPOINT ["integration-api"]
CMD ["serve"]
