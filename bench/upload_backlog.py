"""A journal-upload backlog: stock ``systemd-journal-upload`` shipping a whole journal in one POST.

Writes N realistic entries (about 25 fields and 1 kB each, as a Debian guest writes them) into a
journal file with systemd-journal-remote, then runs ``systemd-journal-upload --file F`` against
``vmjournal serve`` on its embedded PostgreSQL. Prints entries/s, the body size and the service's
peak RSS (VmHWM) meanwhile: the stream commits batch by batch, so the RSS stays flat whatever N.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
from common import running_service
from support.api import enroll_sync
from support.journal_files import sample_entries, write_journal

JOURNAL_UPLOAD = next(
    (p for p in ("/lib/systemd/systemd-journal-upload", "/usr/lib/systemd/systemd-journal-upload") if Path(p).exists()),
    "systemd-journal-upload",
)


def vm_hwm_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def realistic(n: int) -> list[dict[str, str | bytes]]:
    """sample_entries with the trusted fields journald adds to a service's output."""
    entries = []
    for i, e in enumerate(sample_entries(n, boots=3)):
        comm = str(e.get("SYSLOG_IDENTIFIER", "daemon"))
        entries.append(
            {
                **e,
                "_COMM": comm,
                "_EXE": f"/usr/sbin/{comm}",
                "_CMDLINE": f"/usr/sbin/{comm} --foreground -c /etc/{comm}",
                "_GID": "0",
                "_CAP_EFFECTIVE": "1ffffffffff",
                "_SYSTEMD_CGROUP": f"/system.slice/{comm}.service",
                "_SYSTEMD_SLICE": "system.slice",
                "_SYSTEMD_INVOCATION_ID": f"{i % 50:032x}",
                "_SOURCE_REALTIME_TIMESTAMP": str(e["__REALTIME_TIMESTAMP"]),
                "SYSLOG_FACILITY": "3",
                "CODE_FILE": f"src/{comm}/main.c",
                "CODE_LINE": str(100 + i % 900),
                "CODE_FUNC": "handle_request",
                "_STREAM_ID": f"{i % 97:032x}",
            }
        )
    return entries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=150_000, help="entries in the journal")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vmjournal-upload-") as tmp:
        started = time.monotonic()
        # journal-remote rotates into several files as the journal grows: ship the directory.
        files = write_journal(realistic(args.n), Path(tmp) / "journal", "backlog").parent
        body = len(
            subprocess.run(
                ["journalctl", f"--directory={files}", "-o", "export", "--no-pager"], check=True, capture_output=True
            ).stdout
        )
        disk = sum(f.stat().st_size for f in files.iterdir())
        print(
            f"journal: {args.n:,} entries, {disk / 2**20:.0f} MiB on disk, "
            f"{body / 2**20:.0f} MiB of export format (written in {time.monotonic() - started:.1f} s)"
        )
        with running_service() as svc:
            token = enroll_sync(svc.url, "backlog")
            before = vm_hwm_mib(svc.pid)
            t0 = time.monotonic()
            subprocess.run(
                [
                    JOURNAL_UPLOAD,
                    f"--directory={files}",
                    f"--url={svc.url}/ingest/{token}",
                    "--follow=no",
                    f"--save-state={tmp}/state",
                ],
                check=True,
                capture_output=True,
            )
            elapsed = time.monotonic() - t0
            count = httpx.get(f"{svc.url}/vm/backlog", timeout=30).json()["event_count"]
            assert count == args.n, f"{count} of {args.n} stored"
            print(
                f"systemd-journal-upload -> service: {args.n / elapsed:,.0f} entries/s "
                f"({elapsed:.1f} s, {body / elapsed / 2**20:.1f} MiB/s of export format)"
            )
            print(f"service peak RSS: {before:.0f} MiB before, {vm_hwm_mib(svc.pid):.0f} MiB after the upload")


if __name__ == "__main__":
    main()
