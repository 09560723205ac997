# One image for every luna-streams process; the command picks the component:
#   docker run IMAGE gateway | queue-worker | autorestart-worker | log-janitor
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 luna \
    && useradd --system --uid 10001 --gid luna --home-dir /app --shell /usr/sbin/nologin luna

WORKDIR /app

# Dependencies first, pinned by constraints.txt (pip freeze), so that a source change does not
# reinstall them: the project's and its `tracing` extra's (OpenTelemetry, used only when
# OTEL_EXPORTER_OTLP_ENDPOINT is set).
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['tracing']))" > /tmp/requirements.txt \
    && pip install --no-cache-dir -c constraints.txt -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The sources stay in /app (the working directory): `luna-streams <component>` runs
# `python -m <package>`, which imports the package from the working directory, so the gateway
# finds the developer manual in /app/docs next to it.
COPY README.md ./
COPY shared ./shared
COPY cli ./cli
COPY gateway ./gateway
COPY queue_worker ./queue_worker
COPY autorestart_worker ./autorestart_worker
COPY log_janitor ./log_janitor
COPY docs ./docs
RUN pip install --no-cache-dir -c constraints.txt . \
    && rm -rf build ./*.egg-info \
    && mkdir -p /app/var \
    && chown luna:luna /app/var

USER luna

# In a container the gateway and the workers' metrics must answer other containers: listen on
# every interface (outside one, both default to 127.0.0.1).
ENV LUNA_STREAMS_HOST=0.0.0.0 \
    LUNA_STREAMS_METRICS_HOST=0.0.0.0

EXPOSE 5160
STOPSIGNAL SIGTERM
ENTRYPOINT ["luna-streams"]
CMD ["gateway"]
