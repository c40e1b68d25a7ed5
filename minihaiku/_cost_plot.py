"""The bar chart ``mh.cost(..., plot=path)`` saves: FLOPs and bytes per module."""

import os
import tempfile
from typing import Any

from minihaiku import errors


def save(report: Any, path: str) -> None:
    """Saves a horizontal bar chart per module (FLOPs; param and activation bytes) at ``path``.

    The image is written to a temporary file beside ``path`` and moved into
    place, so a failed save leaves nothing behind.
    """
    try:
        import matplotlib
        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        raise errors.InvalidArgumentError(
            f"mh.cost(plot={path!r}) needs matplotlib, which is not installed. Fix: "
            "pip install matplotlib, or leave plot=None and print the report.") from None
    rows = [r for r in report.modules if r.flops or r.param_bytes or r.activation_bytes]
    labels = [f"{r.module}/{r.method}" if r.method else r.module for r in rows][::-1]
    columns = (("GFLOPs", [r.flops / 1e9 for r in rows][::-1]),
               ("params (MiB)", [r.param_bytes / 2**20 for r in rows][::-1]),
               ("activations (MiB)", [r.activation_bytes / 2**20 for r in rows][::-1]))
    height = max(2.5, 0.3 * len(rows) + 1.2)
    fig, axes = plt.subplots(1, 3, figsize=(15, height), sharey=True)
    for ax, (title, values) in zip(axes, columns, strict=True):
        ax.barh(range(len(values)), values, color="#3f51b5")
        ax.set_title(title)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(labels)), labels, fontsize=8)
    fig.suptitle(f"mh.cost: {report.flops / 1e9:.3g} GFLOPs in total")
    fig.tight_layout()
    directory = os.path.dirname(os.path.abspath(path))
    suffix = os.path.splitext(path)[1] or ".png"
    fd, tmp = tempfile.mkstemp(suffix=suffix, dir=directory)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=100)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.remove(tmp)
