"""docs/guides/lifted.md: every code block runs, in order, as a reader would run them."""

import os
import re

from absl.testing import absltest

_GUIDE = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "guides", "lifted.md")


class GuideRunsTest(absltest.TestCase):

    def test_every_code_block_runs(self):
        with open(_GUIDE) as f:
            blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
        self.assertGreaterEqual(len(blocks), 10)
        namespace = {}
        for i, block in enumerate(blocks):
            exec(compile(block, f"lifted.md block {i}", "exec"), namespace)  # noqa: S102


if __name__ == "__main__":
    absltest.main()
