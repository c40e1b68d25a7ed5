"""Runs every benchmark in one process and prints one table of ratios.

    python -m benchmarks.run                  # print the table
    python -m benchmarks.run --write_results  # also rewrite benchmarks/RESULTS.md
    python -m benchmarks.run --only=eager,micro
    python -m benchmarks.run --only=transformer
    python -m benchmarks.run --only=llama
"""

import datetime
import os
import platform
import sys

import jax
from absl import app, flags

from benchmarks import (
    convnet,
    eager,
    interceptors,
    lifted,
    llama,
    micro,
    train_step,
    transformer,
)

_SECTIONS = {"eager": eager.run, "micro": micro.run, "train_step": train_step.run,
             "lifted": lifted.run, "convnet": convnet.run, "transformer": transformer.run,
             "interceptors": interceptors.run, "llama": llama.run}
_ONLY = flags.DEFINE_list("only", list(_SECTIONS), f"sections to run, of {list(_SECTIONS)}")
_WRITE = flags.DEFINE_bool("write_results", False, "rewrite benchmarks/RESULTS.md")


def meets(value: float, target: str) -> str:
    """"✓" or "✗" for a row with a target ("<= 1.3", ">= 2", "same"/"1": equal to 1), else ""."""
    target, value = target.strip(), float(f"{value:.3g}")  # Judged as printed.
    if not target:
        return ""
    if target.startswith("<="):
        ok = value <= float(target[2:])
    elif target.startswith(">="):
        ok = value >= float(target[2:])
    else:  # "same" or a number: an exact match, e.g. identical HLO op counts.
        ok = value == (1.0 if target == "same" else float(target))
    return "✓" if ok else "✗"


def table(rows) -> str:
    lines = ["| benchmark | measure | value | target | met | detail |",
             "|---|---|---|---|---|---|"]
    for name, measure, value, target, detail in rows:
        lines.append(f"| {name} | {measure} | {value:.3g} | {target} | "
                     f"{meets(value, target)} | {detail} |")
    return "\n".join(lines)


def _machine() -> str:
    return (f"{os.cpu_count()} CPU cores ({platform.machine()}), jax {jax.__version__}, "
            f"Python {platform.python_version()}, backend {jax.default_backend()}")


def _notes() -> str:
    """The ``NOTES`` (markdown) of the sections run, written under the table."""
    notes = [getattr(sys.modules[_SECTIONS[n].__module__], "NOTES", "") for n in _ONLY.value]
    return "".join("\n" + n.strip() + "\n" for n in notes if n)


def main(argv):
    del argv
    rows = []
    for name in _ONLY.value:
        _SECTIONS[name](rows)
    text_table = table(rows)
    print(text_table)
    if _WRITE.value:
        path = os.path.join(os.path.dirname(__file__), "RESULTS.md")
        text = (f"# Benchmark results\n\n`python -m benchmarks.run` on "
                f"{datetime.date.today().isoformat()}, {_machine()}.\n"
                "Ratios are of times measured side by side in one process "
                "(interleaved, best of rounds). ✓: the row meets its target; ✗: it misses it.\n\n"
                + text_table + "\n" + _notes())
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.replace(path + ".tmp", path)


if __name__ == "__main__":
    app.run(main)
