"""Human-readable sizes and counts for the tables of ``mh.summary`` and ``mh.cost``."""


def bytes_text(n: int) -> str:
    """``1536`` -> ``1.5 KiB``."""
    if n < 1024:
        return f"{n} B"
    size = n / 1024
    for unit in ("KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def count_text(n: int) -> str:
    """``1_234_000`` -> ``1.23 M`` (SI prefixes, for FLOPs)."""
    for unit, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return str(n)
