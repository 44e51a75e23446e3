"""`tune --space KEY=DIST(...)`: a search space typed against the task's config class.

Every dimension is checked before any trial runs, the way `--set` is: the key must be a config
field, the distribution must suit the field's type (loguniform/uniform for floats, int for ints,
choice for anything), and both ends (or every choice) must be valid `--set` values of that field.
Imports neither keras nor optuna: mistakes are answered at once.
"""

from __future__ import annotations

import math
import re
import types
import typing
from dataclasses import dataclass

from errors import UserError
from tasks.base import apply_overrides, config_fields, parse_set_value

KINDS = ("loguniform", "uniform", "int", "logint", "choice")
_SPEC = re.compile(r"^\s*([A-Za-z_]\w*)\s*=\s*([a-z]+)\s*\((.*)\)\s*$", re.S)
_EXAMPLE = 'e.g. --space "learning_rate=loguniform(1e-4,3e-3)" --space "model=choice(cnn,resnet)"'


@dataclass(frozen=True)
class Dimension:
    """One searched config key: `kind` with `low`/`high` or `choices`."""

    key: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    choices: tuple = ()

    @property
    def text(self) -> str:
        inner = ",".join(map(str, self.choices)) if self.kind == "choice" else f"{self.low!r},{self.high!r}"
        return f"{self.key}={self.kind}({inner})"

    def contains(self, value) -> bool:
        if self.kind == "choice":
            return value in self.choices
        return self.low <= value <= self.high


def _field_type(cfg_cls, key: str):
    hint = typing.get_type_hints(cfg_cls)[key]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if typing.get_origin(hint) in (typing.Union, types.UnionType) else hint


def _split_args(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_dimension(spec: str, cfg) -> Dimension:
    """One `--space` string, checked against the resolved config `cfg` (a task config instance)."""
    m = _SPEC.match(spec)
    if not m:
        raise UserError(f"--space {spec!r}: expected KEY=DIST(...) with DIST one of {', '.join(KINDS)}; {_EXAMPLE}")
    key, kind, inner = m.groups()
    fields = config_fields(type(cfg))
    if key not in fields:
        raise UserError(f"--space {spec!r}: unknown config key {key!r}; valid keys: {', '.join(sorted(fields))}")
    if kind not in KINDS:
        raise UserError(f"--space {spec!r}: unknown distribution {kind!r}; expected one of {', '.join(KINDS)}")
    tp = _field_type(type(cfg), key)
    values = [parse_set_value(a) for a in _split_args(inner)]
    if kind == "choice":
        if len(values) < 2:
            raise UserError(f"--space {spec!r}: choice(...) needs at least two values")
        checked = tuple(getattr(_with(cfg, key, v, spec), key) for v in values)
        if len(set(checked)) != len(checked):
            raise UserError(f"--space {spec!r}: choice(...) lists a value twice")
        return Dimension(key, kind, choices=checked)
    want = float if kind in ("loguniform", "uniform") else int
    if tp is not want:
        hint = "int(lo,hi) or choice(...)" if tp is int else "loguniform/uniform(lo,hi)" if tp is float else "choice(...)"
        raise UserError(f"--space {spec!r}: {key} is a {getattr(tp, '__name__', tp)} field; "
                        f"{kind}(...) draws {want.__name__}s; use {hint}")
    if len(values) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
        raise UserError(f"--space {spec!r}: {kind}(lo,hi) takes two numbers")
    if want is int and any(not isinstance(v, int) for v in values):
        raise UserError(f"--space {spec!r}: {kind}(lo,hi) takes two ints")
    low, high = (want(v) for v in values)
    if not low < high:
        raise UserError(f"--space {spec!r}: expected lo < hi, got {low!r} >= {high!r}")
    if kind.startswith("log") and low <= 0:
        raise UserError(f"--space {spec!r}: a log scale needs lo > 0, got {low!r}")
    for end in (low, high):
        _with(cfg, key, end, spec)  # both ends must be valid --set values (e.g. learning_rate > 0)
    return Dimension(key, kind, low, high)


def _with(cfg, key: str, value, spec: str):
    try:
        return apply_overrides(cfg, {key: value})
    except UserError as exc:
        raise UserError(f"--space {spec!r}: {exc}") from None


def parse_space(specs: list[str], cfg, fixed: list[str] = ()) -> list[Dimension]:
    """All `--space` strings; a key searched twice, or also fixed by `--set`, is refused."""
    dims: list[Dimension] = []
    for spec in specs:
        dim = parse_dimension(spec, cfg)
        if any(d.key == dim.key for d in dims):
            raise UserError(f"--space {spec!r}: {dim.key} is already searched by another --space")
        if dim.key in fixed:
            raise UserError(f"--space {spec!r}: {dim.key} is also fixed by --set/flag; drop one of them")
        dims.append(dim)
    if not dims:
        raise UserError(f"tune: the search space is empty; {_EXAMPLE}")
    return dims


def default_space(cfg) -> list[str]:
    """What `tune` searches when no --space is given: the knobs every user tunes first, where the
    task's config has them (peak learning rate around its default, model variant, dropout)."""
    fields = config_fields(type(cfg))
    lr = cfg.learning_rate
    out = [f"learning_rate=loguniform({lr / 10:.3g},{min(lr * 3, 1.0):.3g})"]
    choices = fields["model"].metadata.get("choices") or ()
    if len(choices) > 1:
        out.append(f"model=choice({','.join(choices)})")
    if "dropout" in fields and _field_type(type(cfg), "dropout") is float:
        out.append("dropout=uniform(0.0,0.5)")
    return out


def default_params(dims: list[Dimension], cfg) -> tuple[dict, list[str]]:
    """The config's own values of the searched keys (trial 0 runs them), and the keys whose default
    lies outside the space (trial 0 then draws those instead)."""
    params, outside = {}, []
    for d in dims:
        value = getattr(cfg, d.key)
        if d.contains(value):
            params[d.key] = value
        else:
            outside.append(d.key)
    return params, outside


def overrides_of(params: dict, dims: list[Dimension]) -> dict:
    """A trial's params as config overrides (only the config keys: `backend` is not one)."""
    keys = {d.key for d in dims}
    return {k: v for k, v in params.items() if k in keys}


def set_flags(overrides: dict) -> list[str]:
    """`--set key=value` flags that reproduce these overrides exactly (repr keeps every digit)."""
    out = []
    for key, value in overrides.items():
        text = value if isinstance(value, str) else repr(value)
        out += ["--set", f"{key}={text}"]
    return out


def describe(dims: list[Dimension]) -> str:
    return "  ".join(d.text for d in dims)


def is_finite(value) -> bool:
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value)

