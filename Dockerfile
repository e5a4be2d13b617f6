# tracker — the daemon and web view.  Build: docker build -t tracker .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    TRACKER_CONFIG=/etc/tracker/feeds.yaml \
    TRACKER_DATABASE_URL=sqlite:////var/lib/tracker/tracker.db \
    TRACKER_WEB_HOST=0.0.0.0 \
    TRACKER_WEB_PORT=8080

RUN groupadd --system tracker && useradd --system --gid tracker --home-dir /var/lib/tracker tracker \
    && mkdir -p /var/lib/tracker /etc/tracker && chown tracker:tracker /var/lib/tracker

WORKDIR /app
COPY pyproject.toml README.md ./
COPY tracker ./tracker
RUN pip install .
COPY feeds.yaml /etc/tracker/feeds.yaml

USER tracker
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status == 200 else 1)"
CMD ["sh", "-c", "tracker init && exec tracker run"]
