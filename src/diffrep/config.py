"""The experiment as one typed, serializable config tree.

A run is fully described by a `Config`: dataset, model, diffusion and training settings.
It is built from a named preset plus `key=value` overrides (`make_config`), or from a file and
overrides (`load_config`), validated up front, and dumped as `config.json` into the run
directory, from which every tool rebuilds it.

Every invalid setting raises `ConfigError` with one line naming the setting and the
allowed values; the CLI turns that into exit code 2.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

CONFIG_VERSION = 2
LR_DECAYS = ("constant", "cosine")
LOSS_WEIGHTINGS = ("uniform", "min_snr")
PROBE_INPUTS = ("independent", "clean", "shared")
PHASE_RULE_INPUT = "independent"  # the probe input the phase rule reads (evaluation/phases.py)
DATA_KINDS = ("bumps", "sos", "stripes", "bumps+stripes", "digits")
DIGIT_GLYPHS = 1797  # glyphs in scikit-learn's bundled digits (sklearn.datasets.load_digits)
DEVICES = ("auto", "cpu", "cuda")  # training.device, and --device of the commands that load a checkpoint
CONFIG_FILE = "config.json"  # the config of a run directory (rundir.RunDir.CONFIG)


class ConfigError(ValueError):
    """A bad setting or bad input. The message is one line meant for the user."""


# The UNet's hook points in forward order (diffrep.model documents each), and the papers' names for two.
HOOK_POINTS = ("stem", "down1", "down2", "down3", "mid", "up1", "up2", "up3", "head")
LAYER_ALIASES = {"layer4": "down3", "bottleneck": "mid"}


def hook_points(model: "ModelConfig | None" = None) -> tuple[str, ...]:
    """The hook points of a model config's network, in forward order: the UNet's HOOK_POINTS, or the
    DiT's embed, then block1, written1 .. blockN, writtenN, then final (`dit_relative_points`)."""
    if model is None or model.arch == "unet":
        return HOOK_POINTS
    blocks = [(f"block{i}", f"written{i}") for i in range(1, model.dit_depth + 1)]
    return ("embed", *(name for pair in blocks for name in pair), "final")


def dit_relative_points(depth: int) -> dict[str, tuple[str, str]]:
    """The DiT's hook points that are differences of two others, {name: (point, base)}: written{i} is
    block{i}'s output minus the patch tokens (embed), what blocks 1..i have added to the residual
    stream. The block outputs carry every token's noisy patch forward unchanged; the written part is
    what the network computed from it and from (t, x, y)."""
    return {f"written{i}": (f"block{i}", "embed") for i in range(1, depth + 1)}


def layer_aliases(model: "ModelConfig | None" = None) -> dict[str, str]:
    """The papers' names for two hook points. In the DiT, whose blocks all see the whole image at one
    resolution, layer4 (the UNet's late encoder) is what the blocks up to half depth have written, and
    the bottleneck what the block after them has added to that: the UNet's down3 is a computed feature
    map, while the DiT's block outputs are dominated by the noisy patches they carry (docs/tuning.md,
    "Where the DiT keeps its code")."""
    if model is None or model.arch == "unet":
        return LAYER_ALIASES
    middle = max(model.dit_depth // 2, 1)
    return {"layer4": f"written{middle}", "bottleneck": f"written{min(middle + 1, model.dit_depth)}"}


def resolve_hook(name: str, model: "ModelConfig | None" = None) -> str:
    """A hook point's own name ("layer4" -> "down3" in the UNet); ConfigError for a name that is neither."""
    points, aliases = hook_points(model), layer_aliases(model)
    name = aliases.get(name, name)
    if name not in points:
        raise ConfigError(f"layer: unknown hook point {name!r}; allowed: {', '.join(points + tuple(aliases))}")
    return name


# ----------------------------------------------------------------------------
# The tree.


@dataclass
class Holdout:
    """A region of (x, y) conditions kept out of training (but evaluated on).

    Intervals are closed: a point is inside when |x - x0| <= width / 2, in pixel units.
      square: |x - x| <= w/2 and |y - y| <= w/2 (interior, or at an edge by placing its centre there)
      band:   |x - x| <= w/2 (axis "x": a vertical band, a lesion) or |y - y| <= w/2 (axis "y")
      cross:  |x - x| <= w/2 or |y - y| <= w/2 (the follow-up's cross: x or y in [13, 19] is
              x = y = 16, width = 6)
    """

    kind: str = "square"  # square | band | cross
    width: float = 4.0  # side of the square / width of the band(s), pixels
    x: float = 16.0  # centre of the region along x
    y: float = 16.0  # centre of the region along y
    axis: str = "x"  # band only: "x" holds out an interval of x (a vertical band), "y" of y


@dataclass
class DataConfig:
    # bumps | sos (sum of a horizontal and a vertical stripe) | stripes (1D) | bumps+stripes (2D bumps
    # for labels in the frame, the 1D stripes of `stripes` for the others) | digits (a real glyph)
    kind: str = "bumps"
    image_size: int = 32  # N: images are N x N
    latent_size: float = 32.0  # label space is [0, latent_size]^2; the N x N frame sits centred in it
    x_min: float = 0.0  # lattice of bump centres: x_min, x_min + dx, ... <= x_max
    x_max: float = 32.0
    y_min: float = 0.0
    y_max: float = 32.0
    dx: float = 0.5  # 4,225 bumps: reached accurate generation in fewer steps than dx = 1 (docs/tuning.md)
    dy: float = 0.5
    sigma: float = 1.0  # spread, pixels; sigma_x / sigma_y override it per axis when set
    sigma_x: float | None = None
    sigma_y: float | None = None
    periodic: bool = False  # wrapped distance: labels on a torus of circumference latent_size
    holdout: list[Holdout] = field(default_factory=list)  # union of regions held out of training
    keep_fraction: float = 1.0  # lambda: fraction of the (non-held-out) lattice kept for training
    subsample_seed: int = 0
    # stripes only: this many 2D sums of stripes (both labels in the frame) from the frame's rim join
    # the training set (the follow-up's "a few compositional examples"), after the lambda subsample
    rim_examples: int = 0
    rim_width: float = 2.0  # the rim: labels in the frame within this many pixels of its edge
    glyph: int = 0  # digits only: index of the 8 x 8 glyph in scikit-learn's digits (0-9 show the digits 0-9)
    glyph_scale: float = 1.5  # digits only: canvas pixels per glyph pixel (1.5: a 12 x 12 glyph)


@dataclass
class ModelConfig:
    widths: list[int] = field(default_factory=lambda: [16, 32, 64])  # channels of the 3 levels
    attention_resolutions: list[int] = field(default_factory=lambda: [8])  # self-attention where the feature map is this size
    emb_dim: int = 64  # width of each of the t, x, y embeddings; conditioning is their concatenation
    label_encoding: str = "sinusoidal"  # sinusoidal | mlp (trainable MLP on raw (x, y))
    label_max_period: float = 100.0  # longest period (pixels) of the sinusoidal x/y encodings
    # film: x and y reach every block only through the scale and shift of its channels (the papers') |
    # axes: besides, x's embedding is added as a profile over each feature map's columns and y's as one
    # over its rows (model.AxisShift), a bias towards a code that keeps x and y apart (factorized)
    conditioning: str = "film"
    label_dropout: float = 0.0  # probability of dropping the (x, y) conditioning of a training image (1: never conditioned, a control)
    skips: bool = True  # the UNet's long skip connections (encoder features concatenated into the decoder)
    groups: int = 8  # GroupNorm groups (capped at the channel count)
    heads: int = 1  # attention heads
    # unet: the papers' convolutional UNet | dit: a small diffusion transformer (patches, adaptive layer
    # norm on the same (t, x, y) conditioning), the backbone of recent image and video models
    arch: str = "unet"
    patch_size: int = 4  # dit: pixels per patch side (a 32 x 32 image is 8 x 8 = 64 tokens)
    dit_width: int = 96  # dit: token width
    dit_depth: int = 6  # dit: transformer blocks
    dit_heads: int = 4  # dit: attention heads
    # dit: sincos, DiT's fixed 2D sin-cos position embedding | learned, a trained one from N(0, 0.02), with
    # which the DiT does not place the bump at its condition (docs/tuning.md); `learned` reproduces the
    # first families runs (docs/archive/findings/families-learned-position)
    dit_position: str = "sincos"


# What the network learns to predict (diffusion.py), and the samplers of each objective.
OBJECTIVES = ("epsilon", "v", "flow")
SAMPLERS = {"epsilon": ("ddim", "ddpm"), "v": ("ddim", "ddpm"), "flow": ("euler", "heun")}


@dataclass
class DiffusionConfig:
    timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    schedule: str = "linear"  # linear (the paper's); the schedule is separate from the samplers
    # epsilon: the noise (DDPM, the papers') | v: v-prediction | flow: flow matching's velocity on the
    # straight path from data to noise; flow samples with scoring.sampler = euler or heun and trains unweighted
    objective: str = "epsilon"


@dataclass
class TrainingConfig:
    steps: int = 1200  # the length of the run (and of the cosine), or its cap with stop_after_phase_c
    stop_after_phase_c: int | None = None  # adaptive length: stop this many checkpoints after the first phase C (None: fixed)
    batch_size: int = 32
    lr: float = 4e-3
    warmup_steps: int = 0  # linear learning-rate warm-up, then lr_decay
    lr_decay: str = "cosine"  # constant | cosine (to 0 at `steps`, as in nanoGPT's train.py): keeps the ordered code ordered
    weight_decay: float = 0.0
    adam_beta2: float = 0.9  # AdamW's second-moment decay; torch's 0.999 made the passage to accurate bumps far slower
    # uniform: the plain MSE on the noise (DDPM's "simple" loss) | min_snr: each timestep's MSE weighted by
    # min(SNR_t, min_snr_gamma) / SNR_t (Hang et al. 2023): the nearly clean timesteps, whose large loss says
    # little about where the bump goes, weigh less (diffusion.noise_loss)
    loss_weighting: str = "min_snr"
    min_snr_gamma: float = 1.0
    grad_clip: float = 1.0  # max global grad norm; 0 disables
    ema_decay: float = 0.995
    seed: int = 0
    log_every: int = 25  # steps per metrics.jsonl line
    loss_buckets: int = 4  # the loss is also logged per timestep bucket (t in [0, T/k), ...)
    checkpoint_log_points: int = 0  # log-spaced checkpoints between step 1 and `steps` ...
    checkpoint_every: int = 50  # ... plus every K steps (dense enough to time phase B), and always the last step
    keep_resume_state: int = 2  # optimizer + RNG state is kept in the newest K checkpoints only
    device: str = "auto"  # auto | cpu | cuda


@dataclass
class ScoringConfig:
    """How generation is scored: a fixed evaluation set, sampler and detector settings."""

    during_training: bool = True  # score every checkpoint as it is written (into metrics.jsonl)
    grid: int = 8  # in-distribution evaluation set: the training conditions nearest a grid x grid grid
    # also score group "frame": the lattice points nearest a grid x grid grid over the frame, both labels
    # inside it, trained on or not (2D compositions of a stripes dataset, lambda-unseen bumps)
    frame_grid: bool = False
    heldout_max: int = 64  # conditions per held-out region (and of the lambda-unseen set), evenly spread
    sampler: str = "ddim"  # ddim (fast, for curves) | ddpm (all T steps, for final numbers); flow: euler | heun
    sampler_steps: int = 25  # DDIM, Euler or Heun steps (Heun calls the model 2 steps - 1 times)
    # DDIM's eta: 1 draws fresh noise at every step like DDPM; eta = 0 is deterministic. Against
    # DDPM-1000 eta = 0 drew spurious "several bumps"; eta = 1 stays within 0.08 (docs/tuning.md).
    eta: float = 1.0
    final_ddpm: bool = True  # also score a finished run's last checkpoint with DDPM (all T steps): final.* metrics
    seed: int = 0  # sampling seed: the same noise for every checkpoint
    weights: str = "ema"  # ema | raw
    tolerance: float = 0.5  # accurate: one bump within this many pixels on each axis
    threshold: float = 0.0  # stored-value threshold of the detector (0.0 = half the bump's peak)
    min_size: int = 2  # components smaller than this are specks
    # A bump or glyph counts only if the dataset's image rendered at its centroid fits it with R^2 at
    # least shape_min_r2 and a height of at least shape_min_height of a full bump (detect.py)
    shape_min_r2: float = 0.8
    shape_min_height: float = 0.5


@dataclass
class ProbeConfig:
    """How representations are probed at every checkpoint (one section of the config, `probe.*`)."""

    during_training: bool = True  # probe every checkpoint as it is written (into metrics.jsonl)
    # during training, keep the activations (first draw, float16) at steps divisible by this and the
    # last, for the report's pictures; 0 keeps none (`diffrep probe` keeps those it probes)
    keep_every: int = 250
    layers: list[str] = field(default_factory=lambda: ["layer4"])  # hook points (`hook_points`, or `layer_aliases`)
    # What the layer sees (probes.probe_inputs): "independent" noise per condition and draw on a blank
    # image, as the sampler starts each sample from its own noise; "clean": each condition's own image
    # noised; "shared": one noise draw for every condition, so that all differences come from (x, y).
    input: str = "independent"
    timestep: int = 999  # t of x_t; must be < diffusion.timesteps (tiny preset: <= 99)
    grid: int = 16  # grid x grid conditions (cell centres) over the lattice's range: K = 256 by default
    draws: int = 2  # independent noise draws per condition; >= 2 measures condition_share
    noise_seed: int = 0  # seed of every noise draw of the probe set
    # compute the paper's UMAP R^2 and embedding at every probed checkpoint (0.3 s per layer, plus 7 s of
    # JIT once per process). Off by default: the report embeds the kept activations itself, and the
    # rule does not read it.
    umap: bool = False
    umap_neighbors: int = 15  # UMAP n_neighbors (umap-learn's default)
    umap_min_dist: float = 0.1  # UMAP min_dist (umap-learn's default)
    umap_seed: int = 0  # UMAP random_state: a fixed seed makes the embedding reproducible
    knn: int = 10  # k of trustworthiness, knn_overlap and mle_dim
    ridge_alpha: float = 1.0  # ridge penalty on standardized activations (decoding, transfer, decoder angle)
    cv_folds: int = 5  # folds of the cross-validated decoding R^2 (shuffled, fixed seed)


@dataclass
class PhaseConfig:
    """Thresholds of the phase rule (`phase.*`); the rule is in the docstring of phases.py."""

    min_condition_share: float = 0.5  # structure: the condition sets at least this share of the code's variation
    min_order_gain: float = 0.5  # order: knn_overlap at least this far from chance towards 1


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    phase: PhaseConfig = field(default_factory=PhaseConfig)
    preset: str = "default"
    version: int = CONFIG_VERSION

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def with_overrides(self, overrides: dict) -> "Config":
        """A validated copy with {"section.key": value} overrides applied."""
        d = self.to_dict()
        for key, value in overrides.items():
            _set(d, key, value)
        return Config.from_dict(d)

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        if isinstance(d, dict) and d.get("version") == 1:
            d = _from_version_1(d)
        cfg = _build(cls, d, "")
        if cfg.version != CONFIG_VERSION:
            raise ConfigError(
                f"version: this diffrep reads config version {CONFIG_VERSION}, got {cfg.version}"
            )
        validate(cfg)
        return cfg


# ----------------------------------------------------------------------------
# Presets: named override sets on top of the defaults above.

PRESETS: dict[str, dict[str, object]] = {
    # The defaults above: a laptop-CPU run that goes through the phases in minutes.
    "default": {},
    # The papers' model size, for GPUs: the defaults' recipe at widths 64 / 128 / 256, seen on this CPU to
    # go A -> B -> C under the frozen phase rule with lr 1e-3 (4e-3 did not train at this width) and the
    # authors' 10% label dropout. Guesses: the 2,400-step horizon (at 1,200 steps accuracy was 0.67) and
    # batch 32 on a GPU (docs/tuning.md, "The paper preset").
    "paper": {
        "model.widths": [64, 128, 256],
        "model.attention_resolutions": [16, 8],
        "model.emb_dim": 128,
        "model.label_dropout": 0.1,
        "training.lr": 1e-3,
        "training.steps": 2400,
    },
    # Seconds-long runs for tests and smoke checks: a smaller network on 16 x 16 images, trained with a
    # constant rate, the plain loss and torch's AdamW betas.
    "tiny": {
        "data.image_size": 16,
        "data.latent_size": 16.0,
        "data.x_max": 16.0,
        "data.y_max": 16.0,
        "data.dx": 2.0,
        "data.dy": 2.0,
        "model.widths": [8, 16, 16],
        "model.emb_dim": 16,
        "model.groups": 4,
        "diffusion.timesteps": 100,
        "scoring.grid": 3,
        "scoring.heldout_max": 8,
        "scoring.sampler_steps": 5,
        "probe.timestep": 99,
        "probe.grid": 6,
        "probe.knn": 5,
        "training.steps": 40,
        "training.batch_size": 8,
        "training.lr": 1e-3,
        "training.lr_decay": "constant",
        "training.loss_weighting": "uniform",
        "training.adam_beta2": 0.999,
        "training.ema_decay": 0.999,
        "training.log_every": 5,
        "training.checkpoint_log_points": 3,
        "training.checkpoint_every": 10,
    },
}


# Version 1's defaults where version 2's differ: a version-1 config.json that lacks one of these keys
# (written before the setting existed) meant this value.
VERSION_1_DEFAULTS = {
    "data": {"dx": 1.0, "dy": 1.0},
    "training": {"steps": 3000, "batch_size": 64, "lr": 1e-3, "lr_decay": "constant", "adam_beta2": 0.999,
                 "loss_weighting": "uniform", "min_snr_gamma": 5.0, "ema_decay": 0.999, "checkpoint_log_points": 12,
                 "checkpoint_every": 500},
    "probe": {"umap": True},
}


def _from_version_1(d: dict) -> dict:
    """A version-1 config as version 2: the keys it lacks take version 1's defaults; its probes were
    one noise draw shared by every condition (probe.input = shared, probe.draws = 1); its phase
    thresholds belonged to a rule that compared each checkpoint with step 0, and are replaced by the
    current rule's defaults."""
    d = json.loads(json.dumps(d))  # a deep copy
    for section, defaults in VERSION_1_DEFAULTS.items():
        if isinstance(d.get(section), dict):
            d[section] = {**defaults, **d[section]}
    if isinstance(d.get("probe"), dict):
        d["probe"].update({"input": "shared", "draws": 1})
        d["probe"]["keep_every"] = 1 if d["probe"].pop("save_activations", True) else 0
    d.pop("phase", None)
    d["version"] = CONFIG_VERSION
    return d


def make_config(preset: str = "default", overrides: typing.Iterable[str] | dict = ()) -> Config:
    """A validated config: `preset`, then overrides ("key=value" strings or a dict)."""
    if preset not in PRESETS:
        raise ConfigError(f"preset: unknown preset {preset!r}; allowed: {', '.join(PRESETS)}")
    return Config(preset=preset).with_overrides({**PRESETS[preset], **_override_items(overrides)})


def load_config(path: str | os.PathLike, overrides: typing.Iterable[str] | dict = ()) -> Config:
    """A validated config from a file, then overrides (as in `make_config`).

    The file is a run directory's config.json (or the directory itself), or one written by hand:
    TOML when its name ends in .toml, JSON otherwise. It may be partial: its keys replace those of
    the preset it names (key `preset`, default "default") one by one, so that a run's whole
    config.json gives exactly that run's config and `[training]` / `lr = 1e-3` changes one
    setting. The file must be a valid config by itself; the overrides are applied after it. Each
    error is one line naming the file: missing, unparseable (with the parser's line and column),
    an unknown key (with the nearest known one), a wrong type or value.
    """
    path = Path(path)
    source = path / CONFIG_FILE if path.is_dir() else path
    try:
        text = source.read_text()
    except FileNotFoundError:
        what = f"{path} is a folder without a {CONFIG_FILE} (not a run directory)" if path.is_dir() else f"{path}: no such file"
        raise ConfigError(f"--config: {what}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"--config: {source} is unreadable ({e})") from None
    try:
        data = tomllib.loads(text) if source.suffix == ".toml" else json.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"--config: {source} is not valid TOML: {e}") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"--config: {source} is not valid JSON: {e.msg} (at line {e.lineno}, column {e.colno})") from None
    except RecursionError:
        raise ConfigError(f"--config: {source} is nested too deeply to read") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config: {source} must hold a table of settings (a JSON object), got {type(data).__name__}")
    try:
        if data.get("version") == 1:
            data = _from_version_1(data)
        preset = data.get("preset", "default")
        if not isinstance(preset, str):
            raise ConfigError(f"preset: expected a string, got {preset!r}")
        cfg = Config.from_dict(_merge(make_config(preset).to_dict(), data))
    except ConfigError as e:
        raise ConfigError(f"--config: {source}: {e}") from None
    return cfg.with_overrides(_override_items(overrides))


def _merge(base: dict, changes: dict) -> dict:
    """`base` with the keys of `changes`; a section (a dict in both) takes the changed keys one by one."""
    return {**base, **{key: _merge(base[key], value) if isinstance(base.get(key), dict) and isinstance(value, dict)
                       else value for key, value in changes.items()}}


def _override_items(overrides: typing.Iterable[str] | dict) -> dict:
    return dict(overrides) if isinstance(overrides, dict) else dict(map(parse_override, overrides))


def parse_override(text: str) -> tuple[str, object]:
    """'training.lr=3e-4' -> ('training.lr', 0.0003). Values are JSON, else plain strings."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set: expected key=value (e.g. training.lr=3e-4), got {text!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


def _set(d: dict, key: str, value: object) -> None:
    node, parts = d, key.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            raise _unknown_setting(key, d)
        if i == len(parts) - 1:
            node[part] = value
        else:
            node = node[part]


def _nearest(name: str, known) -> str | None:
    """The known name nearest `name` (difflib's closest match with a similarity of at least 0.7, which
    typos such as lrr or trainig reach), or None when none is that near."""
    return next(iter(difflib.get_close_matches(name, list(known), n=1, cutoff=0.7)), None)


def _unknown_setting(key: str, tree: dict) -> ConfigError:
    """The error for a dotted `key` that the config dict `tree` lacks. It names the nearest known key,
    found part by part ("trainig.lrr": "did you mean training.lr?"); with nothing near a part, the keys
    of the section where the match stopped; for a key below a setting, that setting."""
    node, known = tree, []
    for part in key.split("."):
        if not isinstance(node, dict):
            return ConfigError(f"{key}: unknown setting; {'.'.join(known)} is a setting, not a section")
        match = part if part in node else _nearest(part, node)
        if match is None:
            return ConfigError(f"{key}: unknown setting; nothing near it in {'.'.join(known) or 'config'}, "
                               f"whose keys are {', '.join(node)}")
        known.append(match)
        node = node[match]
    return ConfigError(f"{key}: unknown setting; did you mean {'.'.join(known)}?")


# ----------------------------------------------------------------------------
# Strict, typed construction from plain JSON data.


def _build(tp, value, path: str):
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{path or 'config'}: expected an object, got {value!r}")
        hints = typing.get_type_hints(tp)
        names = [f.name for f in dataclasses.fields(tp)]
        unknown = [k for k in value if k not in names]
        if unknown:
            near = _nearest(unknown[0], names)
            hint = f"did you mean {_join(path, near)}?" if near else f"allowed: {', '.join(names)}"
            raise ConfigError(f"{_join(path, unknown[0])}: unknown setting; {hint}")
        kwargs = {k: _build(hints[k], v, _join(path, k)) for k, v in value.items()}
        return tp(**kwargs)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _build(inner, value, path)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        (inner,) = typing.get_args(tp)
        return [_build(inner, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{path}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {tp} at {path}")  # a bug in this module, not input


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# ----------------------------------------------------------------------------
# Validation: ranges and relations that types cannot express.


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _choice(value: str, name: str, allowed: tuple[str, ...]) -> None:
    _check(value in allowed, f"{name}: must be one of {', '.join(allowed)} (got {value!r})")


def validate(cfg: Config) -> None:
    d, m, f, t = cfg.data, cfg.model, cfg.diffusion, cfg.training
    _choice(d.kind, "data.kind", DATA_KINDS)
    _check(4 <= d.image_size <= 256, f"data.image_size: must be in [4, 256] (got {d.image_size})")
    _check(
        d.latent_size >= d.image_size,
        f"data.latent_size: must be >= data.image_size ({d.image_size}) (got {d.latent_size})",
    )
    for axis in "xy":
        lo, hi, step = getattr(d, f"{axis}_min"), getattr(d, f"{axis}_max"), getattr(d, f"d{axis}")
        _check(step > 0, f"data.d{axis}: must be > 0 (got {step})")
        _check(
            0 <= lo <= hi <= d.latent_size,
            f"data.{axis}_min, data.{axis}_max: must satisfy 0 <= min <= max <= "
            f"data.latent_size ({d.latent_size}) (got {lo}, {hi})",
        )
        _check(
            (hi - lo) / step < 10_000,
            f"data.d{axis}: at most 10000 lattice points per axis (got {(hi - lo) / step + 1:.0f})",
        )
    for name in ("sigma", "sigma_x", "sigma_y"):
        value = getattr(d, name)
        _check(value is None or value > 0, f"data.{name}: must be > 0 (got {value})")
    _check(
        0 < d.keep_fraction <= 1,
        f"data.keep_fraction: must be in (0, 1] (got {d.keep_fraction})",
    )
    _check(d.rim_examples >= 0, f"data.rim_examples: must be >= 0 (got {d.rim_examples})")
    _check(d.rim_examples == 0 or d.kind == "stripes",
           f"data.rim_examples: only with data.kind = stripes (got kind {d.kind!r})")
    _check(d.rim_width > 0, f"data.rim_width: must be > 0 (got {d.rim_width})")
    _check(0 <= d.glyph < DIGIT_GLYPHS, f"data.glyph: must be in [0, {DIGIT_GLYPHS - 1}] (got {d.glyph})")
    _check(d.glyph_scale > 0, f"data.glyph_scale: must be > 0 (got {d.glyph_scale})")
    _check(not (d.kind == "digits" and d.periodic), "data.periodic: not with data.kind = digits (glyphs are not wrapped)")
    for i, h in enumerate(d.holdout):
        _choice(h.kind, f"data.holdout[{i}].kind", ("square", "band", "cross"))
        _choice(h.axis, f"data.holdout[{i}].axis", ("x", "y"))
        _check(h.width > 0, f"data.holdout[{i}].width: must be > 0 (got {h.width})")

    _check(
        len(m.widths) == 3 and all(w >= 1 for w in m.widths),
        f"model.widths: must be 3 positive channel counts, one per level (got {m.widths})",
    )
    _check(d.image_size % 4 == 0, f"data.image_size: must be a multiple of 4 for the UNet's two downsamplings (got {d.image_size})")
    for w in m.widths:
        g = min(m.groups, w)
        _check(w % g == 0 and w % m.heads == 0,
               f"model.widths: each width must be divisible by model.groups ({m.groups}) "
               f"and model.heads ({m.heads}) (got {m.widths})")
    _check(m.emb_dim >= 2 and m.emb_dim % 2 == 0, f"model.emb_dim: must be an even number >= 2 (got {m.emb_dim})")
    _choice(m.label_encoding, "model.label_encoding", ("sinusoidal", "mlp"))
    _choice(m.conditioning, "model.conditioning", ("film", "axes"))
    _check(m.label_max_period > 0, f"model.label_max_period: must be > 0 (got {m.label_max_period})")
    _check(0 <= m.label_dropout <= 1, f"model.label_dropout: must be in [0, 1] (got {m.label_dropout})")
    _check(m.groups >= 1, f"model.groups: must be >= 1 (got {m.groups})")
    _check(m.heads >= 1, f"model.heads: must be >= 1 (got {m.heads})")
    _choice(m.arch, "model.arch", ("unet", "dit"))
    _check(m.patch_size >= 1 and d.image_size % m.patch_size == 0,
           f"model.patch_size: must divide data.image_size ({d.image_size}) (got {m.patch_size})")
    _check(m.dit_depth >= 1, f"model.dit_depth: must be >= 1 (got {m.dit_depth})")
    _choice(m.dit_position, "model.dit_position", ("sincos", "learned"))
    _check(m.dit_heads >= 1 and m.dit_width >= 4 and m.dit_width % 4 == 0 and m.dit_width % m.dit_heads == 0,
           f"model.dit_width: must be divisible by 4 (the 2D sin-cos position embedding) and by model.dit_heads "
           f"({m.dit_heads}) (got {m.dit_width})")

    _choice(f.schedule, "diffusion.schedule", ("linear",))
    _check(2 <= f.timesteps <= 100_000, f"diffusion.timesteps: must be in [2, 100000] (got {f.timesteps})")
    _check(
        0 < f.beta_start < f.beta_end < 1,
        f"diffusion.beta_start, diffusion.beta_end: must satisfy 0 < start < end < 1 "
        f"(got {f.beta_start}, {f.beta_end})",
    )

    _check(1 <= t.steps <= 1_000_000_000, f"training.steps: must be in [1, 1000000000] (got {t.steps})")
    if t.stop_after_phase_c is not None:
        _check(t.stop_after_phase_c >= 0, f"training.stop_after_phase_c: must be >= 0 or null (got {t.stop_after_phase_c})")
        _check(cfg.probe.during_training,
               "training.stop_after_phase_c: needs probe.during_training = true (phases come from the probes)")
        _check(cfg.probe.input == PHASE_RULE_INPUT,
               f"training.stop_after_phase_c: needs probe.input = {PHASE_RULE_INPUT}, the input the phase rule reads "
               f"(got {cfg.probe.input})")
    _check(1 <= t.batch_size <= 65536, f"training.batch_size: must be in [1, 65536] (got {t.batch_size})")
    _check(t.lr > 0, f"training.lr: must be > 0 (got {t.lr})")
    _check(t.warmup_steps >= 0, f"training.warmup_steps: must be >= 0 (got {t.warmup_steps})")
    _check(t.lr_decay in LR_DECAYS, f"training.lr_decay: must be one of {', '.join(LR_DECAYS)} (got {t.lr_decay!r})")
    _check(t.weight_decay >= 0, f"training.weight_decay: must be >= 0 (got {t.weight_decay})")
    _choice(t.loss_weighting, "training.loss_weighting", LOSS_WEIGHTINGS)
    _check(t.min_snr_gamma > 0, f"training.min_snr_gamma: must be > 0 (got {t.min_snr_gamma})")
    _check(t.grad_clip >= 0, f"training.grad_clip: must be >= 0, 0 disables (got {t.grad_clip})")
    _check(0 < t.adam_beta2 < 1, f"training.adam_beta2: must be in (0, 1) (got {t.adam_beta2})")
    _check(0 <= t.ema_decay < 1, f"training.ema_decay: must be in [0, 1) (got {t.ema_decay})")
    _check(t.seed >= 0, f"training.seed: must be >= 0 (got {t.seed})")
    _check(t.log_every >= 1, f"training.log_every: must be >= 1 (got {t.log_every})")
    _check(1 <= t.loss_buckets <= f.timesteps,
           f"training.loss_buckets: must be in [1, diffusion.timesteps] (got {t.loss_buckets})")
    _check(t.checkpoint_log_points >= 0, f"training.checkpoint_log_points: must be >= 0 (got {t.checkpoint_log_points})")
    _check(t.checkpoint_every >= 1, f"training.checkpoint_every: must be >= 1 (got {t.checkpoint_every})")
    _check(t.steps // t.checkpoint_every <= 100_000,  # the schedule is held in memory, and each is a file
           f"training.checkpoint_every: at most 100000 checkpoints, training.steps / checkpoint_every "
           f"(got {t.steps // t.checkpoint_every})")
    _check(t.keep_resume_state >= 1, f"training.keep_resume_state: must be >= 1 (got {t.keep_resume_state})")
    _choice(t.device, "training.device", DEVICES)

    s = cfg.scoring
    _check(1 <= s.grid <= 64, f"scoring.grid: must be in [1, 64] (got {s.grid})")
    _check(1 <= s.heldout_max <= 4096, f"scoring.heldout_max: must be in [1, 4096] (got {s.heldout_max})")
    _choice(f.objective, "diffusion.objective", OBJECTIVES)
    _check(s.sampler in SAMPLERS[f.objective], f"scoring.sampler: diffusion.objective {f.objective} samples with "
           f"{', '.join(SAMPLERS[f.objective])} (got {s.sampler!r})")
    _check(f.objective != "flow" or t.loss_weighting == "uniform",
           "training.loss_weighting: diffusion.objective flow trains with uniform (min_snr weighs noise and v "
           f"predictions) (got {t.loss_weighting})")
    _check(1 <= s.sampler_steps <= f.timesteps,
           f"scoring.sampler_steps: must be in [1, diffusion.timesteps] (got {s.sampler_steps})")
    _check(0 <= s.eta <= 1, f"scoring.eta: must be in [0, 1] (got {s.eta})")
    _check(s.seed >= 0, f"scoring.seed: must be >= 0 (got {s.seed})")
    _choice(s.weights, "scoring.weights", ("ema", "raw"))
    _check(s.tolerance > 0, f"scoring.tolerance: must be > 0 (got {s.tolerance})")
    _check(-1 <= s.threshold < 1, f"scoring.threshold: must be in [-1, 1) (got {s.threshold})")
    _check(s.min_size >= 1, f"scoring.min_size: must be >= 1 (got {s.min_size})")
    _check(0 <= s.shape_min_r2 <= 1, f"scoring.shape_min_r2: must be in [0, 1] (got {s.shape_min_r2})")
    _check(0 <= s.shape_min_height <= 1, f"scoring.shape_min_height: must be in [0, 1] (got {s.shape_min_height})")

    p = cfg.probe
    _check(len(p.layers) >= 1 and len(set(p.layers)) == len(p.layers),
           f"probe.layers: must be a non-empty list of distinct hook points (got {p.layers})")
    for name in p.layers:
        try:
            resolve_hook(name, m)
        except ConfigError as e:
            raise ConfigError(f"probe.layers: {str(e).removeprefix('layer: ')}") from None
    _check(0 <= p.timestep < f.timesteps,
           f"probe.timestep: must be in [0, diffusion.timesteps - 1 = {f.timesteps - 1}] (got {p.timestep})")
    _check(4 <= p.grid <= 64, f"probe.grid: must be in [4, 64] (got {p.grid})")
    k = p.grid * p.grid
    _choice(p.input, "probe.input", PROBE_INPUTS)
    _check(1 <= p.draws <= 16, f"probe.draws: must be in [1, 16] (got {p.draws})")
    _check(p.noise_seed >= 0, f"probe.noise_seed: must be >= 0 (got {p.noise_seed})")
    _check(2 <= p.umap_neighbors < k,
           f"probe.umap_neighbors: must be in [2, probe.grid^2 - 1 = {k - 1}] (got {p.umap_neighbors})")
    _check(0 <= p.umap_min_dist <= 1, f"probe.umap_min_dist: must be in [0, 1] (got {p.umap_min_dist})")
    _check(p.umap_seed >= 0, f"probe.umap_seed: must be >= 0 (got {p.umap_seed})")
    _check(p.keep_every >= 0, f"probe.keep_every: must be >= 0 (got {p.keep_every})")
    _check(2 <= p.knn < k / 2, f"probe.knn: must be >= 2 and < probe.grid^2 / 2 = {k / 2:g} (got {p.knn})")
    _check(p.ridge_alpha > 0, f"probe.ridge_alpha: must be > 0 (got {p.ridge_alpha})")
    _check(2 <= p.cv_folds <= min(20, k), f"probe.cv_folds: must be in [2, {min(20, k)}] (got {p.cv_folds})")

    ph = cfg.phase
    for name in ("min_condition_share", "min_order_gain"):
        value = getattr(ph, name)
        _check(-1 <= value <= 1, f"phase.{name}: must be in [-1, 1] (got {value})")
