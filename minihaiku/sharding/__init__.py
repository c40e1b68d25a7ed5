"""``mh.sharding``: shard params over a device mesh with path-regex rules.

Design. Params are flat dicts keyed by readable paths, so a sharding is a
list of rules ``(path_regex, PartitionSpec)``; the first whose regex is found
in a path wins, and a spec names the trailing axes (a ``layer_stack`` adds a
leading one). The engine is JAX's own: ``NamedSharding`` and ``jax.jit``.

Logical axes. ``get_param(..., axes=("embed", "mlp"))`` names what each
dimension means; ``logical_rules`` maps those names to mesh axes. The axes
are creation metadata the core keeps on the run (``init`` returns nothing
but its dicts; ``apply`` creates nothing, so pays nothing);
``logical_axes``/``init``/``mh.summary`` read them by tracing ``init`` with
``jax.eval_shape`` (``minihaiku.init_shapes``). ``specs``/``shardings`` take
them as ``axes=``.

Meshes. ``mesh("data:4,model:2")`` builds ``Auto`` axes: the rules place the
params and the batch, JAX's GSPMD propagates the rest (``jax.make_mesh``
defaults to ``Explicit`` axes, which want every ambiguous op annotated).
"""

from minihaiku import _summary
from minihaiku.sharding.meshes import mesh
from minihaiku.sharding.rules import LogicalRules, logical_rules, shardings, specs
from minihaiku.sharding.sharded_init import init, logical_axes

_summary.register_placement(
    lambda tree, rules, mesh, axes: shardings(tree, rules, mesh, axes=axes))

__all__ = ["LogicalRules", "logical_rules", "shardings", "specs", "init", "logical_axes",
           "mesh"]
