"""The grid of a sweep: parsing "key=v1,v2", and expanding grid x seeds into named, validated configs.

A run's name spells out its point, keys sorted, e.g. `data.dx=0.5,training.lr=0.001,seed=1`
(characters other than letters, digits and `._+-` become `_`; a name over 100 characters is
cut and ends with a hash of the point instead, and so does a name that sanitizing made collide).
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
import re

from ..config import Config, ConfigError
from ..data import BumpDataset

MAX_NAME = 100  # characters of a run name; longer ones are cut and end with a hash


def parse_grid(items: list[str]) -> dict[str, list]:
    """["training.lr=1e-3,3e-4", "model.widths=[8,16,16],[16,32,32]"] -> {key: [values]}.

    Values are split at top-level commas (not inside [...], {...} or "...") and each is parsed
    as JSON, else kept as a plain string (so `scoring.sampler=ddim,ddpm` works unquoted).
    Linked settings (`expand_grid`): "data.dx+data.dy=[0.5,0.5],[0.1,1]".
    """
    grid: dict[str, list] = {}
    for text in items:
        key, sep, raw = text.partition("=")
        key = key.strip()
        if not sep or not key or not raw.strip():
            raise ConfigError(f"--grid: expected key=v1,v2,... (e.g. training.lr=1e-3,3e-4), got {text!r}")
        if key in grid:
            raise ConfigError(f"--grid: {key} is given twice; list all its values in one --grid {key}=v1,v2")
        grid[key] = [_parse_value(piece, text) for piece in _split_top_level(raw, text)]
    return grid


def _split_top_level(raw: str, text: str) -> list[str]:
    pieces, depth, in_string, start = [], 0, False, 0
    for i, ch in enumerate(raw):
        if in_string:
            in_string = not (ch == '"' and raw[i - 1] != "\\")
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
            if depth < 0:
                break
        elif ch == "," and depth == 0:
            pieces.append(raw[start:i])
            start = i + 1
    if depth != 0 or in_string:
        raise ConfigError(f"--grid: unbalanced brackets or quotes in {text!r}")
    pieces.append(raw[start:])
    return pieces


def _parse_value(piece: str, text: str):
    piece = piece.strip()
    if not piece:
        raise ConfigError(f"--grid: empty value in {text!r}")
    try:
        return json.loads(piece)
    except json.JSONDecodeError:
        return piece


def parse_seeds(text: str) -> list[int]:
    """'0,1,2' or '0-4' (inclusive) or a mix like '0-2,7' -> [0, 1, 2, 7]."""
    seeds: list[int] = []
    for part in text.split(","):
        lo, dash, hi = part.strip().partition("-")
        try:
            seeds.extend(range(int(lo), int(hi) + 1) if dash else [int(lo)])
        except ValueError:
            raise ConfigError(f"--seeds: expected seeds like 0,1,2 or 0-4, got {text!r}") from None
    return seeds


def expand_grid(base: Config, grid: dict[str, list], seeds: list[int]) -> list[tuple[str, Config]]:
    """Every point of grid x seeds as (run name, validated config); grid keys vary slowest.

    A linked key "k1+k2" sets several settings together: each of its values is a list with one
    value per setting, e.g. {"data.dx+data.dy": [[0.5, 0.5], [0.1, 1.0]]} (dx = dy = 0.5, then
    dx = 0.1 with dy = 1), so a grid can hold points that are not a cartesian product.

    Raises ConfigError (one line, naming the setting or --grid / --seeds) on an unknown key,
    an invalid value, an empty value list, a repeated value or seed, a setting given by two
    keys, a linked value of the wrong length, or two points that give the same config (e.g. 1
    and 1.0 for a float setting).
    """
    if not seeds:
        raise ConfigError("--seeds: at least one seed is needed")
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"--seeds: seeds must be integers (got {seed!r})")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds: each seed may appear once (got {seeds})")
    settings = [setting for key in grid for setting in key.split("+")]
    if "training.seed" in settings:
        raise ConfigError("--grid: training.seed is set by --seeds, not by --grid")
    twice = [s for s, n in collections.Counter(settings).items() if n > 1]
    if twice:
        raise ConfigError(f"--grid: {twice[0]} is set by more than one grid key; give each setting once")
    keys = sorted(grid)
    for key in keys:
        values = grid[key]
        if not isinstance(values, list) or not values:
            raise ConfigError(f"--grid: {key} needs a non-empty list of values (got {values!r})")
        width = len(key.split("+"))
        if width > 1 and not all(isinstance(v, list) and len(v) == width for v in values):
            bad = next(v for v in values if not (isinstance(v, list) and len(v) == width))
            raise ConfigError(f"--grid: {key} links {width} settings; each value must be a list of {width} "
                              f"values, one per setting (got {bad!r})")
        canon = [canonical(v) for v in values]
        if len(set(canon)) != len(canon):
            raise ConfigError(f"--grid: {key} lists a value twice ({values})")

    points = []
    for combo in itertools.product(*(grid[k] for k in keys)):
        point = dict(zip(keys, combo))
        overrides = {}
        for key, value in point.items():
            overrides.update(zip(key.split("+"), value) if "+" in key else [(key, value)])
        for seed in seeds:
            cfg = base.with_overrides({**overrides, "training.seed": seed})  # ConfigError names the key
            BumpDataset(cfg.data)  # lattices that are too large, masks that leave no data
            points.append((point, seed, cfg))

    seen: dict[str, dict] = {}
    for point, seed, cfg in points:
        text = cfg.to_json()
        if text in seen:
            raise ConfigError(f"--grid: {seen[text]} and {point} give the same config; list each value once")
        seen[text] = point

    names = [_run_name(point, seed) for point, seed, _ in points]
    counts = collections.Counter(names)
    for i, (point, seed, _) in enumerate(points):
        if counts[names[i]] > 1:  # sanitizing made two names equal: the hash tells them apart
            names[i] = f"{names[i][:MAX_NAME - 11]}-{_digest(point, seed)}"
    return [(name, cfg) for name, (_, _, cfg) in zip(names, points)]


def canonical(value) -> str:
    return json.dumps(value, sort_keys=True)


def _digest(point: dict, seed: int) -> str:
    return hashlib.sha1(canonical({"point": point, "seed": seed}).encode()).hexdigest()[:10]


def _run_name(point: dict, seed: int) -> str:
    parts = [f"{key}={_format(value)}" for key, value in sorted(point.items())] + [f"seed={seed}"]
    name = ",".join(parts)
    if len(name) > MAX_NAME:
        name = f"{name[:MAX_NAME - 11]}-{_digest(point, seed)}"
    return name


def _format(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), sort_keys=True)
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("_") or "_"


