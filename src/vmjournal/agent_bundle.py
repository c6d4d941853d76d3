"""Package the agent for delivery to a machine: what the Azure and QEMU providers deliver, and
what an enrolled machine downloads.

``render_bootstrap_script`` gives a self-contained POSIX sh script that unpacks the agent files
and its config (service URL, VM name, token) into a private temporary directory and runs
``install.sh``, which installs the agent as a systemd service and exits. Azure carries it in the
CustomScript extension's ``protectedSettings.script`` (base64); the QEMU provider puts it on the
config drive. The script holds the token, so it must only travel in secret channels.
"""

from __future__ import annotations

import base64
import importlib.resources
from dataclasses import dataclass
from functools import cache
from pathlib import Path

# The program is vmjournal_agent.py; it imports vmjournal_agent_send.py from its own directory.
AGENT_FILES = ("vmjournal_agent.py", "vmjournal_agent_send.py", "vmjournal-agent.service", "install.sh")


@dataclass(frozen=True)
class AgentConfig:
    """What the agent on the VM needs: where to push, as whom, with which secret token."""

    url: str
    name: str
    token: str


def _agent_dir_candidates() -> list[Path]:
    found: list[Path] = []
    # A wheel carries them as package data (pyproject force-includes agent/ as vmjournal/agent_files).
    packaged = importlib.resources.files("vmjournal") / "agent_files"
    if isinstance(packaged, Path):
        found.append(packaged)
    # An editable install runs from the repository, where they sit in the top-level agent/.
    found.append(Path(__file__).resolve().parents[2] / "agent")
    return found


def agent_files() -> dict[str, bytes]:
    """The agent program, its systemd unit and install.sh, by file name."""
    return dict(_load_agent_files())


@cache
def _load_agent_files() -> dict[str, bytes]:
    for directory in _agent_dir_candidates():
        if all((directory / name).is_file() for name in AGENT_FILES):
            return {name: (directory / name).read_bytes() for name in AGENT_FILES}
    raise FileNotFoundError(
        "the agent files (" + ", ".join(AGENT_FILES) + ") are missing from this installation of vmjournal"
    )


def render_config(config: AgentConfig) -> str:
    """The agent's config file (``key = value`` lines) for ``config``."""
    for key, value in (("url", config.url), ("name", config.name), ("token", config.token)):
        if not value or any(ord(c) < 0x20 or c == "\x7f" for c in value) or value != value.strip():
            raise ValueError(f"agent {key} must be non-empty, on one line, without surrounding spaces")
    if not config.url.startswith(("http://", "https://")):
        raise ValueError("agent url must start with http:// or https://")
    return (
        "# vmjournal agent configuration. Secret: holds the VM's ingest token.\n"
        f"url = {config.url}\nname = {config.name}\ntoken = {config.token}\n"
    )


def render_bootstrap_script(config: AgentConfig) -> str:
    """A POSIX sh script that installs the agent configured with ``config`` and exits.

    Run it as root on the VM. It writes the files with mode 0600 into a fresh temporary
    directory, removes that directory when it ends, and exits with install.sh's status.
    """
    files = agent_files()
    files["agent.conf"] = render_config(config).encode()
    return _script(files, "")


def render_enroll_script() -> str:
    """The bootstrap for a machine the service did not create, served without any secret.

    ``sh SCRIPT --url URL --name NAME`` reads the token from standard input, so it never
    shows in the process list or the shell history; the config is written as the provider
    bootstrap writes it.
    """
    config_step = (
        'url=""; name=""\n'
        "while [ $# -gt 0 ]; do\n"
        '    case "$1" in\n'
        "        --url) url=$2; shift 2 ;;\n"
        "        --name) name=$2; shift 2 ;;\n"
        '        *) echo "usage: sh $0 --url URL --name NAME < token" >&2; exit 2 ;;\n'
        "    esac\n"
        "done\n"
        '[ -n "$url" ] && [ -n "$name" ] || { echo "usage: sh $0 --url URL --name NAME < token" >&2; exit 2; }\n'
        "IFS= read -r token || true\n"
        '[ -n "$token" ] || { echo "the VM token is read from standard input" >&2; exit 2; }\n'
        "printf '# vmjournal agent configuration. Secret: holds the ingest token.\\n"
        'url = %s\\nname = %s\\ntoken = %s\\n\' "$url" "$name" "$token" > "$dir/agent.conf"\n'
    )
    return _script(agent_files(), config_step)


def _script(files: dict[str, bytes], config_step: str) -> str:
    parts = [
        "#!/bin/sh\n",
        "# vmjournal agent bootstrap: unpack the agent and its config, install, exit.\n",
        "set -eu\n",
        "umask 077\n",
        'dir=$(mktemp -d "${TMPDIR:-/tmp}/vmjournal-agent.XXXXXX")\n',
        "trap 'rm -rf \"$dir\"' EXIT\n",
        "trap 'exit 1' HUP INT TERM\n",
    ]
    for name, data in files.items():
        # base64 keeps arbitrary bytes safe from the shell; coreutils' base64 -d is everywhere.
        encoded = base64.encodebytes(data).decode("ascii")
        parts.append(f"base64 -d > \"$dir/{name}\" <<'VMJOURNAL_EOF'\n{encoded}VMJOURNAL_EOF\n")
    parts.append(config_step)
    parts.append('sh "$dir/install.sh" "$dir/agent.conf"\n')
    return "".join(parts)
