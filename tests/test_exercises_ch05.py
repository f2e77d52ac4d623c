"""Chapter 5's exercises: the chapter's own solutions pass, typical mistakes fail with a helpful message."""
from pathlib import Path

import jupytext
import pytest
import torch
import torch.nn.functional as F

from lmlib.exercises import ExerciseFailed, all_exercises, check
from lmlib.exercises import ch05
from lmlib.lm.gpt import GPT, GPTConfig
from lmlib.lm.positional import rope_angles, sinusoidal_encoding
from exercise_support import chapter_exercise_tests, failure

CHAPTER = Path(__file__).resolve().parents[1] / "chapters" / "05_transformers.md"
IDS = ["ch05.layer_norm", "ch05.count_params", "ch05.sinusoidal", "ch05.alibi_slopes", "ch05.rope"]
chapter_solutions, test_every_exercise_is_registered_and_has_a_check_cell, test_the_chapters_solution_passes = (
    chapter_exercise_tests(CHAPTER, IDS, min_checks=5))


@pytest.mark.parametrize("id", IDS)
def test_the_reference_passes(id):
    assert check(id, getattr(ch05, "ref_" + id.split(".")[1]), quiet=True).ok


# ---------------------------------------------------------------- layer_norm


def test_layer_norm_mistakes_are_named():
    def unbiased(x, w, b, eps=1e-5):  # torch.var's default divides by C - 1
        return (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, keepdim=True) + eps) * w + b

    assert "not C - 1" in failure("ch05.layer_norm", unbiased)

    def eps_outside(x, w, b, eps=1e-5):
        return (x - x.mean(-1, keepdim=True)) / (x.std(-1, keepdim=True, unbiased=False) + eps) * w + b

    assert "eps goes inside the square root" in failure("ch05.layer_norm", eps_outside)

    def no_eps(x, w, b, eps=1e-5):
        return (x - x.mean(-1, keepdim=True)) / x.std(-1, keepdim=True, unbiased=False) * w + b

    msg = failure("ch05.layer_norm", no_eps)
    assert "a constant row" in msg and "NaN: 0 / 0" in msg

    def over_batch(x, w, b, eps=1e-5):  # normalises each feature over the tokens (batch-norm style)
        flat = x.reshape(-1, x.shape[-1])
        mu, var = flat.mean(0), flat.var(0, unbiased=False)
        return ((x - mu) / torch.sqrt(var + eps)) * w + b

    assert "wrong values" in failure("ch05.layer_norm", over_batch)

    def shift_then_scale(x, w, b, eps=1e-5):
        return (F.layer_norm(x, x.shape[-1:], eps=eps) + b) * w

    assert "scale, then shift" in failure("ch05.layer_norm", shift_then_scale)
    assert "use the eps argument" in failure("ch05.layer_norm", lambda x, w, b, eps=1e-5: ch05.ref_layer_norm(x, w, b))


def test_layer_norm_reference_matches_torch_module():
    x = torch.randn(3, 4, 8)
    ln = torch.nn.LayerNorm(8)
    torch.nn.init.normal_(ln.weight)
    torch.nn.init.normal_(ln.bias)
    torch.testing.assert_close(ch05.ref_layer_norm(x, ln.weight, ln.bias), ln(x))


# ---------------------------------------------------------------- count_params


def test_count_params_mistakes_are_named():
    def untied_always(V, T, L, C, bias=True, tie_weights=True, pos_encoding="learned"):
        return ch05.ref_count_params(V, T, L, C, bias, False, pos_encoding)

    msg = failure("ch05.count_params", untied_always)
    assert "tied (the default: wte and lm_head are one matrix, counted once)" in msg and "too many by 80" in msg

    def table_always(V, T, L, C, bias=True, tie_weights=True, pos_encoding="learned"):
        return ch05.ref_count_params(V, T, L, C, bias, tie_weights, "learned")

    assert "no positions" in failure("ch05.count_params", table_always)

    def no_layernorm_bias(V, T, L, C, bias=True, tie_weights=True, pos_encoding="learned"):
        n = ch05.ref_count_params(V, T, L, C, bias, tie_weights, pos_encoding)
        return n - (2 * L + 1) * C if bias else n

    msg = failure("ch05.count_params", no_layernorm_bias)
    assert "every LayerNorm a bias of C" in msg and "too few by 24" in msg

    assert "expected an int" in failure("ch05.count_params", lambda *a, **k: str(ch05.ref_count_params(*a, **k)))
    assert check("ch05.count_params", lambda *a, **k: float(ch05.ref_count_params(*a, **k)), quiet=True).ok


@pytest.mark.parametrize("kw", [dict(), dict(bias=False), dict(tie_weights=False), dict(pos_encoding="rope"),
                                dict(pos_encoding="alibi", bias=False, tie_weights=False)])
def test_count_params_reference_matches_the_model(kw):
    cfg = GPTConfig(vocab_size=13, block_size=9, n_layer=2, n_head=2, n_embd=8, **kw)
    assert GPT(cfg).num_params() == ch05.ref_count_params(13, 9, 2, 8, **kw)


# ---------------------------------------------------------------- sinusoidal


def test_sinusoidal_mistakes_are_named():
    def swapped(T, d):
        return sinusoidal_encoding(T, d)[:, [i ^ 1 for i in range(d)]]

    msg = failure("ch05.sinusoidal", swapped)
    assert "T=1, d=2: [[0, 1]]" in msg and "sin and cos are swapped" in msg

    def halves(T, d):  # all sines, then all cosines
        pe = sinusoidal_encoding(T, d)
        return torch.cat([pe[:, 0::2], pe[:, 1::2]], dim=1)

    assert "interleave them" in failure("ch05.sinusoidal", halves)

    def exponent_i(T, d):  # 10000^(i/d) instead of 10000^(2i/d)
        t = torch.arange(T, dtype=torch.float64)[:, None]
        ang = t / 10000 ** (torch.arange(d // 2) / d)
        return torch.stack([ang.sin(), ang.cos()], -1).reshape(T, d).float()

    assert "the exponent is 2i / d" in failure("ch05.sinusoidal", exponent_i)
    assert "wrong shape" in failure("ch05.sinusoidal", lambda T, d: sinusoidal_encoding(T, d).T)


def test_sinusoidal_accepts_a_list_or_array():
    assert check("ch05.sinusoidal", lambda T, d: sinusoidal_encoding(T, d).tolist(), quiet=True).ok
    assert check("ch05.sinusoidal", lambda T, d: sinusoidal_encoding(T, d).numpy(), quiet=True).ok


# ---------------------------------------------------------------- alibi_slopes


def test_alibi_slopes_mistakes_are_named():
    assert "reversed" in failure("ch05.alibi_slopes", lambda n: ch05.ref_alibi_slopes(n)[::-1])
    msg = failure("ch05.alibi_slopes", lambda n: [1 / (2 * (h + 1)) for h in range(n)])  # 1/2, 1/4, 1/6, ...
    assert "geometric sequence" in msg
    assert "wrong length" in failure("ch05.alibi_slopes", lambda n: ch05.ref_alibi_slopes(n)[1:] + [0.0][: n > 1])


def test_alibi_slopes_accepts_a_tensor():
    assert check("ch05.alibi_slopes", lambda n: torch.tensor(ch05.ref_alibi_slopes(n)), quiet=True).ok


# ---------------------------------------------------------------- rope


def _rope_with(x, base, sign=1.0, start=0, halves=False):
    T, d = x.shape[-2:]
    cos, sin = rope_angles(T, d, base, offset=start)
    sin = sign * sin
    if halves:
        a, b = x[..., : d // 2], x[..., d // 2 :]
        return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1).flatten(-2)


def test_rope_mistakes_are_named():
    msg = failure("ch05.rope", lambda x, base=10000.0: _rope_with(x, base, halves=True))  # GPT-NeoX layout
    assert "pairs are adjacent features (0, 1) and (2, 3)" in msg
    msg = failure("ch05.rope", lambda x, base=10000.0: _rope_with(x, base, sign=-1.0))  # turns the wrong way
    assert "counter-clockwise" in msg
    msg = failure("ch05.rope", lambda x, base=10000.0: _rope_with(x, base, start=1))  # positions 1..T
    assert "t = 0 first" in msg
    assert "use the base argument" in failure("ch05.rope", lambda x, base=10000.0: _rope_with(x, 10000.0))


def test_rope_reference_is_relative():
    """<rope(q)_i, rope(k)_j> depends only on j - i when q and k repeat at every position."""
    q, k = torch.randn(1, 8).expand(12, 8), torch.randn(1, 8).expand(12, 8)
    s = ch05.ref_rope(q) @ ch05.ref_rope(k).T
    torch.testing.assert_close(s[:-3, :-3], s[3:, 3:], atol=1e-5, rtol=1e-5)
