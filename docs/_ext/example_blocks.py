"""A griffe extension: the docstrings' reStructuredText bits rendered as Markdown.

The library's docstrings are Google style with two reStructuredText habits:
the literal block (``Example::`` then an indented block), which Markdown would
flow into one paragraph, and roles such as ``:class:`LSTM```. When
mkdocstrings loads the docstrings, this turns each literal block into a fenced
```python block and each role into a code span; the source stays as it is.
"""

import re
import textwrap

import griffe

_BLOCK = re.compile(r"^( *)Example::\n((?:\1 +\S.*\n|[ \t]*\n)+)", re.M)
_ROLE = re.compile(r":(?:class|meth|func|attr|mod|data|obj|exc):`~?([^`]+)`")


def _fence(match: re.Match) -> str:
    indent, body = match.group(1), textwrap.dedent(match.group(2)).strip("\n")
    code = textwrap.indent(f"```python\n{body}\n```", indent)
    return f"{indent}**Example**\n\n{code}\n\n"


class ExampleBlocks(griffe.Extension):
    """Rewrites ``Example::`` literal blocks as fenced Python, roles as code spans."""

    def on_object(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring:
            text = _BLOCK.sub(_fence, obj.docstring.value + "\n").rstrip("\n")
            obj.docstring.value = _ROLE.sub(r"`\1`", text)
