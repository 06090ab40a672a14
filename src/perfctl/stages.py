"""The NVTX vocabulary shared by the driver (which emits it) and the analysis (which reads it).

Every range perfctl's driver emits is in the NVTX domain `perfctl`:
  load      model loading (once)
  warmup    warm-up generate calls; stage ranges are not emitted inside it
  page      one page of one repeat; payload = the page's sequence number in the run (0-based)
  vision    inside a page: from the first vision module call to the first decoder call
  prefill   inside a page: the first decoder forward, through the LM head
  decode    inside a page: one range per decode step (one per generated token after the first),
            from one token's logits to the next's (generate's whole loop iteration);
            payload = index of the token it produces (1 .. new_tokens - 1)

What a decode step covers is recorded in driver-info.json (`decode_step_span`): DECODE_STEP_SPAN.
Eager runs from before that record spanned the decoder's forward and the LM head alone
(DECODE_STEP_SPAN_FORWARD); compare refuses to set the two side by side.
"""

DOMAIN = "perfctl"
LOAD = "load"
WARMUP = "warmup"
PAGE = "page"
VISION = "vision"
PREFILL = "prefill"
DECODE = "decode"
STAGES = (VISION, PREFILL, DECODE)

DECODE_STEP_SPAN = "token_to_token"
DECODE_STEP_SPAN_FORWARD = "decoder_forward"
