"""Run a command, pass its output through, and print a line whenever it has been silent for a while:
how `make setup` keeps talking while pip unpacks torch (a minute without a line on 2 cores).

    python scripts/heartbeat.py [--every 8] -- pip install ...
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--every", type=float, default=8.0, help="seconds of silence before a heartbeat line")
    parser.add_argument("--label", default="", help="what the command does, for the heartbeat line")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    label = args.label or " ".join(command[:4])
    started = time.monotonic()
    last = [started]
    lock = threading.Lock()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)

    def pump() -> None:
        for line in proc.stdout:
            with lock:
                last[0] = time.monotonic()
                sys.stdout.write(line)
                sys.stdout.flush()

    thread = threading.Thread(target=pump)
    thread.start()
    while thread.is_alive():
        thread.join(timeout=1.0)
        with lock:
            now = time.monotonic()
            if thread.is_alive() and now - last[0] >= args.every:
                print(f"  still {label} ({now - started:.0f} s so far)", flush=True)
                last[0] = now
    return proc.wait()


if __name__ == "__main__":
    sys.exit(main())
