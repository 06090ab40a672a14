"""A CPU program whose NVTX range names are hostile to every renderer perfctl has (HTML, SVG, Markdown,
JSON): markup, Markdown table syntax, newlines, quotes, a very long C++ template name; and names whose
characters would make them display other than they read (bidirectional overrides, isolates and
marks; control characters such as ESC, BEL and DEL), which every output must show escaped.

It emits perfctl's own page / vision / prefill / decode ranges (short sleeps, no GPU) so the analysis
has pages and stages, and inside each page one range per hostile name, some in a hostile domain.
tests/test_report_escaping.py captures it under nsys and checks that every name survives as text.

    nsys profile --trace=nvtx --sample=none --cpuctxsw=none -o out python hostile_names.py
"""

from __future__ import annotations

import time

import nvtx

DOMAIN = "perfctl"
HOSTILE_DOMAIN = '<b onmouseover="alert(1)">dom|ain</b>'
# What an injected script would do if it ran: the browser test looks for these side effects.
PWNED_TITLE = "PWNED"
HOSTILE_NAMES = (
    f'<script>document.title="{PWNED_TITLE}";document.body.setAttribute("data-pwned","1")</script>',
    f"<img src=x onerror=\"document.title='{PWNED_TITLE}'\">",
    "pipe | cell `tick` **bold** [link](javascript:alert(1)) # heading",
    "first line\nsecond line\r\n| --- | injected row |",
    "quotes \" ' & ampersand; &lt;already-escaped&gt;",
    "void cutlass::device_kernel<"
    + ", ".join(f"cute::tuple<cute::C<(int){i}>, cute::C<(int){2 * i}>>" for i in range(60))
    + ">(T1::Params)",
)


# Characters that hide or reorder text: a report must show them escaped (\u202e), never raw. (NUL cannot
# pass through NVTX's C strings: tests/test_report_escaping.py puts one into a kernel name instead.)
INVISIBLE_NAMES = (
    "access_granted\u202e } \u2066if (is_admin)\u2069 \u2066 begin admins only",  # "Trojan Source"
    "\u202a\u202b\u202c\u202d embeddings \u2067isolates\u2068\u2069 marks \u200e\u200f\u061c",
    "terminal \x1b[31mred\x1b[0m bell\x07 backspace\x08 del\x7f nel\x85 csi\x9b",
)


def sleep_range(name: str, seconds: float, domain: str = DOMAIN, payload: int | None = None) -> None:
    nvtx.push_range(name, domain=domain, payload=payload)
    time.sleep(seconds)
    nvtx.pop_range(domain=domain)


def main() -> None:
    for page in range(2):
        nvtx.push_range("page", domain=DOMAIN, payload=page)
        sleep_range("vision", 0.004)
        sleep_range("prefill", 0.002)
        for token in range(1, 4):
            sleep_range("decode", 0.001, payload=token)
        for name in (*HOSTILE_NAMES, *INVISIBLE_NAMES):
            sleep_range(name, 0.001)
        sleep_range(HOSTILE_NAMES[0], 0.001, domain=HOSTILE_DOMAIN)
        nvtx.pop_range(domain=DOMAIN)


if __name__ == "__main__":
    main()
