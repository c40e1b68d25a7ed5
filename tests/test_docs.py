"""Every code example in the docs runs, and prints what its comments say.

Two kinds of examples:

* the ```python blocks of README.md, docs/*.md, docs/guides/*.md and
  docs/reference/*.md: the blocks
  of one page run top to bottom in one namespace, as a reader would paste
  them; a ``print(...)`` whose line ends in ``# ...`` (or is followed by
  comment-only lines) must print that text;
* the ``Example::`` blocks in the docstrings of the public names of ``mh``,
  ``mh.nn``, ``mh.lifted``, ``mh.io``, ``mh.nets`` and ``mh.interop`` (and of their
  public methods): each runs on its own with ``jax``, ``jnp``, ``np`` and ``mh`` in scope.
"""

import contextlib
import doctest
import inspect
import io
import os
import pathlib
import re
import tempfile
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import absltest, parameterized

import minihaiku as mh

_ROOT = pathlib.Path(__file__).resolve().parents[1]

# Pages whose code blocks run, found on disk so a new guide is tested as soon
# as it exists.
_PAGES = sorted(
    str(p.relative_to(_ROOT))
    for p in [_ROOT / "README.md", *(_ROOT / "docs").glob("*.md"),
              *(_ROOT / "docs" / "guides").glob("*.md"),
              *(_ROOT / "docs" / "reference").glob("*.md")])

# Pages whose printed outputs are known to be many: a page losing its checks
# (e.g. a block renamed to ```py) fails here.
_MIN_CHECKS = {"README.md": 2, "docs/tutorial.md": 15, "docs/api.md": 2,
               "docs/reference/nn.md": 4, "docs/reference/transform.md": 4}


def expected_outputs(block: str) -> list:
    """What a code block's comments say it prints.

    A ``print(...)`` line's trailing comment and the comment-only lines right
    after it are the expected output; text after " — " is an explanation.
    """
    expected, current = [], None
    for line in block.splitlines():
        stripped = line.strip()
        if current is not None and stripped.startswith("# "):
            current.append(stripped[2:])
            continue
        if current:
            expected.append(" ".join(current))
        current = None
        if "print(" in line:
            current = []
            if "  # " in line:
                current.append(line.split("  # ", 1)[1].split(" — ")[0])
    if current:
        expected.append(" ".join(current))
    return expected


def run_block(test, block: str, where: str, namespace: dict) -> int:
    """Runs one code block in ``namespace``; checks its printed outputs.

    Returns the number of printed outputs checked.
    """
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, where, "exec"), namespace)
    printed = " ".join(out.getvalue().split())
    checked = 0
    for expected in expected_outputs(block):
        test.assertIn(" ".join(expected.split()), printed, f"{where}:\n{block}")
        checked += 1
    return checked


def _public(module, prefix: str):
    """(qualified name, object) of the public names a module exports."""
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n in vars(module) if not n.startswith("_")]
    for name in names:
        obj = getattr(module, name)
        if inspect.ismodule(obj) or not getattr(obj, "__module__", "").startswith("minihaiku"):
            continue
        yield f"{prefix}.{name}", obj
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if (not attr.startswith("_") or attr == "__call__") and callable(member):
                    yield f"{prefix}.{name}.{attr}", member


def docstring_examples() -> dict:
    """{qualified name: example code} for every ``Example::`` block."""
    examples = {}
    for module, prefix in [(mh, "mh"), (mh.nn, "mh.nn"), (mh.lifted, "mh.lifted"),
                           (mh.io, "mh.io"), (mh.nets, "mh.nets"),
                           (mh.interop, "mh.interop"),
                           (mh.peft, "mh.peft")]:
        for name, obj in _public(module, prefix):
            doc = inspect.getdoc(obj) or ""
            match = re.search(r"^( *)Example::\n((?:\1 +.*\n|\s*\n)*)", doc + "\n", re.M)
            if match:
                examples[name] = textwrap.dedent(match.group(2)).strip() + "\n"
    return examples


class CodeBlocksTest(parameterized.TestCase):

    # The pages that build or train whole networks are listed in slow_tests.txt.
    @parameterized.named_parameters((re.sub(r"\W", "_", p), p) for p in _PAGES)
    def test_code_blocks_run_and_print_what_their_comments_say(self, page):
        blocks = re.findall(r"```python\n(.*?)```", (_ROOT / page).read_text(), re.S)
        namespace, checked = {"__name__": "__docs__"}, 0
        with tempfile.TemporaryDirectory() as tmp, _chdir(tmp):
            for i, block in enumerate(blocks):
                checked += run_block(self, block, f"{page} block {i}", namespace)
        self.assertGreaterEqual(checked, _MIN_CHECKS.get(page, 0))

    def test_every_page_with_runnable_code_is_found(self):
        for page in ["README.md", "docs/tutorial.md", "docs/api.md"]:
            self.assertIn(page, _PAGES)


class SelfContainedRepoTest(absltest.TestCase):

    def test_no_file_points_at_the_teams_contract_outside_the_repo(self):
        # The user reference is docs/api.md; nothing may send a reader to a
        # file that is not in the repo.
        pattern = re.compile(r"\.\./shared/|shared/API\.md|API\.md ?(§|section)")
        offenders = []
        for path in sorted(_ROOT.rglob("*")):
            parts = path.relative_to(_ROOT).parts
            if (path.suffix not in {".py", ".md", ".yml", ".cfg", ".toml", ".txt"}
                    or any(p.startswith(".") or p in {"site", "build"} for p in parts)):
                continue
            for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                if pattern.search(line):
                    offenders.append(f"{path.relative_to(_ROOT)}:{n}: {line.strip()}")
        self.assertEqual(offenders, [])


class DocstringExamplesTest(absltest.TestCase):

    def test_public_docstrings_have_examples(self):
        examples = docstring_examples()
        for name in ["mh.transform", "mh.get_param", "mh.nn.Linear", "mh.lifted.scan",
                     "mh.io.save"]:
            self.assertIn(name, examples)

    def test_every_docstring_example_runs(self):
        _check_examples(self, lambda name: not name.startswith(_SLOW_EXAMPLES))

    @pytest.mark.slow
    def test_every_network_docstring_example_runs(self):
        _check_examples(self, lambda name: name.startswith(_SLOW_EXAMPLES))


# Examples that build whole networks (ResNet, GPT-2, checkpoints: ~16 s in all)
# run with the slow tests.
_SLOW_EXAMPLES = ("mh.nets.", "mh.interop.", "mh.peft.")


def _check_examples(test, wanted) -> None:
    failures = []
    for name, code in docstring_examples().items():
        if not wanted(name):
            continue
        namespace = {"jax": jax, "jnp": jnp, "np": np, "mh": mh, "__name__": "__doc__"}
        try:
            with tempfile.TemporaryDirectory() as tmp, _chdir(tmp):
                if ">>>" in code:
                    _run_doctest(code, name, namespace)
                else:
                    run_block(test, code, f"docstring of {name}", namespace)
        except Exception as e:  # noqa: BLE001 — collected and reported below
            failures.append(f"{name}: {type(e).__name__}: {e}\n{code}")
    # Every example defines what it uses (jax, jnp, np and mh are given).
    test.assertEqual(failures, [], "\n\n".join(failures))


def _run_doctest(code: str, name: str, namespace: dict) -> None:
    """Runs a ``>>>`` example as a doctest; raises if an output differs."""
    test = doctest.DocTestParser().get_doctest(code, namespace, name, name, 0)
    out = io.StringIO()
    result = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS).run(test, out=out.write)
    if result.failed:
        raise AssertionError(out.getvalue())


@contextlib.contextmanager
def _chdir(path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


if __name__ == "__main__":
    absltest.main()
