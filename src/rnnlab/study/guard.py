"""``python guard.py <fd> -- <command ...>``: run a command, and kill its whole process group (the command,
its workers, e.g. a sweep's joblib processes) once the study that started it is gone.

The study keeps the write end of a pipe whose read end is ``<fd>``; it never writes. When the study
process ends in any way, SIGKILL included, the read returns end-of-file and the guard kills its group
(the study started it in a new session, so the group is the guard, the command and what the command
started). Run as a script, not imported: stdlib only, so it starts in milliseconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading


def _kill_group_when_orphaned(fd: int) -> None:
    while True:
        try:
            if os.read(fd, 1) == b"":  # every write end closed: the study is gone
                break
        except InterruptedError:
            continue
        except OSError:
            break
    os.killpg(0, signal.SIGKILL)


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: guard.py <fd> -- <command ...>", file=sys.stderr)
        return 2
    fd, command = int(argv[0]), argv[2:]
    # The command gets SIGINT as usual (a Ctrl-C the study hands on to the group); the guard outlives it and
    # reports its exit code.
    child = subprocess.Popen(command, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # noqa: PLW1509
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_kill_group_when_orphaned, args=(fd,), daemon=True).start()
    while True:
        try:
            return child.wait()
        except KeyboardInterrupt:  # a SIGINT before the handler above was set
            continue


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
