"""The conditional UNet of the paper, with named hook points.

Shape (docs/conventions.md): three down and three up blocks with skip connections and
self-attention, a bottleneck between them. The conditioning vector is the concatenation
of three embeddings, of t, of x and of y, each through its own small MLP (as in the first
author's code), and every block receives it (scale and shift after its second norm).
`model.skips = false` removes the long skip connections (an ablation): each up block then reads
only the block before it.

Hook points, in forward order (`UNet.HOOKS`); each is the output of one block:

    stem   conv 1 -> w0                          N x N
    down1  res block w0 -> w0, then downsample   N x N      (features before the downsample)
    down2  res block w0 -> w1, then downsample   N/2 x N/2
    down3  res block w1 -> w2                    N/4 x N/4  <- the paper's "layer 4" (alias layer4):
                                                              4th module, late encoder, before the bottleneck
    mid    res block w2 -> w2 + attention        N/4 x N/4  (the bottleneck)
    up1    res block 2 w2 -> w1, then upsample   N/4 x N/4
    up2    res block 2 w1 -> w0, then upsample   N/2 x N/2
    up3    res block 2 w0 -> w0                  N x N
    head   norm, SiLU, conv w0 -> 1 (the predicted noise)

Self-attention follows the res block of every block whose feature map is one of
`attention_resolutions` (default 8: down3, mid, up1 on 32 x 32 images).
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import HOOK_POINTS, ConfigError, ModelConfig, dit_relative_points, hook_points, layer_aliases



class SinusoidalEncoding(nn.Module):
    """v [B] -> [B, dim]: sin and cos at frequencies geometric from 1 down to 1 / max_period."""

    def __init__(self, dim: int, max_period: float):
        super().__init__()
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half) / max(half - 1, 1))
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        args = v.float()[:, None] * self.freqs[None, :]
        return torch.cat([args.sin(), args.cos()], dim=1)


def embedding_mlp(in_dim: int, dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, dim), nn.SiLU(), nn.Linear(dim, dim))


class LabelEncoder(nn.Module):
    """One label (x or y, pixels) -> [B, dim]: sinusoidal + MLP, or a trainable MLP on the raw value."""

    def __init__(self, kind: str, dim: int, max_period: float, scale: float):
        super().__init__()
        self.scale = scale  # raw labels are divided by the latent size so the MLP sees [0, 1]
        self.encode = SinusoidalEncoding(dim, max_period) if kind == "sinusoidal" else None
        self.mlp = embedding_mlp(dim if self.encode is not None else 1, dim)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        h = self.encode(v) if self.encode is not None else (v.float() / self.scale)[:, None]
        return self.mlp(h)


class AxisShift(nn.Module):
    """The `model.conditioning = axes` bias: x's embedding as a per-channel profile over the columns of a
    size x size feature map, y's as one over its rows, summed into a [B, C, size, size] shift. x then
    moves the features only along the columns and y only along the rows, so a code that keeps them apart
    is the easy one to learn. Zero at initialization: the network starts as the FiLM-only one."""

    def __init__(self, emb_dim: int, channels: int, size: int):
        super().__init__()
        self.emb_dim, self.channels, self.size = emb_dim, channels, size
        self.columns = nn.Linear(emb_dim, channels * size)
        self.rows = nn.Linear(emb_dim, channels * size)
        for layer in (self.columns, self.rows):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, cond: torch.Tensor) -> torch.Tensor:
        """cond [B, 3 emb_dim] (t, x, y: `ConditionedNet.conditioning`) -> [B, C, size, size]."""
        e, b, c, n = self.emb_dim, len(cond), self.channels, self.size
        ex, ey = cond[:, e:2 * e], cond[:, 2 * e:]
        return self.columns(ex).view(b, c, 1, n) + self.rows(ey).view(b, c, n, 1)


class Attention(nn.Module):
    """Residual multi-head self-attention over the pixels of a feature map."""

    def __init__(self, channels: int, groups: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(min(groups, channels), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        a = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.out(a.transpose(-1, -2).reshape(b, c, h, w))


class Block(nn.Module):
    """A conditioned residual block, optionally followed by self-attention. One hook point."""

    def __init__(self, cin: int, cout: int, cond_dim: int, groups: int, heads: int, attention: bool,
                 axes: AxisShift | None = None):
        super().__init__()
        self.axes = axes  # model.conditioning = axes: added with the shift
        self.norm1 = nn.GroupNorm(min(groups, cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.cond = nn.Linear(cond_dim, 2 * cout)
        self.norm2 = nn.GroupNorm(min(groups, cout), cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        self.attention = Attention(cout, groups, heads) if attention else None

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.cond(cond)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        if self.axes is not None:
            h = h + self.axes(cond)
        h = self.conv2(F.silu(h))
        h = h + self.skip(x)
        return self.attention(h) if self.attention is not None else h


class StopForward(Exception):
    """Raised by a `UNet.capture(..., stop_early=True)` hook once every requested output is recorded."""


class ConditionedNet(nn.Module):
    """What the UNet and the DiT share: the conditioning vector of (t, x, y), the concatenation of
    three embeddings, each through its own small MLP (as in the first author's code), and named hook
    points (`HOOKS`, with the papers' names `aliases`) to capture and to intervene on. A point in
    `RELATIVE` is no module's output but the difference of two points' outputs, {name: (point, base)}."""

    HOOKS: tuple[str, ...] = ()
    RELATIVE: dict[str, tuple[str, str]] = {}

    def __init__(self, cfg: ModelConfig, latent_size: float):
        super().__init__()
        e = cfg.emb_dim
        self.cond_dim = 3 * e
        self.aliases = layer_aliases(cfg)
        self.time_embed = nn.Sequential(SinusoidalEncoding(e, 10_000.0), embedding_mlp(e, e))
        self.x_embed = LabelEncoder(cfg.label_encoding, e, cfg.label_max_period, latent_size)
        self.y_embed = LabelEncoder(cfg.label_encoding, e, cfg.label_max_period, latent_size)

    def conditioning(self, t: torch.Tensor, labels: torch.Tensor, drop_labels: torch.Tensor | None) -> torch.Tensor:
        """[B] timesteps, [B, 2] (x, y) -> [B, 3 emb_dim]; dropped labels give zero x and y embeddings."""
        ex, ey = self.x_embed(labels[:, 0]), self.y_embed(labels[:, 1])
        if drop_labels is not None:
            keep = (~drop_labels).to(ex.dtype)[:, None]
            ex, ey = ex * keep, ey * keep
        return torch.cat([self.time_embed(t), ex, ey], dim=1)

    def capture(self, names, stop_early: bool = False):
        """Record the outputs of the named hook points: `with model.capture(["layer4"]) as acts:`.

        With stop_early, the forward pass raises `StopForward` right after the last of them (in
        forward order) has run: a probe of "layer4" then skips the whole decoder. The caller
        catches it around its `model(...)` call.
        """
        return capture_outputs(self._hook_modules(), names, stop_early, self.aliases, self.RELATIVE)

    def intervene(self, edits: dict):
        """Replace, add to or ablate hook points' outputs during every forward pass inside the block
        (a whole sampling run included), in the spirit of TransformerLens's `run_with_hooks`:

            with model.intervene({"layer4": lambda a: torch.zeros_like(a)}):
                images = sample(model, sampler, labels, 32)

        Each function gets the point's output and returns what the rest of the network reads
        instead, or None to leave it; returning what it got changes nothing, bit for bit.
        """
        return intervene_outputs(self._hook_modules(), edits, self.aliases, self.RELATIVE)

    def _hook_modules(self) -> dict[str, nn.Module]:
        return {name: getattr(self, name) for name in self.HOOKS if name not in self.RELATIVE}


class UNet(ConditionedNet):
    HOOKS = HOOK_POINTS

    def __init__(self, cfg: ModelConfig, image_size: int, latent_size: float):
        super().__init__(cfg, latent_size)
        w0, w1, w2 = cfg.widths
        cond_dim = self.cond_dim

        def block(cin, cout, resolution, attention=None):
            attn = resolution in cfg.attention_resolutions if attention is None else attention
            axes = AxisShift(cfg.emb_dim, cout, resolution) if cfg.conditioning == "axes" else None
            return Block(cin, cout, cond_dim, cfg.groups, cfg.heads, attn, axes)

        n = image_size
        self.stem = nn.Conv2d(1, w0, 3, padding=1)
        self.down1 = block(w0, w0, n)
        self.downsample1 = nn.Conv2d(w0, w0, 3, stride=2, padding=1)
        self.down2 = block(w0, w1, n // 2)
        self.downsample2 = nn.Conv2d(w1, w1, 3, stride=2, padding=1)
        self.down3 = block(w1, w2, n // 4)
        self.mid = block(w2, w2, n // 4, attention=True)
        self.skips = cfg.skips
        k = 2 if cfg.skips else 1  # with skips, each up block also reads the encoder features of its level
        self.up1 = block(k * w2, w1, n // 4)
        self.upsample1 = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(w1, w1, 3, padding=1))
        self.up2 = block(k * w1, w0, n // 2)
        self.upsample2 = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(w0, w0, 3, padding=1))
        self.up3 = block(k * w0, w0, n)
        self.head = nn.Sequential(nn.GroupNorm(min(cfg.groups, w0), w0), nn.SiLU(), nn.Conv2d(w0, 1, 3, padding=1))

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor, drop_labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Predict the noise in x_t [B, 1, N, N] at timesteps t [B] given labels [B, 2]."""
        c = self.conditioning(t, labels, drop_labels)
        h = self.stem(x.contiguous(memory_format=torch.channels_last))
        s1 = self.down1(h, c)
        s2 = self.down2(self.downsample1(s1), c)
        s3 = self.down3(self.downsample2(s2), c)
        h = self.mid(s3, c)
        h = self.upsample1(self.up1(self._with_skip(h, s3), c))
        h = self.upsample2(self.up2(self._with_skip(h, s2), c))
        h = self.up3(self._with_skip(h, s1), c)
        return self.head(h)

    def _with_skip(self, h: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return torch.cat([h, skip], 1) if self.skips else h


def _resolve_points(blocks: dict[str, nn.Module], names, aliases: dict | None, relative: dict | None) -> dict[str, str]:
    """{requested name: hook point} for `names` (hook points or their aliases); ConfigError naming the
    allowed points for one the network lacks."""
    hooks = {name: (aliases or {}).get(name, name) for name in names}
    missing = sorted({h for h in hooks.values() if h not in blocks and h not in (relative or {})})
    if missing:
        raise ConfigError(f"layer: this network has no hook point {', '.join(missing)}; allowed: "
                          f"{', '.join([*blocks, *(relative or {}), *(aliases or {})])}")
    return hooks


def _module_point(hook: str, relative: dict) -> str:
    """The hook point whose module computes `hook`: itself, or for a relative point the point it is
    the difference of."""
    return relative[hook][0] if hook in relative else hook


def _first(out):
    return out[0] if isinstance(out, tuple) else out


def _record_bases(blocks: dict[str, nn.Module], hooks: dict[str, str], relative: dict, bases: dict) -> list:
    """Forward hooks that keep, in `bases`, the output of every base point of the relative points in
    `hooks` (registered after any edit of the same module, so that they keep the edited output)."""
    needed = {relative[h][1] for h in hooks.values() if h in relative}
    return [blocks[base].register_forward_hook(lambda _m, _i, out, base=base: bases.__setitem__(base, _first(out)))
            for base in needed]


@contextlib.contextmanager
def capture_outputs(blocks: dict[str, nn.Module], names, stop_early: bool = False, aliases: dict | None = None,
                    relative: dict | None = None):
    """`ConditionedNet.capture` for any network: `blocks` maps hook points (in forward order) to the
    modules whose outputs they are, `aliases` other names to hook points, `relative` further points to
    (point, base): recorded as the point's output minus the base's. A block returning a tuple is
    recorded by its first element."""
    relative = relative or {}
    hooks = _resolve_points(blocks, names, aliases, relative)
    module_of = {h: _module_point(h, relative) for h in hooks.values()}
    order = list(blocks)
    last = max(module_of.values(), key=order.index, default=None)
    acts: dict[str, torch.Tensor] = {}
    bases: dict[str, torch.Tensor] = {}

    def record(name, out):
        hook = hooks[name]
        value = _first(out) - bases[relative[hook][1]] if hook in relative else _first(out)
        acts[name] = value.detach()
        if stop_early and module_of[hook] == last and all(n in acts for n in names):
            raise StopForward

    handles = [blocks[module_of[hook]].register_forward_hook(lambda _m, _i, out, name=name: record(name, out))
               for name, hook in hooks.items()] + _record_bases(blocks, hooks, relative, bases)
    try:
        yield acts
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def intervene_outputs(blocks: dict[str, nn.Module], edits: dict, aliases: dict | None = None,
                      relative: dict | None = None):
    """`ConditionedNet.intervene` for any network: `blocks` maps hook points to modules; `edits` maps
    hook points (or their `aliases`) to functions of the point's output tensor that return the tensor
    to use instead (or None: keep it). A block returning a tuple is edited in its first element. An
    edit of a `relative` point (point, base) gets the point's output minus the base's, and what it
    returns replaces that difference: the point's output becomes output + (new - difference), which
    is the output itself, bit for bit, where new equals the difference."""
    relative = relative or {}
    hooks = _resolve_points(blocks, edits, aliases, relative)
    bases: dict[str, torch.Tensor] = {}

    def edit(name, out):
        hook, first = hooks[name], _first(out)
        read = first - bases[relative[hook][1]] if hook in relative else first
        new = edits[name](read)
        if new is None:
            return None
        if new.shape != read.shape:
            raise ValueError(f"an edit of {name} returned shape {tuple(new.shape)}, the output is {tuple(read.shape)}")
        if hook in relative:
            new = first + (new - read)
        return (new, *out[1:]) if isinstance(out, tuple) else new

    handles = [blocks[_module_point(hook, relative)].register_forward_hook(
                   lambda _m, _i, out, name=name: edit(name, out)) for name, hook in hooks.items()]
    handles += _record_bases(blocks, hooks, relative, bases)
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


class PatchEmbed(nn.Module):
    """[B, 1, N, N] -> [B, T, W] tokens: non-overlapping p x p patches, linearly embedded, plus a
    position embedding (`model.dit_position`): DiT's fixed 2D sin-cos one (`sincos_positions`), or a
    learned one from N(0, 0.02). The DiT's hook point `embed`.

    The learned one starts at a few percent of a noisy patch's embedding; with it the DiT never
    placed the bump at its condition, with the fixed one it did (docs/tuning.md)."""

    def __init__(self, image_size: int, patch: int, width: int, position: str = "sincos"):
        super().__init__()
        self.proj = nn.Conv2d(1, width, patch, stride=patch)
        side = image_size // patch
        if position == "learned":
            self.position = nn.Parameter(torch.randn(1, side * side, width) * 0.02)
        else:
            self.register_buffer("position", sincos_positions(side, width), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2) + self.position


def sincos_positions(side: int, width: int) -> torch.Tensor:
    """[1, side * side, width], tokens in rows of patches: sin and cos of the patch's column at width / 4
    frequencies from 1 down to 1 / 10,000, then the same of its row (Peebles and Xie's DiT, after MAE).
    Their products with functions of the condition (adaLN's scale) sum to cos(w column - phi(x)) and
    the like: terms that peak at the patches where the condition puts the bump."""
    quarter = width // 4
    freqs = 1.0 / 10_000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    rows, cols = torch.meshgrid(torch.arange(side, dtype=torch.float64), torch.arange(side, dtype=torch.float64),
                                indexing="ij")
    parts = [f(c.reshape(-1, 1) * freqs) for c in (cols, rows) for f in (torch.sin, torch.cos)]
    return torch.cat(parts, dim=1).float()[None]


class DiTBlock(nn.Module):
    """Self-attention and an MLP over the tokens, each after a layer norm whose scale and shift come
    from the conditioning vector and gated by it (adaLN-Zero, as in Peebles and Xie's DiT: the gates
    start at zero, so that every block starts as the identity). One hook point."""

    def __init__(self, width: int, heads: int, cond_dim: int, axes: AxisShift | None = None):
        super().__init__()
        self.axes = axes  # model.conditioning = axes: added to the attention's input, over the patch grid
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.attention = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(approximate="tanh"), nn.Linear(4 * width, width))
        self.modulation = nn.Linear(cond_dim, 6 * width)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(F.silu(cond))[:, None].chunk(6, dim=2)
        a = self.norm1(h) * (1 + scale1) + shift1
        if self.axes is not None:
            a = a + self.axes(cond).flatten(2).transpose(1, 2)  # the tokens' order: rows of patches
        h = h + gate1 * self.attention(a, a, a, need_weights=False)[0]
        return h + gate2 * self.mlp(self.norm2(h) * (1 + scale2) + shift2)


class FinalLayer(nn.Module):
    """Conditioned layer norm and a linear map of each token to its patch's p x p predicted noise
    (zero at initialization, as in DiT). The DiT's hook point `final`."""

    def __init__(self, width: int, patch: int, cond_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.modulation = nn.Linear(cond_dim, 2 * width)
        self.out = nn.Linear(width, patch * patch)
        for layer in (self.modulation, self.out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        shift, scale = self.modulation(F.silu(cond))[:, None].chunk(2, dim=2)
        return self.out(self.norm(h) * (1 + scale) + shift)


class DiT(ConditionedNet):
    """A small diffusion transformer on the UNet's conditioning: patch embedding, `dit_depth` blocks
    with adaptive layer norm on the (t, x, y) vector, and the tokens mapped back to the image.

    Hook points, in forward order: embed (the patch tokens, [B, T, W]), then per block i its output
    tokens block{i} and written{i} = block{i} - embed, what blocks 1..i have added to the residual
    stream (`config.dit_relative_points`), then final (per-token patch predictions). The papers'
    layer4 sits in the UNet's encoder, halfway between the input and the output in depth; its
    counterpart here is what the blocks up to half depth have written (`config.layer_aliases`:
    layer4 = written{N/2}, bottleneck = written{N/2 + 1})."""

    def __init__(self, cfg: ModelConfig, image_size: int, latent_size: float):
        super().__init__(cfg, latent_size)
        self.HOOKS, self.RELATIVE = hook_points(cfg), dit_relative_points(cfg.dit_depth)
        self.block_names = [f"block{i}" for i in range(1, cfg.dit_depth + 1)]
        self.patch, self.image_size = cfg.patch_size, image_size
        self.embed = PatchEmbed(image_size, cfg.patch_size, cfg.dit_width, cfg.dit_position)
        side = image_size // cfg.patch_size
        for i in range(1, cfg.dit_depth + 1):
            axes = AxisShift(cfg.emb_dim, cfg.dit_width, side) if cfg.conditioning == "axes" else None
            setattr(self, f"block{i}", DiTBlock(cfg.dit_width, cfg.dit_heads, self.cond_dim, axes))
        self.final = FinalLayer(cfg.dit_width, cfg.patch_size, self.cond_dim)

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor, drop_labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Predict the noise in x_t [B, 1, N, N] at timesteps t [B] given labels [B, 2]."""
        c = self.conditioning(t, labels, drop_labels)
        h = self.embed(x)
        for name in self.block_names:
            h = getattr(self, name)(h, c)
        patches = self.final(h, c)  # [B, T, p * p]
        b, side, p = len(x), self.image_size // self.patch, self.patch
        return patches.reshape(b, side, side, p, p).permute(0, 1, 3, 2, 4).reshape(b, 1, side * p, side * p)


def build_model(cfg) -> ConditionedNet:
    """The network of a full `Config` (model.arch): the UNet in channels-last layout (about 20% faster
    convolutions on the CPU), or the DiT."""
    if cfg.model.arch == "dit":
        return DiT(cfg.model, cfg.data.image_size, cfg.data.latent_size)
    return UNet(cfg.model, cfg.data.image_size, cfg.data.latent_size).to(memory_format=torch.channels_last)
