"""Marks the tests listed in ``slow_tests.txt`` slow (deselected by default).

A list rather than decorators because many of them are single cases of a
parameterized test (``test_conv_nd_2d_nchw``), which a decorator cannot pick.
"""

import pathlib

import pytest

SLOW_LIST = pathlib.Path(__file__).with_name("slow_tests.txt")


def slow_ids() -> set:
    lines = SLOW_LIST.read_text().splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    slow = slow_ids()
    for item in items:
        if item.nodeid in slow:
            item.add_marker(pytest.mark.slow)
