#!/usr/bin/env python3
"""Runs a command in a pseudo-terminal, as a person at a terminal would, and reports what it
wrote. Used by the tests of `tollgate top`.

    pty_run.py PLAN_JSON

PLAN_JSON: {"argv": [...], "rows": 40, "cols": 120, "steps": [STEP, ...]} where a STEP is
  {"wait_for": "text", "settle": 0.5, "timeout": 15}  read until "text" was written, then for
                                                      `settle` more seconds
  {"send": "r", "read": 1.5}                          write the keys, read for `read` seconds
  {"send": "q", "until_exit": 10}                     write the keys, read until the command
                                                      exits (at most `until_exit` seconds)

Prints one JSON line: {"outputs": [base64 of what each step read], "exit": code or null,
"termios_restored": whether the terminal's modes after the command equal those before it}.
The pty is the command's controlling terminal (its own session), sized rows x cols.
"""
import base64
import fcntl
import json
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time


def main():
    plan = json.loads(sys.argv[1])
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", plan.get("rows", 40), plan.get("cols", 120), 0, 0))
    before = termios.tcgetattr(slave)

    def controlling_terminal():
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    env = dict(os.environ, TERM="xterm-256color")
    proc = subprocess.Popen(plan["argv"], stdin=slave, stdout=slave, stderr=slave,
                            preexec_fn=controlling_terminal, env=env, close_fds=True)

    def read_for(seconds, until=None, acc=b""):
        end = time.time() + seconds
        while time.time() < end:
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: no writer left
                    chunk = b""
                if not chunk and proc.poll() is not None:
                    break
                acc += chunk
            if until is not None and until(acc):
                break
        return acc

    outputs = []
    for step in plan["steps"]:
        if "send" in step:
            os.write(master, step["send"].encode())
        if "wait_for" in step:
            want = step["wait_for"].encode()
            out = read_for(step.get("timeout", 15), lambda acc: want in acc)
            out = read_for(step.get("settle", 0.5), acc=out)
        elif "until_exit" in step:
            out = read_for(step["until_exit"], lambda acc: proc.poll() is not None)
            out = read_for(0.2, acc=out)
        else:
            out = read_for(step.get("read", 1.0))
        outputs.append(base64.b64encode(out).decode())

    try:
        code = proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        code = None
    after = termios.tcgetattr(slave)
    print(json.dumps({"outputs": outputs, "exit": code, "termios_restored": before == after}))


if __name__ == "__main__":
    main()
