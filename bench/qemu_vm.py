# ruff: noqa: T201  (a benchmark prints its figures)
"""Local QEMU VM figures: base image build time, create-to-first-event, entry-to-visible latency.

    python bench/qemu_vm.py [--data-dir DIR] [--markers 20] [--interval 1.0]

Starts the real service (`vmjournal serve`, embedded PostgreSQL, QEMU provider) on a free loopback
port, creates one VM through the API, and has the guest log a marker line every --interval seconds
once the agent runs. Latency is the time the marker is first visible through the API minus its
journal timestamp; the guest clock starts from the host's, so small offsets are possible.
Prints the figures; targets: create to first event under 60 s (TCG), latency median under 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from vmjournal.config import QemuSettings
from vmjournal.providers.qemu.image import ensure_base_image

MARKERS = """
i=0
until grep -q '^LAST_CURSOR=' /var/lib/vmjournal-agent/state 2>/dev/null || [ "$i" -ge 600 ]; do
    sleep 1; i=$((i + 1))
done
sleep 5
for k in 1 2 3 4 5 6 7 8 9 10; do echo "vmjournal-bench clock $(date +%s.%N)" > /dev/ttyS0; sleep 0.3; done
n=1
while [ "$n" -le {count} ]; do
    echo "vmjournal-bench marker $n" | systemd-cat -t vmjournal-bench
    sleep {interval}
    n=$((n + 1))
done
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def wait_healthy(client: httpx.AsyncClient, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit(f"the service exited with {proc.returncode}")
        try:
            if (await client.get("/healthz")).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.1)
    raise SystemExit("the service did not become healthy")


async def watch_clock(console: Path, offsets: list[float]) -> None:
    """Guest clock lines, timed by when they appear in the console log (host clock)."""
    with console.open("rb") as f:
        f.seek(0, os.SEEK_END)
        pending = b""
        while True:
            chunk = f.read()
            now = time.time()
            if not chunk:
                await asyncio.sleep(0.002)
                continue
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if b"vmjournal-bench clock " in line:
                    guest = float(line.split(b"vmjournal-bench clock ", 1)[1].split()[0])
                    offsets.append(guest - now)


async def run(args: argparse.Namespace) -> None:
    data = Path(args.data_dir or tempfile.mkdtemp(prefix="vmjournal-bench-"))
    images = data / "images"
    settings = QemuSettings(_env_file=None, images_dir=images)
    cached = any(images.glob("*/manifest.json"))
    t = time.monotonic()
    await ensure_base_image(settings, data)
    print(f"base image: {time.monotonic() - t:.1f} s" + (" (cached)" if cached else " (built)"))

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMJOURNAL_")}
    env |= {
        "VMJOURNAL_DATA_DIR": str(data),
        "VMJOURNAL_PORT": str(port),
        "VMJOURNAL_PROVIDER": "qemu",
        "VMJOURNAL_QEMU_IMAGES_DIR": str(images),
        "VMJOURNAL_QEMU_AFTER_INSTALL": MARKERS.format(count=args.markers, interval=args.interval),
    }
    log = (data / "service.log").open("ab")
    serve = (
        "import logging, sys; logging.basicConfig(level=logging.INFO, format='%(asctime)s %(name)s %(message)s');"
        "from vmjournal.cli import app; sys.argv = ['vmjournal', 'serve']; app()"
    )
    service = subprocess.Popen([sys.executable, "-c", serve], env=env, stdout=log, stderr=log, start_new_session=True)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            await wait_healthy(client, service)
            name = f"bench-{int(time.time())}"
            t0 = time.monotonic()
            response = await client.post(f"/vm/{name}/small", params={"provider": "qemu"})
            response.raise_for_status()
            running_at = first_at = None
            while first_at is None:
                vm = (await client.get(f"/vm/{name}")).json()
                if vm["status"] == "failed":
                    raise SystemExit(f"VM failed: {vm['error']}")
                if running_at is None and vm["status"] == "running":
                    running_at = time.monotonic() - t0
                if vm["event_count"] > 0:
                    first_at = time.monotonic() - t0
                if time.monotonic() - t0 > 900:
                    raise SystemExit("no event within 900 s")
                await asyncio.sleep(0.2)
            print(f"accelerator: {vm['details'].get('accel')}")
            print(f"create -> running: {running_at or first_at:.1f} s")
            print(f"create -> first event visible: {first_at:.1f} s")

            offsets: list[float] = []
            clock = asyncio.create_task(watch_clock(Path(vm["details"]["console_log"]), offsets))
            seen: dict[str, float] = {}
            latencies: list[float] = []
            deadline = time.monotonic() + 120 + args.markers * args.interval * 3
            while len(seen) < args.markers and time.monotonic() < deadline:
                page = (
                    await client.get(f"/vm/{name}/boot", params={"grep": "vmjournal-bench marker", "limit": 1000})
                ).json()
                now = time.time()
                for event in page["events"]:
                    message = event["message"]
                    if message not in seen:
                        seen[message] = now
                        latencies.append(now - int(event["__REALTIME_TIMESTAMP"]) / 1e6)
                await asyncio.sleep(0.05)
            clock.cancel()
            if offsets:
                offset = statistics.median(offsets)
                print(f"guest clock minus host clock: {offset:+.3f} s (median of {len(offsets)} console samples)")
                latencies = [lat + offset for lat in latencies]
            if latencies:
                latencies.sort()
                p90 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.9))]
                print(
                    f"entry -> visible latency over {len(latencies)} markers: median "
                    f"{statistics.median(latencies):.2f} s, p90 {p90:.2f} s, max {latencies[-1]:.2f} s"
                )
            else:
                print("entry -> visible latency: no marker arrived")
            t = time.monotonic()
            await client.delete(f"/vm/{name}")
            while (await client.get(f"/vm/{name}")).status_code != 404:  # deleted VMs are listed no more
                if time.monotonic() - t > 120:
                    raise SystemExit(f"the VM was not deleted within 120 s (see {data / 'service.log'})")
                await asyncio.sleep(0.2)
            print(f"delete -> deleted: {time.monotonic() - t:.1f} s")
    finally:
        service.terminate()
        service.wait(30)
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="reuse this data directory (and its cached base image)")
    parser.add_argument("--markers", type=int, default=20)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
