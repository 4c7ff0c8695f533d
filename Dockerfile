# One image for all four services; the container's command picks the service:
#   python -m services.<membership|events|metrics|notify>.app
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
# The `backbone` command (kpis rebuild, roster import) lives above the services.
COPY cli ./cli
RUN pip install . \
    && useradd --system --uid 10001 --no-create-home backbone

USER 10001
# Services listen on all interfaces inside the container; each sets its own <NAME>_PORT.
ENV MEMBERSHIP_HOST=0.0.0.0 EVENTS_HOST=0.0.0.0 METRICS_HOST=0.0.0.0 NOTIFY_HOST=0.0.0.0
EXPOSE 8101 8102 8103 8104
# SERVICE_PORT is set per container (compose and Kubernetes) so one healthcheck serves all four.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"SERVICE_PORT\"]}/healthz', timeout=2)"]
CMD ["python", "-m", "services.membership.app"]
