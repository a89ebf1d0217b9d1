"""Suites: the YAML schema, its validation, matrix expansion and stable cell ids.

`schema` (settings, ids) -> `validate` (canonical sections) -> `build` (profiles,
expansion) -> `select` (filters, reference, shards).
"""

from benchbench.suite.build import (
    build_suite,
    expand,
    load_suite,
    load_yaml,
    make_label,
    resolve_device,
)
from benchbench.suite.schema import (
    DEVICES,
    NON_IDENTITY_KEYS,
    PARAM_KEYS,
    SUITE_KEYS,
    Cell,
    CellParams,
    Suite,
    cell_id,
    slugify,
)
from benchbench.suite.select import (
    apply_filters,
    expected_cost,
    parse_filter,
    pick_reference,
    shard_cells,
)

__all__ = ["DEVICES", "NON_IDENTITY_KEYS", "PARAM_KEYS", "SUITE_KEYS", "Cell", "CellParams", "Suite", "apply_filters",
           "build_suite", "cell_id", "expand", "expected_cost", "load_suite", "load_yaml", "make_label",
           "parse_filter", "pick_reference", "resolve_device", "shard_cells", "slugify"]
