"""Relay one guest connection to the service: QEMU runs this for each connection to the guestfwd address.

Stdlib only and no site imports, so it starts in milliseconds. QEMU's user-mode network hands us
the guest's side of the connection as fds 0, 1 and 2 (one socket); we connect to HOST PORT and
copy bytes both ways until each side has closed.
"""

import os
import select
import socket
import sys
import time


def main() -> int:
    # fd 2 is the guest's socket too: a traceback must not leak into the HTTP stream.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    host, port = sys.argv[1], int(sys.argv[2])
    guest = socket.socket(fileno=os.dup(0))
    try:
        upstream = socket.create_connection((host, port), timeout=10)
    except OSError as e:
        # QEMU runs us in the VM's directory: leave a trace there for whoever debugs the guest.
        with open("relay.log", "a") as f:
            f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} cannot reach {host}:{port}: {e}\n")
        return 1
    upstream.settimeout(None)
    peer = {guest: upstream, upstream: guest}
    readable = [guest, upstream]
    while readable:
        ready, _, _ = select.select(readable, [], [])
        for sock in ready:
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            if data:
                try:
                    peer[sock].sendall(data)
                    continue
                except OSError:
                    return 0
            readable.remove(sock)
            try:
                peer[sock].shutdown(socket.SHUT_WR)
            except OSError:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
