"""A CPU program that dies inside NVTX ranges: what nsys records for a range the program never ended.

It opens perfctl ranges (push/pop and start/end) and one of another domain, ends one of them, and
kills itself with SIGKILL (what the OOM killer does) while the others are open. nsys 2022.4, 2023.4
and 2024.2 end every open range exactly at the end of the session (ANALYSIS_DETAILS.duration on the
events' clock), except that nsys 2024.2 beside another nsys session sometimes records no stop of
its session and a duration short of it (scripts/probe_unended_range_ends.py measures how often);
tests/test_session_end.py captures it and checks that perfctl tells those ranges from real ones.

    nsys profile --trace=nvtx --sample=none --cpuctxsw=none -o out python unended_ranges.py
"""

from __future__ import annotations

import os
import signal
import time

import nvtx

DOMAIN = "perfctl"
OTHER_DOMAIN = "other"
ENDED = "ended"  # the one range the program ends
NEVER_ENDED = ("outer", "open_start_end", "open_inner")  # perfctl's, open when the program dies
OTHER_NEVER_ENDED = "open_elsewhere"  # another domain's, open too
FLUSH_WAIT_S = 3.0  # before the kill: see main()


def main() -> None:
    nvtx.push_range(NEVER_ENDED[0], domain=DOMAIN)
    nvtx.push_range(ENDED, domain=DOMAIN)
    time.sleep(0.01)
    nvtx.pop_range(domain=DOMAIN)
    nvtx.start_range(NEVER_ENDED[1], domain=DOMAIN)
    nvtx.push_range(NEVER_ENDED[2], domain=DOMAIN)
    nvtx.push_range(OTHER_NEVER_ENDED, domain=OTHER_DOMAIN)
    # nsys's injection hands NVTX events over from buffers it flushes now and then, and a SIGKILL loses
    # what is still buffered: 50 ms sufficed on an idle machine, not on a loaded one (the last range
    # went missing), so the program waits far longer than any flush takes before it dies
    time.sleep(FLUSH_WAIT_S)
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    main()
