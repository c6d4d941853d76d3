"""vmjournal: create Linux VMs and collect their systemd journals."""

__version__ = "0.1.0"
