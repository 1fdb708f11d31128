# syntax=docker/dockerfile:1
# Goldpan's image: the wheel with its runtime dependencies and the PostgreSQL and Redis drivers;
# no sandbox, no test tools, no checkout. CI has no Docker engine, so scripts/wheel_smoke.sh
# (run by ./dev test) installs the same wheel the same way into a clean virtualenv and runs the
# same commands: db upgrade, serve, analyze. docs/DEPLOY.md describes the processes.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
WORKDIR /src
COPY pyproject.toml setup.py MANIFEST.in README.md ./
COPY shopify_app/ shopify_app/
COPY goldpan_sandbox/ goldpan_sandbox/
COPY web/ web/
COPY migrations/ migrations/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /dist .

FROM python:${PYTHON_VERSION}-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/goldpan/bin:$PATH
RUN python -m venv /opt/goldpan \
    && groupadd --system --gid 10001 goldpan \
    && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/goldpan goldpan
COPY --from=build /dist/ /tmp/dist/
# The wheel by its path (never a name pip could resolve elsewhere), its dependencies from PyPI.
RUN set -- /tmp/dist/goldpan-*.whl \
    && /opt/goldpan/bin/pip install --no-cache-dir "$1[postgres,redis]" \
    && rm -rf /tmp/dist

USER 10001:10001
# The SQLite default (sqlite:///var/goldpan.sqlite3) and huey's queue file land in
# /home/goldpan/var: mount a volume there on a single machine.
WORKDIR /home/goldpan
ENV PORT=8000
EXPOSE 8000
CMD ["shopify-app", "serve", "--host", "0.0.0.0"]
