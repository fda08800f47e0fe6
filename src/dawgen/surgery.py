"""Gradient surgery (the paper's Algorithm 2): drop the part of the synthetic-data gradient that
conflicts with the real-data gradient, then combine the two.

Only the synthetic gradient is ever changed: if ``d_syn . d_real < 0``, its projection on
``d_real`` is removed, so the update never works against the real data to first order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Surgery:
    """The combined update direction of one step and what happened to get it."""

    direction: torch.Tensor  # d_real + eps * d_syn' (same shape as the inputs)
    conflict: bool  # d_syn . d_real < 0
    cosine: float  # cosine between the original gradients (0 if either is zero)


def project_conflicting(d_syn: torch.Tensor, d_real: torch.Tensor) -> tuple[torch.Tensor, bool, float]:
    """``d_syn`` with its component along ``d_real`` removed when the two conflict.

    Returns the (possibly) projected synthetic gradient, whether they conflicted, and their
    cosine. Dot products are taken in float64 over the flattened tensors; zero gradients give a
    cosine of 0 and are never projected (nothing to project on), so no NaN can appear.
    """
    syn, real = d_syn.reshape(-1).double(), d_real.reshape(-1).double()
    dot = torch.dot(syn, real)
    real_sq = torch.dot(real, real)
    norms = syn.norm() * real.norm()
    cosine = float(dot / norms) if norms > 0 else 0.0
    conflict = bool(dot < 0) and bool(real_sq > 0)
    if not conflict:
        return d_syn, False, cosine
    projected = syn - (dot / real_sq) * real
    return projected.to(d_syn.dtype).reshape(d_syn.shape), True, cosine


def combine(d_real: torch.Tensor, d_syn: torch.Tensor, eps: float = 1.0, surgery: bool = True) -> Surgery:
    """``d_real + eps * d_syn``, with ``d_syn`` projected first when ``surgery`` is on."""
    if surgery:
        d_syn, conflict, cosine = project_conflicting(d_syn, d_real)
    else:
        _, conflict, cosine = project_conflicting(d_syn, d_real)
    return Surgery(d_real + eps * d_syn, conflict, cosine)
