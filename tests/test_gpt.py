"""lmlib.lm.positional and lmlib.lm.gpt: encodings worked by hand and as properties, parameter counts, causality,
tying, golden samples, checkpoints, a loss that falls, clear errors, exercises."""
import importlib.util
import math
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lmlib.checkpoint import CheckpointError, load_checkpoint
from lmlib.exercises import ExerciseFailed, check
from lmlib.exercises import ch05
from lmlib.lm.gpt import GPT, GPTConfig
from lmlib.lm.positional import (
    ALiBi,
    ContextTooLongError,
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    alibi_bias,
    alibi_slopes,
    apply_rope,
    rope_angles,
    sinusoidal_encoding,
)
from lmlib.lm.train import TrainConfig, train

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
ENCODINGS = ["none", "learned", "sinusoidal", "alibi", "rope"]


def tiny(**kw) -> GPTConfig:
    return GPTConfig(**{**dict(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8), **kw})


def seeded_gpt(seed: int = 0, **kw) -> GPT:
    torch.manual_seed(seed)
    return GPT(tiny(**kw))


# ---------------------------------------------------------------------------- sinusoidal


def test_sinusoidal_values_worked_by_hand():
    pe = sinusoidal_encoding(3, 4)  # d=4: frequencies 1 and 1/10000^(2/4) = 1/100
    assert pe.shape == (3, 4)
    torch.testing.assert_close(pe[0], torch.tensor([0.0, 1.0, 0.0, 1.0]))
    torch.testing.assert_close(pe[1], torch.tensor([math.sin(1), math.cos(1), math.sin(0.01), math.cos(0.01)]))
    torch.testing.assert_close(pe[2], torch.tensor([math.sin(2), math.cos(2), math.sin(0.02), math.cos(0.02)]))
    torch.testing.assert_close(sinusoidal_encoding(2, 4, offset=1), pe[1:])
    enc = SinusoidalPositionalEncoding(4)
    torch.testing.assert_close(enc(100)[:3], pe)  # any length: it is a formula
    assert enc(5, offset=95).shape == (5, 4)
    with pytest.raises(ValueError, match="even number of features"):
        sinusoidal_encoding(3, 5)


# ---------------------------------------------------------------------------- RoPE


@settings(max_examples=30, deadline=None)
@given(d=st.integers(1, 8).map(lambda h: 2 * h), T=st.integers(1, 20), seed=st.integers(0, 10_000))
def test_rope_preserves_norms(d, T, seed):
    x = torch.randn(2, T, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    cos, sin = rope_angles(T, d)
    y = apply_rope(x, cos.double(), sin.double())
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1))
    torch.testing.assert_close(y[:, 0], x[:, 0])  # position 0: no rotation


@settings(max_examples=30, deadline=None)
@given(d=st.integers(1, 8).map(lambda h: 2 * h), m=st.integers(0, 30), n=st.integers(0, 30), shift=st.integers(0, 50),
       seed=st.integers(0, 10_000))
def test_rope_dot_products_depend_only_on_the_offset(d, m, n, shift, seed):
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(d, generator=g), torch.randn(d, generator=g)
    rope = RotaryEmbedding(d)

    def at(x, pos):  # x placed at position pos
        return rope(x[None], offset=pos)[0]

    a = at(q, m) @ at(k, n)
    b = at(q, m + shift) @ at(k, n + shift)
    assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)


def test_rope_worked_by_hand_and_errors():
    x = torch.tensor([[1.0, 0.0, 1.0, 0.0]] * 3)  # (T=3, d=4)
    y = RotaryEmbedding(4, base=100.0)(x)  # pair 0 turns by t radians, pair 1 by t / 100^(2/4) = t / 10
    for t in range(3):
        torch.testing.assert_close(y[t], torch.tensor([math.cos(t), math.sin(t), math.cos(t / 10), math.sin(t / 10)]))
    with pytest.raises(ValueError, match="head size must be even"):
        RotaryEmbedding(5)
    with pytest.raises(ValueError, match="built for head size 4"):
        RotaryEmbedding(4)(torch.zeros(3, 6))


@pytest.mark.parametrize("base", [0.0, -10.0, float("nan"), float("inf")])
def test_rope_and_sinusoidal_refuse_a_base_that_is_not_positive(base):
    # base <= 0 used to give NaN angles silently
    with pytest.raises(ValueError, match=f"got base={base!r}$"):  # the message names the bad base
        RotaryEmbedding(4, base=base)
    with pytest.raises(ValueError, match="base must be a finite number > 0"):
        rope_angles(3, 4, base=base)
    with pytest.raises(ValueError, match="base must be a finite number > 0"):
        SinusoidalPositionalEncoding(4, base=base)


def test_per_row_positions_worked_by_hand():
    from lmlib.lm.positional import position_ids

    mask = torch.tensor([[False, False, True, True, True], [True, True, True, True, True]])
    assert position_ids(mask).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]]
    pos = position_ids(mask)
    wpe = LearnedPositionalEmbedding(8, 4)
    torch.testing.assert_close(wpe(5, positions=pos)[0, 2:], wpe(3))
    sin = SinusoidalPositionalEncoding(4)
    torch.testing.assert_close(sin(5, positions=pos)[0, 2:], sinusoidal_encoding(3, 4))
    rope = RotaryEmbedding(4)
    x = torch.randn(2, 1, 5, 4)
    torch.testing.assert_close(rope(x, positions=pos)[0, :, 2:], rope(x[:1, :, 2:])[0])
    with pytest.raises(ContextTooLongError, match="position 8 is beyond block_size=8"):
        wpe(2, positions=torch.tensor([[7, 8]]))
    with pytest.raises(ValueError, match=r"positions must be a \(B, T=3\)"):
        wpe(3, positions=torch.tensor([[0, 1]]))


# ---------------------------------------------------------------------------- ALiBi


def test_alibi_slopes_as_in_the_paper():
    # Press et al. 2022, section 3: for 8 heads 1/2^1 ... 1/2^8; for 4 heads 1/2^2, 1/2^4, 1/2^6, 1/2^8
    assert alibi_slopes(8).tolist() == [2.0 ** -i for i in range(1, 9)]
    assert alibi_slopes(4).tolist() == [2.0 ** -i for i in (2, 4, 6, 8)]
    # not a power of two: the 4-head slopes, then every other 8-head slope (the paper's code)
    assert alibi_slopes(6).tolist() == [2.0 ** -i for i in (2, 4, 6, 8, 1, 3)]
    with pytest.raises(ValueError, match="n_head"):
        alibi_slopes(0)


def test_alibi_bias_worked_by_hand():
    b = alibi_bias(2, 3)  # 2 heads: slopes 2^(-8/2) = 1/16 and 1/256
    assert alibi_slopes(2).tolist() == [2.0 ** -4, 2.0 ** -8]
    assert b.shape == (2, 3, 3)
    torch.testing.assert_close(b[0], -torch.tensor([[0.0, -1, -2], [1, 0, -1], [2, 1, 0]]) / 16)
    # 2 new queries at the end of 4 positions: distances 2, 1, 0, -1 and 3, 2, 1, 0
    torch.testing.assert_close(ALiBi(2)(2, 4)[0, 0], -torch.tensor([[2.0, 1, 0, -1], [3, 2, 1, 0]]) / 16)


# ---------------------------------------------------------------------------- context length


def test_learned_positions_refuse_long_context_others_extrapolate():
    with pytest.raises(ContextTooLongError, match="block_size=8"):
        LearnedPositionalEmbedding(8, 4)(9)
    x = torch.randint(0, 11, (1, 12))  # 12 > block_size = 8
    with pytest.raises(ContextTooLongError, match=r"T=12 tokens .* block_size=8"):
        seeded_gpt(pos_encoding="learned")(x)
    for pos in ("none", "sinusoidal", "alibi", "rope"):
        logits, _ = seeded_gpt(pos_encoding=pos)(x)
        assert logits.shape == (1, 12, 11) and torch.isfinite(logits).all()


# ---------------------------------------------------------------------------- the model


def test_parameter_count_worked_by_hand():
    # V=11, T=8, L=2, C=8, biases, tied. Per block: ln_1, ln_2: 2*(8+8) = 32; c_attn: 8*24 + 24 = 216;
    # attn.c_proj: 64 + 8 = 72; mlp.c_fc: 8*32 + 32 = 288; mlp.c_proj: 32*8 + 8 = 264 -> 872.
    # Total: 2*872 + ln_f 16 + wte 88 + wpe 64 = 1912 (lm_head shares wte).
    assert seeded_gpt().num_params() == 1912
    assert seeded_gpt().num_params(non_embedding=True) == 1912 - 64
    assert seeded_gpt(tie_weights=False).num_params() == 1912 + 88
    assert seeded_gpt(bias=False).num_params() == 1912 - 2 * 11 * 8 - 8
    assert seeded_gpt(pos_encoding="rope").num_params() == 1912 - 64
    for kw in ({}, {"bias": False}, {"tie_weights": False}, {"pos_encoding": "alibi"}):
        c = tiny(**kw)
        assert seeded_gpt(**kw).num_params() == ch05.ref_count_params(
            c.vocab_size, c.block_size, c.n_layer, c.n_embd, c.bias, c.tie_weights, c.pos_encoding)


def test_weights_are_tied_and_get_gradient_from_both_uses():
    m = seeded_gpt()
    assert m.lm_head.weight is m.transformer.wte.weight
    x = torch.randint(0, 11, (2, 8))
    _, loss = m(x, x)
    loss.backward()
    assert m.lm_head.weight.grad is not None and m.lm_head.weight.grad.abs().sum() > 0
    untied = seeded_gpt(tie_weights=False)
    assert untied.lm_head.weight is not untied.transformer.wte.weight


def test_init_scales_residual_projections():
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=64, n_layer=8, n_embd=128))
    assert abs(m.transformer.h[0].mlp.c_fc.weight.std().item() - 0.02) < 0.001
    expected = 0.02 / math.sqrt(2 * 8)
    for name in ("attn", "mlp"):
        assert abs(getattr(m.transformer.h[3], name).c_proj.weight.std().item() - expected) < 0.1 * expected
    assert m.transformer.h[0].mlp.c_fc.bias.abs().sum() == 0


@pytest.mark.parametrize("pos", ENCODINGS)
def test_causal_changing_future_tokens_does_not_change_past_logits(pos):
    m = seeded_gpt(pos_encoding=pos, attn_impl="manual")
    x = torch.randint(0, 11, (2, 8), generator=torch.Generator().manual_seed(1))
    x2 = x.clone()
    x2[:, 5:] = (x2[:, 5:] + 3) % 11
    a, _ = m(x)
    b, _ = m(x2)
    assert torch.equal(a[:, :5], b[:, :5])
    assert not torch.allclose(a[:, 5:], b[:, 5:])
    for block in m.transformer.h:
        block.attn.impl = "fused"
    torch.testing.assert_close(m(x)[0], a, rtol=1e-5, atol=1e-5)  # both attention paths agree


@pytest.mark.parametrize("pos", ENCODINGS)
def test_what_enters_the_first_block(pos):
    m = seeded_gpt(pos_encoding=pos)
    seen = []
    m.transformer.h[0].register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
    idx = torch.randint(0, 11, (2, 5))
    m(idx)
    tok = m.transformer.wte(idx)
    if pos == "learned":
        expected = tok + m.transformer.wpe.weight[:5]
    elif pos == "sinusoidal":  # embeddings scaled by sqrt(C), as in Vaswani et al.
        expected = tok * math.sqrt(8) + sinusoidal_encoding(5, 8)
    else:  # none, alibi, rope: nothing is added (the last two act inside attention)
        expected = tok
    torch.testing.assert_close(seen[0], expected)


def test_forward_loss_equals_cross_entropy_and_ignores_minus_one():
    m = seeded_gpt()
    x = torch.randint(0, 11, (3, 8))
    y = torch.randint(0, 11, (3, 8))
    logits, loss = m(x, y)
    assert logits.shape == (3, 8, 11) and loss.shape == ()
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(logits.view(-1, 11), y.view(-1)))
    assert m(x)[1] is None
    y[:, :4] = -1
    torch.testing.assert_close(m(x, y)[1], torch.nn.functional.cross_entropy(logits[:, 4:].reshape(-1, 11), y[:, 4:].reshape(-1)))
    assert abs(loss.item() - math.log(11)) < 0.1  # a fresh model is close to uniform


def test_attention_maps_for_the_viewer():
    m = seeded_gpt(n_head=2)
    m.train()
    maps = m.attention_maps(torch.randint(0, 11, (1, 6)))
    assert m.training  # mode restored
    assert len(maps) == 2 and maps[0].shape == (1, 2, 6, 6)
    for w in maps:
        torch.testing.assert_close(w.sum(-1), torch.ones(1, 2, 6))
        assert torch.equal(w.triu(1), torch.zeros_like(w))


# ---------------------------------------------------------------------------- generate

# Recorded once from this seeded model (torch 2.13, CPU); a change means sampling or the model changed.
GOLDEN = [[1, 2, 3, 10, 5, 9, 2, 6, 8, 7, 7, 0, 0, 9, 2, 0]]
GOLDEN_TOP_K = [[1, 2, 3, 10, 10, 8, 8, 10, 9, 9, 9, 9, 8], [4, 5, 6, 7, 1, 8, 9, 5, 9, 8, 10, 10, 10]]


def test_generate_golden_output_is_reproducible():
    m = seeded_gpt(seed=123)
    out = m.generate(torch.tensor([[1, 2, 3]]), 13, generator=torch.Generator().manual_seed(7))
    assert out.tolist() == GOLDEN
    again = m.generate(torch.tensor([[1, 2, 3]]), 13, generator=torch.Generator().manual_seed(7))
    assert torch.equal(out, again)
    out = m.generate(torch.tensor([[1, 2, 3], [4, 5, 6]]), 10, temperature=0.7, top_k=3,
                     generator=torch.Generator().manual_seed(7))
    assert out.tolist() == GOLDEN_TOP_K


def test_generate_greedy_top_k_and_long_prompts():
    m = seeded_gpt(seed=3)
    prompt = torch.randint(0, 11, (2, 3), generator=torch.Generator().manual_seed(0))
    greedy = m.generate(prompt, 5, temperature=0)
    top1 = m.generate(prompt, 5, top_k=1, generator=torch.Generator().manual_seed(1))
    assert torch.equal(greedy, top1)
    manual = prompt
    for _ in range(5):
        manual = torch.cat([manual, m(manual)[0][:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(greedy, manual)
    long = m.generate(torch.randint(0, 11, (1, 20)), 4, temperature=0.8, top_k=3)  # prompt > block_size: cropped
    assert long.shape == (1, 24)
    m.train()
    m.generate(prompt, 1)
    assert m.training  # mode restored


# ---------------------------------------------------------------------------- save / load


def test_save_and_load_round_trip(tmp_path):
    m = seeded_gpt(seed=5, pos_encoding="rope", bias=False)
    digest = m.save(tmp_path / "gpt.safetensors", meta={"chars": ["a", "b"]})
    assert (tmp_path / "gpt.safetensors.sha256").read_text().split()[0] == digest
    m2 = GPT.from_checkpoint(tmp_path / "gpt.safetensors")
    assert m2.config == m.config and not m2.training
    assert m2.lm_head.weight is m2.transformer.wte.weight  # still tied
    for k, v in m.state_dict().items():
        assert torch.equal(v, m2.state_dict()[k]), k
    x = torch.randint(0, 11, (2, 8))
    assert torch.equal(m.eval()(x)[0], m2(x)[0])
    assert load_checkpoint(tmp_path / "gpt.safetensors").meta["chars"] == ["a", "b"]
    # the tied matrix is stored once
    assert len(load_checkpoint(tmp_path / "gpt.safetensors").model) == len(m.state_dict())


def test_checkpoint_errors(tmp_path):
    path = tmp_path / "w.safetensors"
    seeded_gpt().save(path)
    with pytest.raises(FileNotFoundError):
        GPT.from_checkpoint(tmp_path / "missing.safetensors")
    from lmlib.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "plain.safetensors", seeded_gpt().state_dict())
    with pytest.raises(CheckpointError, match="pass config="):
        GPT.from_checkpoint(tmp_path / "plain.safetensors")
    with pytest.raises(CheckpointError, match="shape mismatch"):
        GPT.from_checkpoint(path, config=tiny(n_embd=16))


# ---------------------------------------------------------------------------- resize_vocab (special tokens)


@pytest.mark.parametrize("tie", [True, False])
def test_resize_vocab_keeps_old_tokens_and_adds_mean_rows(tmp_path, tie):
    m = seeded_gpt(seed=3, tie_weights=tie).eval()
    x = torch.randint(0, 11, (2, 8), generator=torch.Generator().manual_seed(0))  # old tokens only
    old_logits = m(x)[0]
    old_wte, old_head = m.transformer.wte.weight.clone(), m.lm_head.weight.clone()
    config_before = m.config
    assert m.resize_vocab(14) is m
    assert m.config.vocab_size == 14 and config_before.vocab_size == 11  # the old config object is untouched
    assert m.transformer.wte.weight.shape == m.lm_head.weight.shape == (14, 8)
    assert (m.lm_head.weight is m.transformer.wte.weight) == tie
    assert torch.equal(m.transformer.wte.weight[:11], old_wte) and torch.equal(m.lm_head.weight[:11], old_head)
    for table, old in ((m.transformer.wte.weight, old_wte), (m.lm_head.weight, old_head)):
        assert torch.allclose(table[11:], old.mean(0).expand(3, 8))  # every new row is the mean row
    logits = m(x)[0]  # (B, T, 14)
    # the old tokens' logits are unchanged (up to float rounding: a wider matmul may sum in another order)
    torch.testing.assert_close(logits[..., :11], old_logits)
    # a new token's logit is the average of the old logits (a logit is linear in its row)
    torch.testing.assert_close(logits[..., 11], old_logits.mean(-1))
    # it trains, and saves / loads with the new vocabulary
    m.train()
    m(torch.tensor([[11, 12, 13, 1]]), torch.tensor([[12, 13, 1, 11]]))[1].backward()
    assert m.lm_head.weight.grad.shape == (14, 8) and m.lm_head.weight.grad[11:].abs().sum() > 0
    m.save(tmp_path / "big.safetensors")
    m2 = GPT.from_checkpoint(tmp_path / "big.safetensors")
    assert m2.config.vocab_size == 14 and (m2.lm_head.weight is m2.transformer.wte.weight) == tie
    torch.testing.assert_close(m2(x)[0], m.eval()(x)[0], rtol=0, atol=0)


def test_resize_vocab_normal_init_is_seeded_and_errors_name_the_problem():
    a = seeded_gpt(seed=1).resize_vocab(13, init="normal", generator=torch.Generator().manual_seed(7))
    b = seeded_gpt(seed=1).resize_vocab(13, init="normal", generator=torch.Generator().manual_seed(7))
    assert torch.equal(a.lm_head.weight, b.lm_head.weight)
    assert 0.005 < float(a.lm_head.weight[11:].detach().std()) < 0.05  # N(0, 0.02), like a fresh GPT
    m = seeded_gpt()
    before = m.lm_head.weight
    assert m.resize_vocab(11) is m and m.lm_head.weight is before  # same size: nothing changes
    with pytest.raises(ValueError, match="smaller than the vocabulary .vocab_size=11.*only adds tokens"):
        m.resize_vocab(10)
    with pytest.raises(ValueError, match="init must be 'mean' or 'normal'"):
        m.resize_vocab(12, init="zeros")
    with pytest.raises(TypeError, match="new_vocab_size must be an int"):
        m.resize_vocab(12.0)
    with pytest.raises(ValueError, match=r"token ids in \[0, 11\], outside \[0, vocab_size=11\)"):
        m(torch.tensor([[0, 11]]))  # the new id is not valid before resizing


# ---------------------------------------------------------------------------- training


def test_loss_falls_on_a_repetitive_sequence_with_lmlib_train(tmp_path):
    data = torch.arange(400) % 7  # 0 1 2 ... 6 0 1 2 ...: perfectly predictable
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=7, block_size=8, n_layer=1, n_head=2, n_embd=16))
    cfg = TrainConfig(max_steps=50, batch_size=8, block_size=8, lr=1e-2, min_lr=1e-3, warmup_steps=5,
                      eval_interval=0, log_interval=10, device="cpu", progress=False,
                      ckpt_path=tmp_path / "run.safetensors")
    hist = train(model, data, cfg)  # the loop takes the logits from (logits, loss)
    assert hist["loss"][0] > 1.0 and hist["loss"][-1] < 0.2, hist["loss"]
    # the training checkpoint (no GPTConfig stored) loads back with the config given
    back = GPT.from_checkpoint(cfg.ckpt_path, config=model.config)
    x = torch.arange(8)[None] % 7
    assert torch.equal(back(x)[0], model.eval()(x)[0])


# ---------------------------------------------------------------------------- clear errors


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="divisible by n_head"):
        GPTConfig(n_embd=10, n_head=4)
    with pytest.raises(ValueError, match="pos_encoding must be one of"):
        GPTConfig(pos_encoding="relative")
    with pytest.raises(ValueError, match="head size .* must be even"):
        GPTConfig(n_embd=12, n_head=4, pos_encoding="rope")
    with pytest.raises(ValueError, match="vocab_size must be a positive int"):
        GPTConfig(vocab_size=0)
    with pytest.raises(ValueError, match="dropout"):
        GPTConfig(dropout=1.0)
    with pytest.raises(TypeError, match="GPTConfig"):
        GPT(asdict(tiny()))


def test_input_errors_name_the_problem():
    m = seeded_gpt()
    with pytest.raises(ValueError, match=r"\(B, T\).*idx\[None\]"):
        m(torch.tensor([1, 2, 3]))
    with pytest.raises(TypeError, match="integer token ids"):
        m(torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"\[0, 11\].*vocab_size=11"):
        m(torch.tensor([[0, 11]]))
    with pytest.raises(ValueError, match="targets must have the shape"):
        m(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="empty"):
        m(torch.zeros(1, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="temperature"):
        m.generate(torch.zeros(1, 1, dtype=torch.long), 2, temperature=-1.0)
    with pytest.raises(ValueError, match="top_k"):
        m.generate(torch.zeros(1, 1, dtype=torch.long), 2, top_k=0)


# ---------------------------------------------------------------------------- the benchmark's baseline


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("gpt_speed", ROOT / "benchmarks" / "gpt_speed.py")
    bench = importlib.util.module_from_spec(spec)
    sys.modules["gpt_speed"] = bench  # dataclasses look their module up there
    try:
        spec.loader.exec_module(bench)
    finally:
        del sys.modules["gpt_speed"]
    return bench


def test_benchmark_baseline_is_the_same_architecture():
    bench = _load_benchmark()
    cfg = tiny(bias=False)
    ours = seeded_gpt(bias=False)
    base = bench.NanoGPT(bench.NanoConfig(block_size=8, vocab_size=11, n_layer=2, n_head=2, n_embd=8, bias=False))
    assert base.num_params(non_embedding=False) == ours.num_params() == ch05.ref_count_params(11, 8, 2, 8, bias=False)
    assert base.num_params(non_embedding=True) == ours.num_params(non_embedding=True)
    base.load_state_dict(ours.state_dict())  # same parameter names and shapes
    x = torch.randint(0, 11, (2, 8))
    torch.testing.assert_close(base(x, x)[1], ours(x, x)[1])
    assert cfg.bias is False


# ---------------------------------------------------------------------------- exercises


def _sinusoidal_swapped(T, d):  # cos on even features, sin on odd ones
    return sinusoidal_encoding(T, d)[:, [i ^ 1 for i in range(d)]]


def _rope_halves(x, base=10000.0):  # the GPT-NeoX "rotate half" layout: a different pairing of features
    T, d = x.shape[-2:]
    cos, sin = rope_angles(T, d, base)
    a, b = x[..., : d // 2], x[..., d // 2 :]
    return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)


def _slopes_linear(n):
    return [1 / (2 * (h + 1)) for h in range(n)]


def _count_untied_always(V, T, L, C, bias=True, tie_weights=True, pos_encoding="learned"):
    return ch05.ref_count_params(V, T, L, C, bias, False, pos_encoding)


@pytest.mark.parametrize("name,wrong", [
    ("sinusoidal", _sinusoidal_swapped),
    ("rope", _rope_halves),
    ("alibi_slopes", _slopes_linear),
    ("count_params", _count_untied_always),
])
def test_each_exercise_passes_with_the_reference_and_fails_with_a_wrong_answer(name, wrong):
    assert check(f"ch05.{name}", getattr(ch05, f"ref_{name}"), quiet=True).ok
    with pytest.raises(ExerciseFailed):
        check(f"ch05.{name}", wrong, quiet=True)


def test_benchmark_script_smoke(tmp_path, capsys):
    """A few iterations of benchmarks/gpt_speed.py: same start for every run, both thread paths of ours."""
    bench = _load_benchmark()
    res = bench.main(["--iters", "12", "--eval-iters", "2", "--baselines", "1", "--modes", "t1,dp2",
                      "--json", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert "ratio ours / baseline-1t, end-to-end throughput" in out and "MFU formula" in out
    base, ours = res["baseline-1t"], res["ours"]
    assert base["evals"][0][2] == pytest.approx(ours["evals"][0][2], abs=1e-4)  # same initial weights and batches
    assert abs(base["final_val_loss"] - ours["final_val_loss"]) < 0.01  # same training, up to rounding
    assert sum(ours["modes"].values()) == 12 and ours["modes"].get("dp2", 0) >= 2
    assert (tmp_path / "r.json").is_file()
