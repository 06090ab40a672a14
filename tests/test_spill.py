"""Launch-delay statistics read back from disk segment by segment equal numpy's on the whole array,
bit for bit (perfctl.analysis.spill.streamed_stats against perfctl.analysis.runs.describe)."""

from __future__ import annotations

import numpy as np
import pytest

from perfctl.analysis import spill
from perfctl.analysis.runs import describe


@pytest.mark.parametrize("seed", range(6))
def test_streamed_statistics_equal_numpys(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spill, "SEGMENT", 1000)  # so that every group here is read in segments
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1001, 40_000))
    values = [
        rng.integers(0, 10**7, n),  # spread out
        rng.integers(-5, 5, n),  # many ties
        rng.lognormal(9, 2, n).astype(np.int64),  # skewed over many orders of magnitude
    ][seed % 3]
    groups = spill.GroupValues()
    cuts = sorted(rng.integers(0, n, 6).tolist())
    for lo, hi in zip([0, *cuts], [*cuts, n], strict=True):  # appended window by window
        groups.append(3, values[lo:hi])
        groups.append(4, values[hi - 1 : hi])
    assert groups.count(3) == n
    assert spill.streamed_stats(groups, 3) == describe(values)
    assert groups.values(3).tolist() == values.tolist()
    groups.close()
