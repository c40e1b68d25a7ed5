"""The environment of a test's subprocess: this checkout first on the path, N host devices."""

import os
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]


def subprocess_env(devices: int = 0, *paths: os.PathLike | str, **extra: str) -> dict:
    """``os.environ`` with ``ROOT`` and ``paths`` first on PYTHONPATH and, for
    ``devices > 0``, that many host CPU devices (set before JAX starts)."""
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *map(str, paths)] + [p for p in [env.get("PYTHONPATH")] if p])
    env.pop("XLA_FLAGS", None)   # the parent's device count is not the child's
    if devices:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return env
