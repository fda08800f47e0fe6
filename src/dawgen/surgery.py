"""Gradient surgery (the paper's Algorithm 2): drop the part of the synthetic-data gradient that
conflicts with the real-data gradient, then combine the two.

Only the synthetic gradient is ever changed: if ``d_syn . d_real < 0``, its projection on
``d_real`` is removed, so the update never works against the real data to first order.

A gradient is one tensor (a soft prompt) or a sequence of tensors (every trainable tensor of a
prefix or LoRA adapter): the conflict test and the projection act on the concatenation of all of
them, flattened, and the results come back as the same tensors with the same shapes and dtypes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

Gradient = torch.Tensor | Sequence[torch.Tensor]


@dataclass(frozen=True)
class Surgery:
    """The combined update direction of one step and what happened to get it."""

    direction: Gradient  # d_real + eps * d_syn' (shaped as the inputs: a tensor, or a list of them)
    conflict: bool  # d_syn . d_real < 0
    cosine: float  # cosine between the original gradients (0 if either is zero)


def _parts(grad: Gradient) -> list[torch.Tensor]:
    return [grad] if isinstance(grad, torch.Tensor) else list(grad)


def flatten(grad: Gradient) -> torch.Tensor:
    """All tensors of ``grad`` as one float64 vector (in order)."""
    return torch.cat([part.reshape(-1).double() for part in _parts(grad)])


def unflatten(vector: torch.Tensor, like: Gradient) -> Gradient:
    """``vector`` cut back into tensors shaped (and typed) as those of ``like``."""
    parts = _parts(like)
    pieces = torch.split(vector, [part.numel() for part in parts])
    out = [piece.to(part.dtype).reshape(part.shape) for piece, part in zip(pieces, parts, strict=True)]
    return out[0] if isinstance(like, torch.Tensor) else out


def project_conflicting(d_syn: Gradient, d_real: Gradient) -> tuple[Gradient, bool, float]:
    """``d_syn`` with its component along ``d_real`` removed when the two conflict.

    Returns the (possibly) projected synthetic gradient, whether they conflicted, and their
    cosine. Dot products are taken in float64 over the flattened (concatenated) tensors; zero
    gradients give a cosine of 0 and are never projected (nothing to project on), so no NaN can appear.
    """
    if len(_parts(d_syn)) != len(_parts(d_real)):
        raise ValueError(f"gradients of {len(_parts(d_syn))} and {len(_parts(d_real))} tensors cannot be compared")
    syn, real = flatten(d_syn), flatten(d_real)
    dot = torch.dot(syn, real)
    real_sq = torch.dot(real, real)
    norms = syn.norm() * real.norm()
    cosine = float(dot / norms) if norms > 0 else 0.0
    conflict = bool(dot < 0) and bool(real_sq > 0)
    if not conflict:
        return d_syn, False, cosine
    projected = syn - (dot / real_sq) * real
    return unflatten(projected, d_syn), True, cosine


def combine(d_real: Gradient, d_syn: Gradient, eps: float = 1.0, surgery: bool = True) -> Surgery:
    """``d_real + eps * d_syn``, with ``d_syn`` projected first when ``surgery`` is on."""
    projected, conflict, cosine = project_conflicting(d_syn, d_real)
    if surgery:
        d_syn = projected
    if isinstance(d_real, torch.Tensor):
        return Surgery(d_real + eps * d_syn, conflict, cosine)
    direction = [real + eps * syn for real, syn in zip(d_real, _parts(d_syn), strict=True)]
    return Surgery(direction, conflict, cosine)
