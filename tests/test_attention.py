"""lmlib.lm.attention: equal to PyTorch's attention, masks worked by hand, gradients, clear errors, exercises."""
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from lmlib.lm.attention import (CausalSelfAttention, MultiHeadAttention, causal_mask, padded_causal_mask, padding_mask,
                                scaled_dot_product_attention)
from lmlib.exercises import ExerciseFailed, check
from lmlib.exercises import ch04

torch.set_num_threads(1)


def qkv(B=2, nh=3, T=5, S=None, hs=4, hv=None, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    S, hv = S or T, hv or hs
    return (torch.randn(B, nh, T, hs, generator=g, dtype=dtype), torch.randn(B, nh, S, hs, generator=g, dtype=dtype),
            torch.randn(B, nh, S, hv, generator=g, dtype=dtype))


# ---------------------------------------------------------------------------- the function


def test_tiny_example_worked_by_hand():
    # one query, two keys: scores q.k / sqrt(2) = [0, 2/sqrt(2)]; softmax -> [1, e^sqrt2] / (1 + e^sqrt2)
    q = torch.tensor([[1.0, 1.0]])
    k = torch.tensor([[1.0, -1.0], [1.0, 1.0]])
    v = torch.tensor([[10.0], [20.0]])
    out, w = scaled_dot_product_attention(q, k, v, return_weights=True)
    e = math.exp(math.sqrt(2))
    assert torch.allclose(w, torch.tensor([[1 / (1 + e), e / (1 + e)]]))
    assert torch.allclose(out, torch.tensor([[(10 + 20 * e) / (1 + e)]]))


@pytest.mark.parametrize("T,S", [(5, 5), (1, 1), (3, 7), (6, 2)])
@pytest.mark.parametrize("causal", [False, True])
def test_equals_pytorch_sdpa(T, S, causal):
    q, k, v = qkv(T=T, S=S, hv=6)
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    got = scaled_dot_product_attention(q, k, v, is_causal=causal)
    assert got.shape == (2, 3, T, 6)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_equals_pytorch_with_bool_and_float_masks_and_an_empty_row():
    q, k, v = qkv(T=4, S=6)
    g = torch.Generator().manual_seed(1)
    bool_mask = torch.rand(2, 1, 4, 6, generator=g) > 0.4  # broadcast over heads
    bool_mask[0, 0, 2] = False  # query 2 of batch 0 may see nothing
    for mask in (bool_mask, torch.randn(4, 6, generator=g), torch.zeros(2, 3, 4, 6).masked_fill(~bool_mask, -math.inf)):
        expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        got, w = scaled_dot_product_attention(q, k, v, mask, return_weights=True)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
        assert not torch.isnan(got).any() and not torch.isnan(w).any()
    assert torch.equal(got[0, :, 2], torch.zeros(3, 4)) and torch.equal(w[0, :, 2], torch.zeros(3, 6))


def test_weights_rows_sum_to_one_and_causal_weights_are_lower_triangular():
    q, k, v = qkv(T=6)
    _, w = scaled_dot_product_attention(q, k, v, is_causal=True, return_weights=True)
    assert w.shape == (2, 3, 6, 6)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 3, 6))
    assert torch.equal(w.triu(diagonal=1), torch.zeros_like(w))
    assert torch.equal(w[..., 0, 0], torch.ones(2, 3))  # the first token sees only itself


def test_causal_and_a_padding_mask_combine():
    q, k, v = qkv(B=2, T=4)
    pad = padding_mask([4, 2])  # second sequence: 2 real tokens, 2 padding
    combined = pad & causal_mask(4)
    got = scaled_dot_product_attention(q, k, v, pad, is_causal=True)
    torch.testing.assert_close(got, F.scaled_dot_product_attention(q, k, v, attn_mask=combined))


def test_causal_property_future_keys_do_not_change_the_past():
    q, k, v = qkv(T=6)
    k2, v2 = k.clone(), v.clone()
    k2[..., 4:, :] += 5.0
    v2[..., 4:, :] -= 3.0
    a = scaled_dot_product_attention(q, k, v, is_causal=True)
    b = scaled_dot_product_attention(q, k2, v2, is_causal=True)
    assert torch.equal(a[..., :4, :], b[..., :4, :])
    assert not torch.allclose(a[..., 4:, :], b[..., 4:, :])


def test_dropout_zeroes_weights_but_returns_the_undropped_ones():
    q, k, v = qkv(T=8, hs=4)
    torch.manual_seed(0)
    out, w = scaled_dot_product_attention(q, k, v, dropout_p=0.5, return_weights=True)
    plain, w_plain = scaled_dot_product_attention(q, k, v, return_weights=True)
    assert torch.equal(w, w_plain) and not torch.allclose(out, plain)
    torch.manual_seed(0)
    again = scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    assert torch.equal(out, again)  # seeded: reproducible
    # unbiased: averaged over many draws, dropout gives the plain output
    torch.manual_seed(1)
    mean = torch.stack([scaled_dot_product_attention(q, k, v, dropout_p=0.5) for _ in range(400)]).mean(0)
    assert (mean - plain).abs().mean() < 0.1 * plain.abs().mean()


def test_gradcheck_in_float64():
    q, k, v = (t.requires_grad_() for t in qkv(B=1, nh=2, T=3, S=3, hs=2, dtype=torch.float64))
    bias = torch.randn(3, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a, b, c: scaled_dot_product_attention(a, b, c, is_causal=True), (q, k, v))
    assert torch.autograd.gradcheck(lambda a, b, c: scaled_dot_product_attention(a, b, c, bias), (q, k, v))
    mask = torch.tensor([[True, False, True], [False, False, False], [True, True, True]])  # one empty row
    assert torch.autograd.gradcheck(lambda a, b, c: scaled_dot_product_attention(a, b, c, mask), (q, k, v))


@settings(max_examples=25, deadline=None)
@given(B=st.integers(1, 3), nh=st.integers(1, 3), T=st.integers(1, 6), S=st.integers(1, 6), hs=st.integers(1, 8),
       causal=st.booleans(), seed=st.integers(0, 1000))
def test_random_shapes_match_pytorch(B, nh, T, S, hs, causal, seed):
    q, k, v = qkv(B, nh, T, S, hs, seed=seed)
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v, is_causal=causal),
                               F.scaled_dot_product_attention(q, k, v, is_causal=causal), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------- masks


def test_masks_worked_by_hand():
    assert causal_mask(3).tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    assert causal_mask(2, 4).tolist() == [[True, False, False, False], [True, True, False, False]]
    # offset = S - T: the 2 queries are the last 2 of 4 positions (decoding with a cache)
    assert causal_mask(2, 4, offset=2).tolist() == [[True, True, True, False], [True, True, True, True]]
    pm = padding_mask(torch.tensor([3, 1]), S=4)
    assert pm.shape == (2, 1, 1, 4)
    assert pm[:, 0, 0].tolist() == [[True, True, True, False], [True, False, False, False]]
    assert padding_mask([2, 1]).shape == (2, 1, 1, 2)


def test_padded_causal_mask_worked_by_hand():
    m = padded_causal_mask(torch.tensor([[False, True, True], [True, True, False]]))
    assert m.shape == (2, 1, 3, 3)
    assert m[0, 0].int().tolist() == [[1, 0, 0],  # a padding query sees only itself: no empty softmax row
                                      [0, 1, 0],  # real queries never see the padding key 0
                                      [0, 1, 1]]
    assert m[1, 0].int().tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 1]]  # right padding: the causal mask + diagonal
    with pytest.raises(ValueError, match=r"attention_mask must be \(B, T\)"):
        padded_causal_mask(torch.ones(3, dtype=torch.bool))


@pytest.mark.parametrize("pos", ["none", "alibi", "rope"])
def test_causal_self_attention_with_a_padding_mask_fused_equals_manual(pos):
    torch.manual_seed(0)
    attn = CausalSelfAttention(8, 2, pos_encoding=pos).eval()
    x = torch.randn(2, 5, 8)
    mask = torch.tensor([[False, False, True, True, True], [True] * 5])
    positions = (mask.long().cumsum(1) - 1).clamp(min=0)
    fused, _ = attn(x, attention_mask=mask, positions=positions)
    attn.impl = "manual"
    manual, w = attn(x, need_weights=True, attention_mask=mask, positions=positions)
    torch.testing.assert_close(fused, manual, atol=1e-5, rtol=1e-5)
    assert torch.isfinite(fused).all() and (w[0, :, 2:, :2] == 0).all()  # real queries give padding no weight
    # the real part of row 0 equals the three real tokens alone
    alone, _ = attn(x[:1, 2:])
    torch.testing.assert_close(manual[:1, 2:], alone, atol=1e-5, rtol=1e-5)


def test_mask_errors_are_clear():
    with pytest.raises(ValueError, match="int >= 0"):
        causal_mask(-1)
    with pytest.raises(ValueError, match="1-D integer"):
        padding_mask(torch.tensor([1.5, 2.0]))
    with pytest.raises(ValueError, match="length 5 > padded length S=3"):
        padding_mask([5, 1], S=3)


# ---------------------------------------------------------------------------- clear errors


def test_shape_and_mask_errors_name_the_problem():
    q, k, v = qkv(T=4, S=5, hs=4)
    with pytest.raises(ValueError, match="same head size"):
        scaled_dot_product_attention(q, k[..., :3], v)
    with pytest.raises(ValueError, match="every key needs a value"):
        scaled_dot_product_attention(q, k, v[..., :4, :])
    with pytest.raises(ValueError, match="leading"):
        scaled_dot_product_attention(q, k[:1], v[:1])
    with pytest.raises(ValueError, match=r"\(\.\.\., T, hs\)"):
        scaled_dot_product_attention(q[0, 0, 0], k, v)
    with pytest.raises(ValueError, match="does not broadcast"):
        scaled_dot_product_attention(q, k, v, mask=torch.ones(4, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="bool .* or floating point"):
        scaled_dot_product_attention(q, k, v, mask=torch.ones(4, 5, dtype=torch.long))
    with pytest.raises(TypeError, match="floating-point"):
        scaled_dot_product_attention(q.long(), k, v)
    with pytest.raises(ValueError, match="dropout_p"):
        scaled_dot_product_attention(q, k, v, dropout_p=1.0)


# ---------------------------------------------------------------------------- modules


def test_multihead_attention_equals_torch_multihead_attention():
    torch.manual_seed(0)
    C, nh, B, T, S = 12, 3, 2, 5, 7
    ref = nn.MultiheadAttention(C, nh, batch_first=True)
    ours = MultiHeadAttention.from_torch(ref)
    x, mem = torch.randn(B, T, C), torch.randn(B, S, C)
    # self-attention, causal (torch's bool attn_mask: True = NOT allowed)
    exp, exp_w = ref(x, x, x, attn_mask=~causal_mask(T))
    got, w = ours(x, mask=causal_mask(T), need_weights=True)
    torch.testing.assert_close(got, exp, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(w.mean(1), exp_w, rtol=1e-5, atol=1e-6)  # torch averages over heads
    # cross-attention with key padding (torch: True = padding)
    lengths = torch.tensor([7, 4])
    exp, _ = ref(x, mem, mem, key_padding_mask=~padding_mask(lengths)[:, 0, 0])
    got, none = ours(x, mem, mem, mask=padding_mask(lengths))
    torch.testing.assert_close(got, exp, rtol=1e-5, atol=1e-6)
    assert none is None


def test_multihead_attention_without_bias_and_errors():
    ref = nn.MultiheadAttention(8, 2, bias=False, batch_first=True)
    ours = MultiHeadAttention.from_torch(ref)
    x = torch.randn(1, 3, 8)
    torch.testing.assert_close(ours(x)[0], ref(x, x, x)[0], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(10, 3)
    with pytest.raises(ValueError, match=r"\(B, T, C=8\)"):
        ours(torch.randn(3, 8))


@pytest.mark.parametrize("pos", ["none", "rope", "alibi"])
def test_causal_self_attention_fused_and_manual_paths_agree(pos):
    torch.manual_seed(0)
    attn = CausalSelfAttention(16, 4, pos_encoding=pos)
    x = torch.randn(2, 9, 16)
    fused, none = attn(x)
    attn.impl = "manual"
    manual, _ = attn(x)
    _, w = attn(x, need_weights=True)
    torch.testing.assert_close(fused, manual, rtol=1e-5, atol=1e-6)
    assert none is None and w.shape == (2, 4, 9, 9)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 9))
    with pytest.raises(ValueError, match="divisible"):
        CausalSelfAttention(10, 4)
    with pytest.raises(ValueError, match="'fused' or 'manual'"):
        CausalSelfAttention(16, 4, impl="flash")


def test_causal_self_attention_matches_torch_with_split_weights():
    # CausalSelfAttention's c_attn packs q, k, v like nn.MultiheadAttention's in_proj: same numbers
    torch.manual_seed(0)
    ref = nn.MultiheadAttention(16, 4, batch_first=True)
    attn = CausalSelfAttention(16, 4)
    with torch.no_grad():
        attn.c_attn.weight.copy_(ref.in_proj_weight)
        attn.c_attn.bias.copy_(ref.in_proj_bias)
        attn.c_proj.weight.copy_(ref.out_proj.weight)
        attn.c_proj.bias.copy_(ref.out_proj.bias)
    x = torch.randn(3, 6, 16)
    torch.testing.assert_close(attn(x)[0], ref(x, x, x, attn_mask=~causal_mask(6))[0], rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------- exercises


def _attention_no_scale(q, k, v):
    return torch.softmax(q @ k.transpose(-2, -1), dim=-1) @ v


def _mask_upper(T):
    return torch.ones(T, T, dtype=torch.bool).triu()


def _causal_mask_float(T):
    return torch.ones(T, T).tril()


def _causal_attention_unmasked(q, k, v):
    return ch04.ref_attention(q, k, v)


def _split_heads_wrong(x, n_head):  # forgets the transpose: (B, T, nh, hs) viewed as (B, nh, T, hs)
    B, T, C = x.shape
    return x.reshape(B, n_head, T, C // n_head)


def _merge_heads_wrong(x):
    B, nh, T, hs = x.shape
    return x.reshape(B, T, nh * hs)


@pytest.mark.parametrize("name,wrong", [
    ("attention", _attention_no_scale),
    ("causal_mask", _mask_upper),
    ("causal_attention", _causal_attention_unmasked),
    ("split_heads", _split_heads_wrong),
    ("merge_heads", _merge_heads_wrong),
])
def test_each_exercise_passes_with_the_reference_and_fails_with_a_wrong_answer(name, wrong):
    assert check(f"ch04.{name}", getattr(ch04, f"ref_{name}"), quiet=True).ok
    with pytest.raises(ExerciseFailed):
        check(f"ch04.{name}", wrong, quiet=True)


def test_causal_mask_exercise_explains_a_float_mask():
    with pytest.raises(ExerciseFailed, match="must be a bool tensor"):
        check("ch04.causal_mask", _causal_mask_float, quiet=True)
