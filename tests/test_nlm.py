"""lmlib.lm.neural (Chapter 3): the MLP language model, stream_loss, bits per character, embedding tools."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from lmlib.lm.neural import (
    MLPLanguageModel,
    bits_per_char,
    cosine_neighbours,
    mlp_forward,
    neighbour_explorer,
    pca_2d,
    stream_loss,
    token_labels,
)
from lmlib.text.tokenizer import BPETokenizer, CharTokenizer

torch.set_num_threads(1)


def small_model(V=7, context=3, C=4, H=5, seed=0, dropout=0.0):
    torch.manual_seed(seed)
    return MLPLanguageModel(V, context, C, H, dropout).eval()


# ---------------------------------------------------------------- the model


def test_mlp_forward_by_hand():
    # V=2 tokens, C=1, n=2 context tokens, H=1 unit: every number can be checked on paper.
    wte = torch.tensor([[1.0], [-2.0]])  # token 0 -> 1, token 1 -> -2
    W1, b1 = torch.tensor([[0.5], [0.25]]), torch.tensor([0.1])  # (n C, H) = (2, 1)
    W2, b2 = torch.tensor([[2.0, -1.0]]), torch.tensor([0.0, 1.0])  # (H, V) = (1, 2)
    idx = torch.tensor([[0, 1]])  # window: token 0 then token 1 -> x = [1, -2]
    h = math.tanh(1 * 0.5 + (-2) * 0.25 + 0.1)  # tanh(0.1)
    expected = torch.tensor([[2 * h, -h + 1]])
    torch.testing.assert_close(mlp_forward(idx, wte, W1, b1, W2, b2), expected)


def test_model_shapes_and_parameter_count():
    m = small_model(V=11, context=4, C=3, H=6)
    logits = m(torch.randint(11, (2, 9)))
    assert logits.shape == (2, 9, 11)
    n = sum(p.numel() for p in m.parameters())
    assert n == (11 + 1) * 3 + (4 * 3 * 6 + 6) + (6 * 11 + 11)


def test_model_equals_mlp_forward_on_full_windows():
    m = small_model()
    idx = torch.randint(7, (3, 8))
    logits = m(idx)  # (3, 8, 7)
    k = m.context
    windows = idx.unfold(1, k, 1)  # (3, 8 - k + 1, k): the windows that need no padding
    ref = mlp_forward(windows.reshape(-1, k), m.wte.weight, m.hidden.weight.T, m.hidden.bias,
                      m.lm_head.weight.T, m.lm_head.bias)
    torch.testing.assert_close(logits[:, k - 1 :].reshape(-1, 7), ref)


def test_model_pads_the_start_with_bos():
    m = small_model()
    idx = torch.tensor([[2, 5, 1, 3]])
    logits = m(idx)
    bos = m.bos
    # position 1 sees (bos, 2, 5): the same as a full window with bos written out
    window = torch.tensor([[bos, 2, 5]])
    ref = mlp_forward(window, m.wte.weight, m.hidden.weight.T, m.hidden.bias, m.lm_head.weight.T, m.lm_head.bias)
    torch.testing.assert_close(logits[0, 1], ref[0])


def test_each_prediction_depends_only_on_its_window():
    m = small_model(context=3)
    idx = torch.randint(7, (1, 10))
    base = m(idx)
    changed = idx.clone()
    changed[0, 4] = (changed[0, 4] + 1) % 7
    diff = (m(changed) - base).abs().amax(dim=-1)[0]  # (T,)
    assert torch.all(diff[:4] == 0), "positions before the change must not move"
    assert torch.all(diff[4:7] > 0), "the 3 windows that contain position 4 must move"
    assert torch.all(diff[7:] == 0), "positions whose window no longer contains position 4 must not move"


def test_model_rejects_bad_input():
    m = small_model()
    with pytest.raises(TypeError, match="integer token ids"):
        m(torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        m(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="token ids must be in 0..7"):
        m(torch.tensor([[0, 8]]))
    with pytest.raises(ValueError, match="context must be a positive int"):
        MLPLanguageModel(5, 0, 2, 2)
    with pytest.raises(ValueError, match="dropout"):
        MLPLanguageModel(5, 2, 2, 2, dropout=1.0)
    with pytest.raises(ValueError, match="n \\* C = 2 \\* 3 = 6 rows"):
        mlp_forward(torch.zeros(1, 2, dtype=torch.long), torch.zeros(4, 3), torch.zeros(5, 2), torch.zeros(2),
                    torch.zeros(2, 4), torch.zeros(4))


# ---------------------------------------------------------------- stream_loss


def test_stream_loss_scores_every_token_with_bos_padding():
    m = small_model()
    ids = torch.randint(7, (23,))
    x = torch.cat([torch.tensor([m.bos]), ids[:-1]])  # predict ids[t] from the window ending at x[t]
    expected = F.cross_entropy(m(x[None])[0], ids).item()
    assert stream_loss(m, ids) == pytest.approx(expected, rel=1e-6)
    # and by hand for the first token: its window is all bos
    first = mlp_forward(torch.full((1, m.context), m.bos), m.wte.weight, m.hidden.weight.T, m.hidden.bias,
                        m.lm_head.weight.T, m.lm_head.bias)
    assert stream_loss(m, ids[:1]) == pytest.approx(F.cross_entropy(first, ids[:1]).item(), rel=1e-6)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 40), chunk=st.integers(1, 50))
def test_stream_loss_does_not_depend_on_the_chunk_size(n, chunk):
    m = small_model(seed=1)
    ids = torch.randint(7, (n,), generator=torch.Generator().manual_seed(n))
    assert stream_loss(m, ids, chunk_size=chunk) == pytest.approx(stream_loss(m, ids, chunk_size=10_000), rel=1e-5)


def test_stream_loss_restores_train_mode_and_rejects_bad_input():
    m = small_model(dropout=0.5).train()
    a, b = stream_loss(m, torch.arange(7)), stream_loss(m, torch.arange(7))
    assert a == b, "dropout must be off while scoring"
    assert m.training
    with pytest.raises(ValueError, match="non-empty 1-D"):
        stream_loss(m, torch.zeros(0, dtype=torch.long))
    with pytest.raises(TypeError, match=".context and .bos"):
        stream_loss(torch.nn.Linear(2, 2), torch.arange(3))


# ---------------------------------------------------------------- bits per character


def test_bits_per_char_worked_values():
    assert bits_per_char(math.log(2), 1, 1) == pytest.approx(1.0)
    assert bits_per_char(math.log(65), 10, 10) == pytest.approx(math.log2(65))  # uniform over 65 characters
    # 400 tokens at 3.2 nats = 1280 nats = 1846.6 bits, over 1000 characters
    assert bits_per_char(3.2, 400, 1000) == pytest.approx(1280 / math.log(2) / 1000)
    assert bits_per_char(0.0, 5, 9) == 0.0


def test_bits_per_char_rejects_bad_input():
    with pytest.raises(ValueError, match=">= 0"):
        bits_per_char(-0.1, 1, 1)
    with pytest.raises(ValueError, match=">= 0"):
        bits_per_char(float("nan"), 1, 1)
    with pytest.raises(ValueError, match="n_tokens and n_chars"):
        bits_per_char(1.0, 1, 0)


# ---------------------------------------------------------------- embeddings


def test_token_labels_are_visible_and_distinct():
    tok = BPETokenizer.train("the cat the hat the bat\n" * 20, vocab_size=262)
    labels = token_labels(tok)
    assert len(labels) == tok.vocab_size == len(set(labels))
    assert labels[ord(" ")] == "␣" and labels[ord("\n")] == "↵" and labels[0] == "<0x00>"
    assert labels[0xE2] == "<0xe2>"  # not valid UTF-8 on its own
    assert "␣the" in labels
    assert token_labels(CharTokenizer.train("a b\n")) == ["<unk>", "↵", "␣", "a", "b"]
    with pytest.raises(TypeError, match="BPETokenizer"):
        token_labels(object())


def test_pca_2d_finds_the_plane_of_the_data():
    g = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(6, 2, generator=g))[0].T  # (2, 6) orthonormal rows
    coeffs = torch.randn(50, 2, generator=g) * torch.tensor([5.0, 1.0])
    x = coeffs @ basis + 3.0  # points on a 2-D plane in 6-D, shifted
    coords, explained = pca_2d(x)
    assert coords.shape == (50, 2)
    assert explained.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert explained[0] > explained[1]
    # the projection keeps every pairwise distance (the data has no other directions)
    exact = "donot_use_mm_for_euclid_dist"
    torch.testing.assert_close(torch.cdist(coords, coords, compute_mode=exact), torch.cdist(x, x, compute_mode=exact),
                               atol=1e-3, rtol=1e-4)
    # same components as numpy's SVD, up to sign
    centred = (x - x.mean(0)).double().numpy()
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    np.testing.assert_allclose(np.abs(coords.numpy()), np.abs(centred @ vt[:2].T), atol=1e-4)
    # deterministic signs (largest loading positive): negating the data negates the coordinates
    torch.testing.assert_close(pca_2d(-x)[0], -coords, atol=1e-4, rtol=1e-4)


def test_pca_2d_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        pca_2d(torch.zeros(1, 5))
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        pca_2d(torch.zeros(5))


def test_cosine_neighbours_by_hand():
    emb = torch.tensor([[1.0, 0.0], [10.0, 0.5], [0.9, 0.3], [20.0, 20.0], [-1.0, 0.1]])
    ids, sims = cosine_neighbours(emb, 0, 4)
    assert ids.tolist() == [1, 2, 3, 4]  # cosine, not the dot product (which would put row 3 first)
    torch.testing.assert_close(sims[:1], torch.tensor([10 / math.hypot(10, 0.5)]))
    assert sims[2].item() == pytest.approx(math.sqrt(0.5), rel=1e-6)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(3, 30))
def test_cosine_neighbours_ignore_lengths_and_exclude_the_query(seed, n):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(n, 4, generator=g)
    q, k = seed % n, 1 + seed % (n - 1)
    ids, sims = cosine_neighbours(emb, q, k)
    assert q not in ids.tolist() and len(set(ids.tolist())) == k
    assert torch.all(sims[:-1] >= sims[1:])
    scaled = emb * torch.rand(n, 1, generator=g).add(0.1) * 10
    assert torch.equal(cosine_neighbours(scaled, q, k)[0], ids)


def test_cosine_neighbours_rejects_bad_input():
    emb = torch.eye(3)
    with pytest.raises(ValueError, match="between 1 and N - 1 = 2"):
        cosine_neighbours(emb, 0, 3)
    with pytest.raises(IndexError, match="not a row"):
        cosine_neighbours(emb, 3, 1)
    with pytest.raises(ValueError, match="row 1 of emb is zero"):
        cosine_neighbours(torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]]), 0, 1)


def test_neighbour_explorer_shows_and_updates_a_table():
    emb = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    box = neighbour_explorer(emb, ["a", "b", "c", "<d>"], token="a", k=2)
    (row, out) = box.children
    combo, slider = row.children
    assert "<code>b</code>" in out.value and "<code>c</code>" in out.value and "&lt;d&gt;" not in out.value
    slider.value = 3
    assert "&lt;d&gt;" in out.value  # labels are escaped for HTML
    combo.value = "zzz"
    assert "not a token" in out.value
    with pytest.raises(ValueError, match="one label per row"):
        neighbour_explorer(emb, ["a"])
    with pytest.raises(KeyError, match="not one of the labels"):
        neighbour_explorer(emb, ["a", "b", "c", "d"], token="q")
