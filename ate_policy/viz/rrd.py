"""Reading a ``.rrd`` back with Rerun's own reader (``rerun.experimental.RrdReader``): the rows of each entity,
by component, indexed by the ``tick`` timeline. Used by the tests and by ``ate_policy viz --rrd FILE --summary``.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from ate_description.errors import UserError


def read_rrd(path: str | Path, index: str = "tick") -> dict[str, dict[str, dict[int, object]]]:
    """``{entity path: {component column: {tick: value}}}`` of every temporal row on ``index`` (static rows are
    left out); values as Python lists (Arrow's ``to_pylist``: the row's batch); rows logged at the same tick (two
    events) are joined into one list, in the order they were logged."""
    from rerun.experimental import RrdReader

    path = Path(path)
    if not path.is_file():
        raise UserError(f"no recording at {path}")
    out: dict = defaultdict(lambda: defaultdict(dict))
    for chunk in RrdReader(path).stream():
        if chunk.is_static or index not in chunk.timeline_names:
            continue
        rb = chunk.to_record_batch()
        ticks = rb.column(index).to_pylist()
        for name in rb.schema.names:
            if name.startswith("rerun.") or name in ("log_tick", "log_time", "tick", "time"):
                continue
            col = out[chunk.entity_path][name]
            for t, v in zip(ticks, rb.column(name).to_pylist(), strict=True):
                if v is None:
                    continue
                t = int(t)
                if t in col and isinstance(col[t], list) and isinstance(v, list):
                    col[t] = col[t] + v
                else:
                    col[t] = v
    return {e: dict(c) for e, c in out.items()}


def entity_paths(path: str | Path) -> set[str]:
    """Every entity path in the recording, static ones included."""
    from rerun.experimental import RrdReader

    return {c.entity_path for c in RrdReader(Path(path)).stream()}


def decode_image(value) -> np.ndarray:
    """An ``EncodedImage:blob`` row (PNG/JPEG bytes) -> (H, W, 3) uint8 RGB."""
    import cv2

    blob = np.asarray(value[0] if value and isinstance(value[0], list) else value, dtype=np.uint8)
    bgr = cv2.imdecode(blob, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("not an encoded image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def tensor(value) -> np.ndarray:
    """A ``Tensor:data`` row -> ndarray of its shape."""
    v = value[0] if isinstance(value, list) else value
    return np.asarray(v["buffer"], dtype=float).reshape([int(d) for d in v["shape"]])


def summary(path: str | Path) -> str:
    """One line per entity: its rows on the tick timeline."""
    rows = read_rrd(path)
    lines = [f"{path}:"]
    for e in sorted(rows):
        n = max(len(v) for v in rows[e].values())
        lines.append(f"  {e}: {n} ticks")
    return "\n".join(lines)
