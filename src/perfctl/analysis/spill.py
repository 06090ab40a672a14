"""Per-group integer values kept on disk while an export is analyzed window by window.

Exact statistics over a group's values (median, p95) need all of them at once, but only at the
end; kept in memory until then they would grow with the export (8 bytes per kernel and range name).
`GroupValues` appends each window's values to an unnamed temporary file instead (the page cache
holds it; the process's memory does not), and reads one group's back, in the order they came, when
its statistics are taken.
"""

from __future__ import annotations

import tempfile
from typing import IO

import numpy as np
import numpy.typing as npt

Int64s = npt.NDArray[np.int64]


class GroupValues:
    """int64 values per group, appended window by window, read back per group in order."""

    def __init__(self) -> None:
        self._file: IO[bytes] | None = None
        self._end = 0
        self._parts: dict[int, list[tuple[int, int]]] = {}  # group -> (byte offset, values)

    def append(self, group: int, values: Int64s) -> None:
        if len(values) == 0:
            return
        if self._file is None:
            # the file lives as long as this object (closed by `close`), so no `with`
            self._file = tempfile.TemporaryFile(prefix="perfctl-values-")  # noqa: SIM115
        data = np.ascontiguousarray(values, dtype=np.int64)
        self._file.seek(self._end)
        self._file.write(data.tobytes())
        self._parts.setdefault(group, []).append((self._end, len(data)))
        self._end += data.nbytes

    def groups(self) -> list[int]:
        return list(self._parts)

    def values(self, group: int) -> Int64s:
        """The group's values in the order they were appended."""
        chunks = []
        for offset, n in self._parts.get(group, []):
            assert self._file is not None
            self._file.seek(offset)
            chunks.append(np.fromfile(self._file, dtype=np.int64, count=n))
        return np.concatenate(chunks) if chunks else np.empty(0, np.int64)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
