#!/bin/sh
# Install the vmjournal agent on this machine, enable and start it, and exit.
#
#   sh install.sh [CONFIG]
#
# Run as root from the directory holding vmjournal_agent.py, vmjournal_agent_send.py and
# vmjournal-agent.service.
# CONFIG (default: agent.conf next to this script) holds "url = ...", "name = ..." and
# "token = ..."; it is installed as /etc/vmjournal-agent/agent.conf, mode 0600, owned by root.
# Running it again upgrades the agent and its config; the saved cursor is kept, so nothing is
# sent twice. With DESTDIR=/some/root it only lays the files out under that root (packaging,
# tests) and leaves systemd alone. It never waits for the agent: it exits once systemd has it.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
conf=${1:-$here/agent.conf}
root=${DESTDIR:-}
libdir=$root/usr/local/lib/vmjournal-agent
confdir=$root/etc/vmjournal-agent
unitdir=$root/etc/systemd/system

fail() { echo "install.sh: $*" >&2; exit 1; }

[ -r "$conf" ] || fail "config file $conf not found"
for module in vmjournal_agent.py vmjournal_agent_send.py; do
    [ -r "$here/$module" ] || fail "$module not found next to install.sh"
done
[ -r "$here/vmjournal-agent.service" ] || fail "vmjournal-agent.service not found next to install.sh"

if [ -z "$root" ]; then
    [ "$(id -u)" = 0 ] || fail "run me as root"
    command -v systemctl >/dev/null 2>&1 || fail "systemd is required (systemctl not found)"
    if ! /usr/bin/python3 -c 'import json, gzip, urllib.request' >/dev/null 2>&1; then
        if command -v apt-get >/dev/null 2>&1; then
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3 >/dev/null \
                || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3 >/dev/null; }
        elif command -v dnf >/dev/null 2>&1; then
            dnf install -y -q python3
        fi
        /usr/bin/python3 -c 'import json, gzip, urllib.request' || fail "/usr/bin/python3 (3.6 or later) is required"
    fi
fi

umask 022
mkdir -p "$libdir" "$confdir" "$unitdir"
chmod 0700 "$confdir"
# Write beside the target, then rename: a half-copied program or config is never live. The
# module the program imports goes first, so a new program never starts beside an old module.
for module in vmjournal_agent_send.py:0644 vmjournal_agent.py:0755; do
    file=${module%:*}
    cp "$here/$file" "$libdir/.$file.new"
    chmod "${module#*:}" "$libdir/.$file.new"
    mv -f "$libdir/.$file.new" "$libdir/$file"
done
(umask 077 && cp "$conf" "$confdir/.agent.conf.new")
chmod 0600 "$confdir/.agent.conf.new"
if [ "$(id -u)" = 0 ]; then chown root:root "$confdir" "$confdir/.agent.conf.new"; fi
mv -f "$confdir/.agent.conf.new" "$confdir/agent.conf"
cp "$here/vmjournal-agent.service" "$unitdir/.vmjournal-agent.service.new"
chmod 0644 "$unitdir/.vmjournal-agent.service.new"
mv -f "$unitdir/.vmjournal-agent.service.new" "$unitdir/vmjournal-agent.service"

if [ -z "$root" ]; then
    systemctl daemon-reload
    systemctl enable vmjournal-agent.service >/dev/null 2>&1 || systemctl enable vmjournal-agent.service
    # restart, not start: a re-run must pick up a new token or agent version.
    systemctl restart --no-block vmjournal-agent.service
fi
echo "install.sh: vmjournal-agent installed${root:+ under $root}"
