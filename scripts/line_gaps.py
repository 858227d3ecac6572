"""Run a command and measure the longest silence between its output lines (stdout and stderr together):
how `make demo` is checked to say something at least every 10 seconds.

    python scripts/line_gaps.py [--max-gap 10] -- make demo
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-gap", type=float, default=10.0, help="seconds of silence allowed")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    started = time.monotonic()
    stamps = [started]
    lock = threading.Lock()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)

    def pump(stream, out) -> None:
        for line in stream:
            with lock:
                stamps.append(time.monotonic())
            out.write(line)
            out.flush()

    threads = [threading.Thread(target=pump, args=(proc.stdout, sys.stdout)),
               threading.Thread(target=pump, args=(proc.stderr, sys.stderr))]
    for t in threads:
        t.start()
    code = proc.wait()
    for t in threads:
        t.join()
    stamps.append(time.monotonic())
    gaps = sorted(b - a for a, b in zip(stamps, stamps[1:]))
    longest = gaps[-1] if gaps else 0.0
    print(f"line_gaps: {len(stamps) - 2} lines in {stamps[-1] - started:.0f} s; longest silence {longest:.1f} s "
          f"(allowed {args.max_gap:g} s); exit code {code}", file=sys.stderr)
    return code or (1 if longest > args.max_gap else 0)


if __name__ == "__main__":
    sys.exit(main())
