# vmjournal service image. The base is a build argument so it builds from a locally made image
# (scripts/build-image.sh) where no image registry is reachable; any Debian 12 image works too.
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS build
# The local base already has python3-venv; stock Debian images do not.
RUN if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then \
        apt-get update && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
        && rm -rf /var/lib/apt/lists/*; \
    fi
RUN python3 -m venv /opt/vmjournal
COPY . /src
# scripts/build-image.sh leaves a wheelhouse in build/wheels, made with the host's package index
# settings, so the build itself needs no network; without one, pip fetches from its default index.
RUN if ls /src/build/wheels/vmjournal-*.whl >/dev/null 2>&1; then \
        /opt/vmjournal/bin/pip install --no-cache-dir --disable-pip-version-check --no-compile \
            --no-index --find-links /src/build/wheels vmjournal; \
    else \
        /opt/vmjournal/bin/pip install --no-cache-dir --disable-pip-version-check --no-compile /src; \
    fi \
    && /opt/vmjournal/bin/pip uninstall -y --disable-pip-version-check pip setuptools \
    && /opt/vmjournal/bin/python -m compileall -q -j 0 /opt/vmjournal/lib >/dev/null

FROM ${BASE_IMAGE}
RUN if ! command -v python3 >/dev/null; then \
        apt-get update && apt-get install -y --no-install-recommends python3 ca-certificates \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/vmjournal --create-home vmjournal
COPY --from=build /opt/vmjournal /opt/vmjournal
# Binding 0.0.0.0 requires VMJOURNAL_API_KEYS: the service refuses to listen beyond loopback without keys.
# VMJOURNAL_DATABASE_URL should name a real PostgreSQL; unset, an embedded one starts under DATA_DIR.
ENV PATH=/opt/vmjournal/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 \
    VMJOURNAL_HOST=0.0.0.0 \
    VMJOURNAL_PORT=8000 \
    VMJOURNAL_DATA_DIR=/var/lib/vmjournal
USER vmjournal
WORKDIR /var/lib/vmjournal
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD python3 -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('VMJOURNAL_PORT', '8000'), timeout=4)"
CMD ["sh", "-c", "exec vmjournal serve --host \"$VMJOURNAL_HOST\" --port \"$VMJOURNAL_PORT\""]
