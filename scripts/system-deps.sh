#!/bin/sh
# Installs the Debian packages vmjournal needs, if any are missing.
#   system-deps.sh run   what the service needs (the local QEMU provider)
#   system-deps.sh test  that, plus the real tools the tests use
set -eu

run_pkgs="qemu-system-x86 qemu-utils debootstrap e2fsprogs"
test_pkgs="$run_pkgs systemd-journal-remote chromium"

case "${1:-run}" in
  run) wanted=$run_pkgs ;;
  test) wanted=$test_pkgs ;;
  *) echo "usage: $0 run|test" >&2; exit 2 ;;
esac

missing=""
for pkg in $wanted; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
done
[ -z "$missing" ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "vmjournal needs these packages:$missing (install them with your package manager)" >&2
  exit 1
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing:$missing" >&2
$sudo apt-get update -qq
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
