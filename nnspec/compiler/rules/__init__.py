"""Plan rewrites: same-signature functions ``ViewPlan -> ViewPlan``, applied in order.

Each lives in its own file with a golden fixture under tests/fixtures/rules/.
"""

from nnspec.compiler.rules.pushdown_reductions import pushdown_reductions
from nnspec.compiler.rules.skip_flatten import skip_flatten

RULES = (skip_flatten, pushdown_reductions)

__all__ = ["RULES", "pushdown_reductions", "skip_flatten"]
