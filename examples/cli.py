"""What every example does when it starts: short log lines without backend noise.

``quiet_logs()`` is called first thing in each example's ``main`` (after absl has
set up its handler); ``Eta`` gives the step/ETA suffix of a long run's log line.
"""

import logging as pylogging
import time

from absl import logging


def quiet_logs() -> None:
    """Short ``HH:MM:SS message`` log lines, and no backend-probe noise.

    JAX logs every backend it fails to load at INFO level ("Unable to initialize
    backend 'tpu' ... libtpu.so"), which on a CPU or GPU machine is noise; its
    warnings and errors still show.
    """
    pylogging.getLogger("jax._src.xla_bridge").setLevel(pylogging.WARNING)
    logging.get_absl_handler().setFormatter(
        pylogging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))


class Eta:
    """``Eta(total)(step)`` is ``"step/total, ETA 1m05s"`` from the mean time per step so far."""

    def __init__(self, total: int, first_step: int = 0):
        self.total, self.first_step, self.start = total, first_step, time.perf_counter()

    def __call__(self, step: int) -> str:
        done = step - self.first_step
        left = (time.perf_counter() - self.start) / max(done, 1) * (self.total - step)
        minutes, seconds = divmod(int(round(left)), 60)
        return f"{step}/{self.total}, ETA {minutes}m{seconds:02d}s"
