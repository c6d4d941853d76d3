"""Files baked into the base image, and the layout of the per-VM config drive.

The first-boot unit plays the part of Azure's CustomScript extension: it mounts the config drive
the provider made for this VM, runs ``bootstrap.sh`` from it (the same script Azure runs), and
reports the outcome on the serial console, where the provider waits for it.
"""

from __future__ import annotations

import hashlib

CONFIG_LABEL = "VMJCONFIG"
ROOT_LABEL = "vmjroot"
# What the first-boot script prints on the serial console; the provider waits for these.
MARKER_OK = "vmjournal-firstboot: ok"
MARKER_FAILED = "vmjournal-firstboot: failed"
# The line the first boot logs into the guest's journal once the agent is installed.
JOURNAL_MARKER = "vmjournal first boot complete"

FIRSTBOOT_SCRIPT = f"""#!/bin/sh
# Run once, at the first boot of a VM: install the vmjournal agent from the config drive.
set -u
say() {{ echo "$*"; echo "$*" > /dev/ttyS0 2>/dev/null || true; }}
dev=/dev/disk/by-label/{CONFIG_LABEL}
i=0
while [ ! -e "$dev" ] && [ "$i" -lt 60 ]; do sleep 1; i=$((i + 1)); done
[ -e "$dev" ] || {{ say "{MARKER_FAILED}: no config drive labelled {CONFIG_LABEL}"; exit 1; }}
mnt=/run/vmjournal-config
mkdir -p "$mnt"
mount -o ro "$dev" "$mnt" || {{ say "{MARKER_FAILED}: cannot mount the config drive"; exit 1; }}
if [ -f "$mnt/hostname" ]; then hostname "$(cat "$mnt/hostname")"; cp "$mnt/hostname" /etc/hostname; fi
rc=0
sh "$mnt/bootstrap.sh" || rc=$?
if [ "$rc" -eq 0 ] && [ -f "$mnt/after-install.sh" ]; then
    # Operator-supplied commands run in their own unit, so they may even reboot the guest.
    install -m 0700 "$mnt/after-install.sh" /var/lib/vmjournal/after-install.sh
fi
umount "$mnt"
if [ "$rc" -ne 0 ]; then say "{MARKER_FAILED}: bootstrap.sh exited with status $rc"; exit "$rc"; fi
touch /var/lib/vmjournal/first-boot-done
echo "{JOURNAL_MARKER}"
if [ -f /var/lib/vmjournal/after-install.sh ]; then
    systemd-run --no-block --unit=vmjournal-after-install --description="vmjournal after-install commands" \\
        /bin/sh /var/lib/vmjournal/after-install.sh
fi
say "{MARKER_OK}"
"""

FIRSTBOOT_UNIT = """[Unit]
Description=vmjournal first boot: install the agent from the config drive
ConditionPathExists=!/var/lib/vmjournal/first-boot-done
After=local-fs.target systemd-udevd.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/vmjournal-firstboot
StateDirectory=vmjournal
SyslogIdentifier=vmjournal-firstboot
TimeoutStartSec=10min

[Install]
WantedBy=multi-user.target
"""

NETWORK_CONFIG = """[Match]
Name=en* eth*

[Network]
DHCP=ipv4
"""

JOURNALD_CONFIG = """[Journal]
# Keep every boot on disk: the agent resumes after a reboot from its saved cursor.
Storage=persistent
"""

FSTAB = f"LABEL={ROOT_LABEL} / ext4 defaults,errors=remount-ro 0 1\n"

# Files written into the tree, path relative to its root -> (mode, content).
FILES: dict[str, tuple[int, str]] = {
    "usr/local/sbin/vmjournal-firstboot": (0o755, FIRSTBOOT_SCRIPT),
    "etc/systemd/system/vmjournal-firstboot.service": (0o644, FIRSTBOOT_UNIT),
    "etc/systemd/network/10-dhcp.network": (0o644, NETWORK_CONFIG),
    "etc/systemd/journald.conf.d/vmjournal.conf": (0o644, JOURNALD_CONFIG),
    "etc/fstab": (0o644, FSTAB),
    "etc/hostname": (0o644, "vmjournal\n"),
}
ENABLE_UNITS = ("vmjournal-firstboot.service", "systemd-networkd.service")
# Nothing in a short-lived guest needs them, and under emulation every unit costs boot time.
MASK_UNITS = (
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
    "systemd-networkd-wait-online.service",
)
PACKAGES = ("systemd", "systemd-sysv", "udev", "python3", "iproute2", "linux-image-cloud-amd64", "initramfs-tools")


def recipe_digest(suite: str) -> str:
    """Changes whenever what goes into the base image changes, so a stale cached image is rebuilt."""
    h = hashlib.sha256(suite.encode())
    for path, (mode, content) in sorted(FILES.items()):
        h.update(f"{path}\0{mode}\0{content}\0".encode())
    h.update("\0".join(ENABLE_UNITS + MASK_UNITS + PACKAGES).encode())
    return h.hexdigest()[:10]
