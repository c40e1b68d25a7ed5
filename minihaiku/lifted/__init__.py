"""Lifted JAX transforms: JAX transforms and control flow inside a transform.

Each function here works in ``init`` and ``apply`` of a transformed function:
it passes the params, state and a key into the JAX transform, runs the body
inside it, and brings the new params and state back out. Outside a transform
each raises a ``NotInTransformError`` naming the plain ``jax`` function to use
instead. Eagerly, the compiled JAX transform is reused across calls (off with
``eager_cache(False)``).
"""

from minihaiku.lifted._cond import cond, switch
from minihaiku.lifted._eager_cache import eager_cache
from minihaiku.lifted._grad import grad, value_and_grad
from minihaiku.lifted._layer_stack import layer_stack
from minihaiku.lifted._remat import remat
from minihaiku.lifted._scan import scan
from minihaiku.lifted._vmap import vmap
from minihaiku.lifted.layer_views import PerLayerState, per_layer, stack, unstack
from minihaiku.lifted.loops import fori_loop, while_loop

__all__ = ["cond", "switch", "layer_stack", "fori_loop", "while_loop", "remat", "scan",
           "vmap", "grad", "value_and_grad", "eager_cache", "unstack", "stack", "per_layer",
           "PerLayerState"]
