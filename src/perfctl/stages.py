"""The NVTX vocabulary shared by the driver (which emits it) and the analysis (which reads it).

Every range perfctl's driver emits is in the NVTX domain `perfctl`:
  load      model loading (once)
  warmup    warm-up generate calls; stage ranges are not emitted inside it
  page      one page of one repeat; payload = the page's sequence number in the run (0-based)
  vision    inside a page: from the first vision module call to the first decoder call
  prefill   inside a page: the first decoder forward, through the LM head
  decode    inside a page: one range per later decoder forward (one per generated token after the
            first); payload = index of the token it produces (1 .. new_tokens - 1)
"""

DOMAIN = "perfctl"
LOAD = "load"
WARMUP = "warmup"
PAGE = "page"
VISION = "vision"
PREFILL = "prefill"
DECODE = "decode"
STAGES = (VISION, PREFILL, DECODE)
