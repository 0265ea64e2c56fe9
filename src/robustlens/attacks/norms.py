"""Moved to :mod:`robustlens.norms`, a core module (attacks, certification and training share it).

This alias keeps ``robustlens.attacks.norms`` imports of code written before the move working; it defines nothing
of its own. New code imports ``robustlens.norms``; delete this file once nothing imports it.
"""

from ..norms import (  # noqa: F401 - the names other modules imported from here
    INF,
    as_batch,
    check_eps,
    dual,
    lp_norm,
    minimal_linear_step,
    minimal_linear_step_in_box,
    norm_name,
    parse_norm,
    project,
    project_l0_ball,
    project_l1_ball,
    random_in_ball,
    sparse_l1_direction,
    steepest_direction,
)
