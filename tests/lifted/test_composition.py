"""Every lifted op inside every other one: init, apply, jit, derivatives, no leaks.

The default run checks a short ring of pairs in which every op appears once
(outside or inside); the ring (each op once outside, once inside), the full
matrix of all pairs and the longer random search are marked slow.
"""

import itertools

import pytest
from absl.testing import absltest, parameterized
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lifted import composition
from lifted.common import LeakChecked

_RING = [(a, composition.NAMES[(i + 1) % len(composition.NAMES)])
         for i, a in enumerate(composition.NAMES)]
_ALL = list(itertools.product(composition.NAMES, repeat=2))
# Consecutive names paired off: every op once, in half the ring's time.
_SHORT = list(zip(composition.NAMES[::2], composition.NAMES[1::2], strict=False))





class PairsComposeTest(LeakChecked, parameterized.TestCase):

    @parameterized.named_parameters(*[(f"{outer}__around__{inner}", outer, inner)
                                      for outer, inner in _SHORT])
    def test_pair(self, outer, inner):
        composition.check(self, (outer, inner))


@pytest.mark.slow  # ~1 min on two cores; the short ring above has every op.
class RingComposeTest(LeakChecked, parameterized.TestCase):

    @parameterized.named_parameters(*[(f"{outer}__around__{inner}", outer, inner)
                                      for outer, inner in _RING])
    def test_pair(self, outer, inner):
        composition.check(self, (outer, inner))


@pytest.mark.slow
class AllPairsComposeTest(LeakChecked, parameterized.TestCase):

    @parameterized.named_parameters(*[(f"{outer}__around__{inner}", outer, inner)
                                      for outer, inner in _ALL])
    def test_pair(self, outer, inner):
        composition.check(self, (outer, inner))


_NESTINGS = st.lists(st.sampled_from(composition.NAMES), min_size=1, max_size=3)


class RandomNestingsComposeTest(LeakChecked, absltest.TestCase):

    @settings(max_examples=2, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(_NESTINGS)
    def test_random_nestings(self, names):
        composition.check(self, tuple(names))


@pytest.mark.slow
class ManyRandomNestingsComposeTest(LeakChecked, absltest.TestCase):

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(_NESTINGS)
    def test_random_nestings(self, names):
        composition.check(self, tuple(names))


if __name__ == "__main__":
    absltest.main()
