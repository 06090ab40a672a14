"""A CPU program that stops inside NVTX ranges: what nsys records for a range the program never ended.

It opens perfctl ranges (push/pop and start/end) and one of another domain, ends one of them, and
stops while the others are open, in one of two ways (the one argument):

- `exit`: a normal exit with the ranges still open. nsys's injection hands its last buffered NVTX
  events over as the process exits, so the export holds every range, whatever the machine's load:
  tests/test_session_end.py captures this one.
- `kill`: SIGKILL (what the OOM killer does). Events still buffered at the kill are lost with the
  process: the last range went missing on a loaded machine after 50 ms, and once on a busy CI machine
  even after FLUSH_WAIT_S, so a test cannot expect them; the test checks only that what nsys kept is
  the ranges opened first, ended as with `exit`.

nsys 2022.4, 2023.4 and 2024.2 end every open range exactly at the end of the session
(ANALYSIS_DETAILS.duration on the events' clock) either way, except that nsys 2024.2 beside another
nsys session sometimes records no stop of its session and a duration short of it
(scripts/probe_unended_range_ends.py measures how often).

    nsys profile --trace=nvtx --sample=none --cpuctxsw=none -o out python unended_ranges.py exit|kill
"""

from __future__ import annotations

import os
import signal
import sys
import time

import nvtx

DOMAIN = "perfctl"
OTHER_DOMAIN = "other"
ENDED = "ended"  # the one range the program ends
NEVER_ENDED = ("outer", "open_start_end", "open_inner")  # perfctl's, open when the program dies
OTHER_NEVER_ENDED = "open_elsewhere"  # another domain's, open too
OPENED = (NEVER_ENDED[0], ENDED, *NEVER_ENDED[1:], OTHER_NEVER_ENDED)  # the order the program opens them
ENDINGS = ("exit", "kill")
FLUSH_WAIT_S = 3.0  # before the kill: see main()


def main(ending: str) -> None:
    if ending not in ENDINGS:
        raise SystemExit(f"usage: unended_ranges.py {'|'.join(ENDINGS)}")
    nvtx.push_range(NEVER_ENDED[0], domain=DOMAIN)
    nvtx.push_range(ENDED, domain=DOMAIN)
    time.sleep(0.01)
    nvtx.pop_range(domain=DOMAIN)
    nvtx.start_range(NEVER_ENDED[1], domain=DOMAIN)
    nvtx.push_range(NEVER_ENDED[2], domain=DOMAIN)
    nvtx.push_range(OTHER_NEVER_ENDED, domain=OTHER_DOMAIN)
    if ending == "exit":
        return  # the interpreter exits with the ranges open; nsys's injection flushes at the exit
    # nsys's injection hands NVTX events over from buffers it flushes now and then, and a SIGKILL loses
    # what is still buffered, so the program waits longer than a flush takes on an idle machine; no
    # wait makes it certain (see the module's docstring)
    time.sleep(FLUSH_WAIT_S)
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) == 2 else "")
