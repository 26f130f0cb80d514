"""Holds an idle connection flood against a server: opens N connections
that never send a byte and, with --reopen, opens a new one whenever the
server closes one (a flood that keeps coming back). Prints "ready N" once
all are open, then the number of reopens at exit (SIGTERM).

    python3 bench/listener_flood.py HOST:PORT N [--reopen]
"""

import resource
import selectors
import signal
import socket
import sys


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    n = int(sys.argv[2])
    reopen = "--reopen" in sys.argv
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 64), hard))
    sel = selectors.DefaultSelector()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))

    def open_one():
        s = socket.create_connection((host, int(port)), timeout=10)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)

    for _ in range(n):
        open_one()
    print(f"ready {n}", flush=True)
    reopened = 0
    while not stop:
        for key, _ in sel.select(timeout=0.5):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            if not data:
                sel.unregister(s)
                s.close()
                if reopen and not stop:
                    try:
                        open_one()
                        reopened += 1
                    except OSError:
                        pass
    print(f"reopened {reopened}", flush=True)


if __name__ == "__main__":
    main()
