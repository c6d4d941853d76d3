"""Host names and addresses: the rules both the settings and the providers apply."""

from __future__ import annotations

import ipaddress
import re


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback IP address; a name that would need DNS does not count."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def hostname_label(name: str) -> str | None:
    """``name`` as a guest's hostname (one DNS label), or None when nothing usable is left.

    Lower case letters, digits and inner hyphens, at most 63 characters, and not digits only:
    Azure refuses an all-digit computer name, and such a hostname reads like an address.
    """
    label = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63].rstrip("-")
    return label if label and not label.isdigit() else None
