"""Property tests of gradient surgery: the invariants of the projection."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dawgen.surgery import combine, project_conflicting

finite = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False, width=32)


def vectors(n: int = 12):
    return st.lists(finite, min_size=n, max_size=n).map(lambda xs: torch.tensor(xs, dtype=torch.float32))


def dot64(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.dot(a.reshape(-1).double(), b.reshape(-1).double()))


@settings(max_examples=300, deadline=None)
@given(vectors(), vectors())
def test_projected_synthetic_gradient_never_conflicts(d_syn, d_real):
    projected, conflict, _ = project_conflicting(d_syn, d_real)
    scale = float(d_syn.norm() * d_real.norm()) + 1e-12
    assert dot64(projected, d_real) >= -1e-5 * scale
    assert conflict == (dot64(d_syn, d_real) < 0 and float(d_real.norm()) > 0)


@settings(max_examples=300, deadline=None)
@given(vectors(), vectors())
def test_non_conflicting_gradients_pass_unchanged(d_syn, d_real):
    if dot64(d_syn, d_real) >= 0:
        projected, conflict, _ = project_conflicting(d_syn, d_real)
        assert not conflict and torch.equal(projected, d_syn)


@settings(max_examples=300, deadline=None)
@given(vectors(), vectors(), st.floats(min_value=0.0, max_value=10.0))
def test_real_gradient_is_never_modified(d_syn, d_real, eps):
    real_before, syn_before = d_real.clone(), d_syn.clone()
    result = combine(d_real, d_syn, eps)
    assert torch.equal(d_real, real_before) and torch.equal(d_syn, syn_before)  # inputs untouched
    projected, _, _ = project_conflicting(d_syn, d_real)
    torch.testing.assert_close(result.direction, d_real + eps * projected)


@settings(max_examples=200, deadline=None)
@given(vectors(), st.floats(min_value=-100, max_value=100, allow_nan=False))
def test_zero_and_parallel_gradients_give_no_nan(d_real, factor):
    zero = torch.zeros_like(d_real)
    for d_syn, real in ((zero, d_real), (d_real, zero), (zero, zero), (factor * d_real, d_real)):
        result = combine(real, d_syn)
        assert torch.isfinite(result.direction).all() and math.isfinite(result.cosine)
    if factor < -1e-3 and float(d_real.norm()) > 1e-3:  # anti-parallel: the synthetic part vanishes
        projected, conflict, cosine = project_conflicting(factor * d_real, d_real)
        assert conflict and cosine < -0.999
        assert float(projected.norm()) <= 1e-4 * abs(factor) * float(d_real.norm()) + 1e-6


def test_projection_removes_exactly_the_conflicting_component():
    d_real = torch.tensor([1.0, 0.0])
    projected, conflict, cosine = project_conflicting(torch.tensor([-1.0, 1.0]), d_real)
    assert conflict and torch.allclose(projected, torch.tensor([0.0, 1.0]))
    assert abs(cosine + 1 / math.sqrt(2)) < 1e-6
    assert torch.equal(combine(d_real, torch.tensor([-1.0, 1.0]), surgery=False).direction, torch.tensor([0.0, 1.0]))
    assert torch.allclose(combine(d_real, torch.tensor([-1.0, 1.0]), eps=0.5).direction, torch.tensor([1.0, 0.5]))


def test_works_on_prompt_shaped_tensors():
    d_real, d_syn = torch.randn(20, 8), torch.randn(20, 8)
    projected, _, _ = project_conflicting(d_syn, d_real)
    assert projected.shape == (20, 8) and dot64(projected, d_real) >= -1e-4


# -- a trainable set of several tensors (prefix or LoRA matrices): the projection acts on their concatenation
SHAPES = [(3, 2), (4,), (1, 2, 2)]
SIZES = [math.prod(shape) for shape in SHAPES]


def cut(flat: torch.Tensor) -> list[torch.Tensor]:
    return [part.reshape(shape) for part, shape in zip(flat.split(SIZES), SHAPES, strict=True)]


def tensor_sets():
    return vectors(sum(SIZES)).map(cut)


def concat(parts) -> torch.Tensor:
    return torch.cat([part.reshape(-1) for part in parts])


@settings(max_examples=300, deadline=None)
@given(tensor_sets(), tensor_sets())
def test_multi_tensor_projection_is_orthogonal_on_the_concatenation(d_syn, d_real):
    projected, conflict, cosine = project_conflicting(d_syn, d_real)
    assert isinstance(projected, list) and [p.shape for p in projected] == [torch.Size(s) for s in SHAPES]
    flat_projected, flat_real = concat(projected), concat(d_real)
    single, single_conflict, single_cosine = project_conflicting(concat(d_syn), flat_real)
    assert conflict == single_conflict and cosine == single_cosine  # the same as one flattened tensor
    torch.testing.assert_close(flat_projected, single)
    scale = float(concat(d_syn).norm() * flat_real.norm()) + 1e-12
    if conflict:  # orthogonal to the real gradient (up to float32 rounding)
        assert abs(dot64(flat_projected, flat_real)) <= 1e-5 * scale
    else:
        assert all(torch.equal(p, s) for p, s in zip(projected, d_syn, strict=True))
    assert dot64(flat_projected, flat_real) >= -1e-5 * scale


@settings(max_examples=200, deadline=None)
@given(tensor_sets(), tensor_sets(), st.floats(min_value=0.0, max_value=10.0), st.booleans())
def test_multi_tensor_combine_keeps_shapes_and_leaves_the_real_gradient(d_real, d_syn, eps, surgery):
    before = [t.clone() for t in (*d_real, *d_syn)]
    result = combine(d_real, d_syn, eps, surgery)
    assert all(torch.equal(a, b) for a, b in zip(before, (*d_real, *d_syn), strict=True))
    assert [d.shape for d in result.direction] == [torch.Size(s) for s in SHAPES]
    used = project_conflicting(d_syn, d_real)[0] if surgery else d_syn
    for direction, real, syn in zip(result.direction, d_real, used, strict=True):
        torch.testing.assert_close(direction, real + eps * syn)


def test_a_conflict_can_hide_in_one_tensor_of_the_set():
    """Per-tensor tests could miss it: the first tensors agree, the last disagrees more strongly."""
    d_real = [torch.tensor([1.0, 0.0]), torch.tensor([1.0])]
    d_syn = [torch.tensor([0.5, 1.0]), torch.tensor([-3.0])]
    projected, conflict, _ = project_conflicting(d_syn, d_real)
    assert conflict and abs(dot64(concat(projected), concat(d_real))) < 1e-6
    assert [p.shape for p in projected] == [(2,), (1,)]
    with pytest.raises(ValueError, match="cannot be compared"):
        project_conflicting(d_syn, d_real[:1])
