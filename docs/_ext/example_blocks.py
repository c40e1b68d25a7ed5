"""A griffe extension: docstrings' ``Example::`` blocks rendered as Python code.

The library's docstrings are Google style with reStructuredText's literal
block (``Example::`` then an indented block), which Markdown would flow into
one paragraph. This turns each such block into a fenced ```python block when
mkdocstrings loads the docstrings; the source stays as it is.
"""

import re
import textwrap

import griffe

_BLOCK = re.compile(r"^( *)Example::\n((?:\1 +\S.*\n|[ \t]*\n)+)", re.M)


def _fence(match: re.Match) -> str:
    indent, body = match.group(1), textwrap.dedent(match.group(2)).strip("\n")
    code = textwrap.indent(f"```python\n{body}\n```", indent)
    return f"{indent}**Example**\n\n{code}\n\n"


class ExampleBlocks(griffe.Extension):
    """Rewrites ``Example::`` literal blocks as fenced Python code."""

    def on_object(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring and "Example::" in obj.docstring.value:
            obj.docstring.value = _BLOCK.sub(_fence, obj.docstring.value + "\n").rstrip("\n")
