"""Opt-in speed modes for the local pipeline: do less work per denoising step.

Two modes, both applied by wrapping the UNet's ``forward`` for one pipeline call
(``applied``) and putting it back afterwards, so the cached pipeline is never changed
and diffusers' own ``StableVideoDiffusionPipeline.__call__`` runs as it is:

``cache_interval`` (1 = off; 2-5), DeepCache-style feature caching.
    SVD's UNet is a U: ``conv_in`` -> down blocks -> mid block -> up blocks -> ``conv_out``,
    with skip connections from each down block to the up block of the same size. Between
    neighbouring steps the deep, low-resolution features change little. So every
    ``cache_interval`` steps the UNet runs in full and a forward hook keeps the output of
    the second-to-last up block (the deep features, at full latent resolution, that
    ``up_blocks[-1]`` takes as input). On the steps in between only the shallow
    edge of the U runs: time embedding, ``conv_in``, ``down_blocks[0]`` (for its skip
    features), then ``up_blocks[-1]`` on the cached deep features, ``conv_norm_out``,
    ``conv_act`` and ``conv_out``. Everything deeper (down blocks 1+, mid, up blocks
    0..-2, which hold most of the work) is skipped. The maintained DeepCache package was
    not used: its helper wraps SD's ``UNet2DConditionModel`` blocks, and its SVD support
    is a copy of an old diffusers pipeline and UNet.

``guidance_stop`` (1 = off; 0-1), classifier-free guidance on the first steps only.
    With guidance the pipeline runs the UNet on ``[uncond, cond]`` (batch 2) and mixes
    ``uncond + scale * (cond - uncond)``. After ``round(guidance_stop * steps)`` steps the
    wrapper runs the conditional half only and returns ``cat([cond, cond])``, so the
    pipeline's own formula gives exactly ``cond``: half the UNet work on those steps.

The step a call belongs to is the scheduler's ``step_index`` (the Euler scheduler SVD
uses sets it before the UNet call), else the number of calls so far in this run.

``recording()`` lets tests and benchmarks see each UNet call (step, kind, rows) without
patching anything.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator

_observers: list[list["Call"]] = []


@dataclass(frozen=True)
class Call:
    """One UNet call in a run: its step, "full" or "shallow", and rows (videos x frames)."""

    step: int
    kind: str
    rows: int


@contextlib.contextmanager
def recording() -> Iterator[list[Call]]:
    """Collect every UNet call made through ``applied`` while the block runs."""
    calls: list[Call] = []
    _observers.append(calls)
    try:
        yield calls
    finally:
        _observers.remove(calls)


def guided_steps(guidance_stop: float, steps: int) -> int:
    """How many of the first steps keep guidance (rounded half up)."""
    return min(steps, int(guidance_stop * steps + 0.5))


def is_compiled(unet: Any) -> bool:
    return hasattr(unet, "_orig_mod")  # torch.compile's OptimizedModule


@contextlib.contextmanager
def applied(pipe: Any, cache_interval: int | None, guidance_stop: float | None, steps: int) -> Iterator[None]:
    """Run the block with ``pipe.unet`` doing only the work these modes ask for.

    Both at their defaults (None or 1): nothing is touched. Otherwise the UNet's
    ``forward`` is replaced on the instance (composing with accelerate's offload hooks,
    which wrap ``forward`` the same way) and restored when the block ends, also on errors.
    """
    interval = cache_interval or 1
    stop = 1.0 if guidance_stop is None else guidance_stop
    if interval == 1 and stop >= 1.0 and not _observers:
        yield
        return
    unet = pipe.unet
    if interval > 1 and is_compiled(unet):
        raise ValueError("feature caching needs the uncompiled UNet")  # preflight refuses this first
    speed = _Speedups(pipe, unet.forward, interval, guided_steps(stop, steps))
    had_own = "forward" in vars(unet)
    unet.forward = speed
    try:
        yield
    finally:
        speed.close()
        if had_own:
            unet.forward = speed.inner
        else:
            del unet.forward


class _Speedups:
    """The UNet's ``forward`` for one run: guidance on the first steps, then the cache."""

    def __init__(self, pipe: Any, inner: Callable, interval: int, guided: int) -> None:
        self.pipe, self.inner, self.interval, self.guided = pipe, inner, interval, guided
        self.calls = 0
        self.cache = _DeepFeatures(pipe.unet) if interval > 1 else None

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()

    def _step(self) -> int:
        index = getattr(self.pipe.scheduler, "step_index", None)
        return index if isinstance(index, int) else self.calls

    def __call__(self, sample: Any, timestep: Any, encoder_hidden_states: Any, added_time_ids: Any,
                 return_dict: bool = True) -> Any:
        import torch

        step = self._step()
        self.calls += 1
        args = (sample, timestep, encoder_hidden_states, added_time_ids)
        halve = step >= self.guided and self.pipe.do_classifier_free_guidance and sample.shape[0] % 2 == 0
        if halve:  # [uncond, cond] -> cond: the pipeline's mix of (cond, cond) is cond itself
            args = (sample.chunk(2)[1], timestep, encoder_hidden_states.chunk(2)[1], added_time_ids.chunk(2)[1])
        out = self._unet(step, *args)
        if halve:
            out = torch.cat([out, out])
        return (out,) if not return_dict else _output(out)

    def _unet(self, step: int, sample: Any, timestep: Any, hidden: Any, time_ids: Any) -> Any:
        rows = sample.shape[0] * sample.shape[1]
        full = self.cache is None or step % self.interval == 0 or not self.cache.fits(sample)
        for calls in _observers:
            calls.append(Call(step, "full" if full else "shallow", rows))
        if full:
            if self.cache is not None:
                self.cache.keep = True
            return self.inner(sample, timestep, encoder_hidden_states=hidden, added_time_ids=time_ids,
                              return_dict=False)[0]
        return self.cache.shallow(sample, timestep, hidden, time_ids)


def _output(sample: Any) -> Any:
    from diffusers.models.unets.unet_spatio_temporal_condition import UNetSpatioTemporalConditionOutput

    return UNetSpatioTemporalConditionOutput(sample=sample)


class _DeepFeatures:
    """Keeps the input of the last up block from full steps; runs the shallow U on the others."""

    def __init__(self, unet: Any) -> None:
        if len(unet.up_blocks) < 2:
            raise ValueError("feature caching needs a UNet with at least two up blocks")
        self.unet = unet
        self.features: Any = None
        self.keep = False
        self._hook = unet.up_blocks[-2].register_forward_hook(self._store)

    def _store(self, module: Any, args: Any, output: Any) -> None:
        if self.keep:
            self.features, self.keep = output, False

    def close(self) -> None:
        self._hook.remove()
        self.features = None

    def fits(self, sample: Any) -> bool:
        """Cached features exist for this many rows (or for twice as many: the guided batch)."""
        if self.features is None:
            return False
        rows = sample.shape[0] * sample.shape[1]
        return self.features.shape[0] in (rows, 2 * rows)

    def shallow(self, sample: Any, timestep: Any, hidden: Any, time_ids: Any) -> Any:
        """diffusers' ``UNetSpatioTemporalConditionModel.forward`` cut to its outer edge.

        Steps 1-2 (embeddings, flattening batch x frames) and 6-7 (post-process, reshape)
        are diffusers' own; between them only ``down_blocks[0]`` and ``up_blocks[-1]`` run.
        """
        import torch

        u = self.unet
        batch, frames = sample.shape[:2]
        timesteps = timestep if torch.is_tensor(timestep) else torch.tensor([timestep], device=sample.device)
        timesteps = timesteps.reshape(-1)[:1].to(sample.device).expand(batch)
        emb = u.time_embedding(u.time_proj(timesteps).to(dtype=sample.dtype))
        time_embeds = u.add_time_proj(time_ids.flatten()).reshape((batch, -1)).to(emb.dtype)
        emb = emb + u.add_embedding(time_embeds)
        emb = emb.repeat_interleave(frames, dim=0)
        hidden = hidden.repeat_interleave(frames, dim=0)
        indicator = torch.zeros(batch, frames, dtype=sample.dtype, device=sample.device)

        x = u.conv_in(sample.flatten(0, 1))
        first = u.down_blocks[0]
        skips: tuple = (x,)
        kwargs: dict[str, Any] = {"temb": emb, "image_only_indicator": indicator}
        cross = {"encoder_hidden_states": hidden} if getattr(first, "has_cross_attention", False) else {}
        _, res = first(hidden_states=x, **kwargs, **cross)
        skips += res

        last = u.up_blocks[-1]
        deep = self.features
        if deep.shape[0] != x.shape[0]:  # cached from a guided step: its cond half
            deep = deep.chunk(2)[1]
        cross = {"encoder_hidden_states": hidden} if getattr(last, "has_cross_attention", False) else {}
        x = last(hidden_states=deep, res_hidden_states_tuple=skips[: len(last.resnets)], **kwargs, **cross)
        x = u.conv_out(u.conv_act(u.conv_norm_out(x)))
        return x.reshape(batch, frames, *x.shape[1:])
