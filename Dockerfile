# reverify: one image for `reverify worker`, `reverify migrate`, `reverify sink` and the rest of the CLI.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src

# Dependencies first, from pyproject.toml alone, so editing the code does not re-download them (chdb is large).
# setuptools needs the listed packages to exist, so empty ones stand in for this layer.
COPY pyproject.toml README.md ./
RUN mkdir -p reverify schemas streams/cli streams/console processors/assurance processors/drift processors/experiments processors/notify processors/slo sinks \
    && touch reverify/__init__.py schemas/__init__.py streams/__init__.py streams/cli/__init__.py streams/console/__init__.py \
       processors/__init__.py processors/assurance/__init__.py processors/drift/__init__.py processors/experiments/__init__.py \
       processors/notify/__init__.py processors/slo/__init__.py sinks/__init__.py \
    && pip install . \
    && pip uninstall -y reverify \
    && rm -rf reverify schemas streams processors sinks build *.egg-info

COPY reverify ./reverify
COPY schemas ./schemas
COPY streams ./streams
COPY processors ./processors
COPY sinks ./sinks
RUN pip install --no-deps . && rm -rf build *.egg-info

# Not root: the workers only need their data directory (Faust's datadir lives under REVERIFY_DATA_DIR).
RUN useradd --system --uid 10001 --create-home --home-dir /var/lib/reverify --shell /usr/sbin/nologin reverify
USER reverify
WORKDIR /var/lib/reverify
ENV REVERIFY_DATA_DIR=/var/lib/reverify

# 9464: Prometheus /metrics (REVERIFY_METRICS_PORT); 6066: /healthz and /readyz (REVERIFY_WEB_PORT)
EXPOSE 9464 6066

ENTRYPOINT ["reverify"]
CMD ["worker"]
