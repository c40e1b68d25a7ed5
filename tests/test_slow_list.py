"""Every line of tests/slow_tests.txt names a test that exists (a renamed test
would otherwise silently move back into the default run)."""

import re

from absl.testing import absltest

from conftest import SLOW_LIST, slow_ids


class SlowListTest(absltest.TestCase):

    def test_every_listed_id_names_a_test_method(self):
        root = SLOW_LIST.parents[1]
        missing = []
        for node in sorted(slow_ids()):
            path, cls, name = node.split("::")
            text = (root / path).read_text() if (root / path).exists() else ""
            methods = re.findall(r"^    def (test\w*)\(", text, re.M)
            # A parameterized case is its method's name plus the case's suffix.
            if f"class {cls}(" not in text or not any(name.startswith(m) for m in methods):
                missing.append(node)
        self.assertEqual(missing, [])

    def test_the_list_marks_tests_slow(self):
        self.assertIn("tests/test_sharding.py::MultiDeviceTest::test_on_8_host_devices",
                      slow_ids())


if __name__ == "__main__":
    absltest.main()
