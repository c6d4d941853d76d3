"""Stand-in for ``vmjournal.providers.bootstrap`` until the agent's bootstrap lands.

Writes the agent config the way the real script will, so the extension carries a real secret.
Deleted once ``providers.bootstrap`` exists.
"""

from __future__ import annotations

import shlex

from vmjournal.providers.base import AgentConfig


def agent_files() -> dict[str, bytes]:
    return {}


def render_bootstrap_script(config: AgentConfig) -> str:
    conf = f"url={config.url}\nname={config.name}\ntoken={config.token}\n"
    return (
        "#!/bin/sh\nset -eu\numask 077\nmkdir -p /etc/vmjournal\n"
        f"printf '%s' {shlex.quote(conf)} > /etc/vmjournal/agent.conf\n"
    )
