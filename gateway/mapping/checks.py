"""Load-time checks of the mapping language's transforms, conditions, policy and grouping.

``spec.py`` calls these with an ``error(path, message)`` callback that turns a key path into a
ConfigError naming the file, line and key; here lives only what is expected of each option.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.errors import ConfigError
from gateway.mapping.targets import TARGETS, Kind
from gateway.mapping.text import SPLITS
from gateway.mapping.valuemaps import BUILTIN_MAPS, BUILTIN_TARGETS

if TYPE_CHECKING:
    from gateway.mapping.spec import Condition, FieldSpec, GroupSpec, PolicySpec

Path = tuple[str | int, ...]
ErrorFn = Callable[[Path, str], ConfigError]


def check_transforms(name: str, spec: FieldSpec, path: Path, error: ErrorFn) -> None:
    """regex, split, case, built-in maps, implied decimals, year pivot, when/else of one field."""
    kind = TARGETS[name].kind
    if spec.regex is not None:
        try:
            rx = re.compile(spec.regex)
        except re.error as exc:
            raise error(path + ("regex",), f"not a valid regular expression: {exc}") from None
        if rx.groups > 1:
            raise error(path + ("regex",), f"expected at most one group '(...)' to keep, got {rx.groups} "
                                           "(use '(?:...)' for groups that only structure the pattern)")
    if isinstance(spec.split, str) and spec.split not in SPLITS:
        raise error(path + ("split",), f"expected one of {', '.join(SPLITS)} or "
                                       f"{{separator: ',', index: 0}}, got {spec.split!r}")
    if spec.split is not None and not isinstance(spec.split, str) and not spec.split.separator:
        raise error(path + ("split", "separator"), "expected a separator of one or more characters")
    if isinstance(spec.map, str):
        if spec.map not in BUILTIN_MAPS:
            raise error(path + ("map",), f"expected a mapping of values or a built-in map "
                                         f"({', '.join(BUILTIN_MAPS)}), got {spec.map!r}")
        if name not in BUILTIN_TARGETS[spec.map]:
            raise error(path + ("map",), f"the built-in map '{spec.map}' is for "
                                         f"{', '.join(BUILTIN_TARGETS[spec.map])}, not {name}")
    if spec.implied_decimals is not None:
        if kind is not Kind.AMOUNT:
            raise error(path + ("implied_decimals",), "'implied_decimals' applies to amount fields only")
        if not 0 <= spec.implied_decimals <= 4 or spec.format is not None:
            raise error(path + ("implied_decimals",), "expected 0 to 4 (and no 'format' next to it)")
    if spec.year_pivot is not None:
        if kind is not Kind.DATE:
            raise error(path + ("year_pivot",), "'year_pivot' applies to date fields only")
        if not 0 <= spec.year_pivot <= 100:
            raise error(path + ("year_pivot",), f"expected 0 to 100, got {spec.year_pivot}")
    if spec.zero_pad is not None and not 1 <= spec.zero_pad <= 34:
        raise error(path + ("zero_pad",), f"expected a width from 1 to 34, got {spec.zero_pad}")
    if spec.sum:
        if kind is not Kind.AMOUNT:
            raise error(path + ("sum",), "'sum' applies to amount fields only")
        if not spec.columns:
            raise error(path + ("sum",), "'sum' adds up the amounts of 'columns': expected a list of columns")
        other = [k for k, v in (("regex", spec.regex), ("split", spec.split), ("case", spec.case),
                                ("zero_pad", spec.zero_pad), ("map", spec.map)) if v is not None]
        if other:
            raise error(path + ("sum",), f"'sum' reads each column as an amount; it cannot be combined with {other[0]}")
    if spec.when is not None:
        check_condition(spec.when, path + ("when",), error)
    if spec.else_ is not None and spec.when is None:
        raise error(path + ("else",), "'else' needs a 'when'")


def check_condition(cond: Condition, path: Path, error: ErrorFn) -> None:
    """Exactly one operator, a usable pattern, a column name."""
    if not cond.column.strip():
        raise error(path + ("column",), "expected a column name, got an empty string")
    ops = cond.operators
    if len(ops) != 1:
        got = ", ".join(ops) or "none"
        raise error(path, f"expected exactly one of equals, not_equals, in, not_in, matches, empty; got {got}")
    if cond.matches is not None:
        try:
            re.compile(cond.matches)
        except re.error as exc:
            raise error(path + ("matches",), f"not a valid regular expression: {exc}") from None


def check_policy(policy: PolicySpec, group: GroupSpec | None, error: ErrorFn) -> None:
    """Conditions in the policy and a usable group key."""
    if policy.hold_when is not None:
        check_condition(policy.hold_when, ("policy", "hold_when"), error)
    for i, rule in enumerate(policy.partners):
        check_condition(rule.when, ("policy", "partners", i, "when"), error)
        if not rule.partner.strip():
            raise error(("policy", "partners", i, "partner"), "expected a partner id")
    if group is not None and not (group.columns and all(c.strip() for c in group.columns)):
        raise error(("group", "by"), "expected a column name or a list of column names")
