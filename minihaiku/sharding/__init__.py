"""``mh.sharding``: shard params over a device mesh with path-regex rules.

Design. Params are flat dicts keyed by readable paths, so a sharding is a
list of rules ``(path_regex, PartitionSpec)``; the first whose regex is found
in a path wins, and a spec names the trailing axes (a ``layer_stack`` adds a
leading one). The engine is JAX's own: ``NamedSharding`` and ``jax.jit``.

Logical axes. ``get_param(..., axes=("embed", "mlp"))`` names what each
dimension means; ``logical_rules`` maps those names to mesh axes. The axes
are not stored with the params (``init`` returns nothing but its dicts) and
cost nothing in ``apply``: ``get_param`` reports them only when it creates a
param, to a collector (``_collect``) that is active only while
``logical_axes``/``init``/``mh.summary`` trace ``init`` with
``jax.eval_shape``. ``specs``/``shardings`` take the collected dict as
``axes=``.

Meshes. ``mesh("data:4,model:2")`` builds ``Auto`` axes: the rules place the
params and the batch, JAX's GSPMD propagates the rest (``jax.make_mesh``
defaults to ``Explicit`` axes, which want every ambiguous op annotated).
"""

from minihaiku.sharding.meshes import mesh
from minihaiku.sharding.rules import LogicalRules, logical_rules, shardings, specs
from minihaiku.sharding.sharded_init import init, logical_axes

__all__ = ["LogicalRules", "logical_rules", "shardings", "specs", "init", "logical_axes",
           "mesh"]
