"""lmlib.ui.attention_viewer: statistics on hand-made attention, figures, the widget driven by its controls, errors."""
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from lmlib.ui.attention_viewer import (  # noqa: E402
    STATISTICS,
    attention_for_text,
    attention_viewer,
    head_statistics,
    pick_heads,
    plot_attention,
    plot_heads,
    plot_shaded_text,
    shaded_text_html,
)
from lmlib.lm.gpt import GPT, GPTConfig  # noqa: E402
from lmlib.text.tokenizer import CharTokenizer  # noqa: E402

torch.set_num_threads(1)


# ---------------------------------------------------------------- hand-made heads


def previous_head(T):
    w = torch.zeros(T, T)
    w[0, 0] = 1.0
    w[torch.arange(1, T), torch.arange(T - 1)] = 1.0
    return w


def first_head(T):
    w = torch.zeros(T, T)
    w[:, 0] = 1.0
    return w


def uniform_head(T):
    return torch.ones(T, T).tril() / torch.arange(1, T + 1)[:, None]


def self_head(T):
    return torch.eye(T)


def from_targets(T, target):
    """Each query i puts weight 1 on key target(i) (must be <= i)."""
    w = torch.zeros(T, T)
    for i in range(T):
        w[i, target(i)] = 1.0
    return w


def test_statistics_of_hand_made_heads():
    T = 6
    maps = [torch.stack([previous_head(T), first_head(T)])[None], torch.stack([uniform_head(T), self_head(T)])[None]]
    s = head_statistics(maps)
    assert set(s) == set(STATISTICS) and all(v.shape == (2, 2) for v in s.values())
    # queries i = 1..5; the previous-token head at i = 1 also looks at the first token
    np.testing.assert_allclose(s["previous"], [[1.0, 1 / 5], [np.mean([1 / (i + 1) for i in range(1, T)]), 0.0]])
    np.testing.assert_allclose(s["first"], [[1 / 5, 1.0], [np.mean([1 / (i + 1) for i in range(1, T)]), 0.0]])
    np.testing.assert_allclose(s["self"][1], [np.mean([1 / (i + 1) for i in range(1, T)]), 1.0])
    np.testing.assert_allclose(s["distance"], [[1.0, 3.0], [np.mean([i / 2 for i in range(1, T)]), 0.0]])
    np.testing.assert_allclose(s["entropy"], [[0.0, 0.0], [np.mean([math.log(i + 1) for i in range(1, T)]), 0.0]],
                               atol=1e-6)
    assert np.isnan(s["word_start"]).all()  # needs the tokens


def test_text_statistics_find_word_starts_and_induction():
    tokens = list("ab cde abx")  # word starts at 0, 3, 7
    T = len(tokens)
    word_start = {0: 0, 1: 0, 2: 0, 3: 3, 4: 3, 5: 3, 6: 3, 7: 7, 8: 7, 9: 7}
    ws_head = from_targets(T, lambda i: word_start[i])
    # induction: the second "a" (7) -> "b" (1); the second "b" (8) -> the token after the first b, " " (2)
    ind_head = from_targets(T, lambda i: {7: 1, 8: 2}.get(i, i))
    s = head_statistics(torch.stack([ws_head, ind_head])[None], tokens)
    # word_start is defined where the word start is 2+ back: queries 2 ("ab␣" -> 0), 5, 6 (-> 3), 9 (-> 7)
    assert s["word_start"][0, 0] == pytest.approx(1.0)
    assert s["word_start"][0, 1] == pytest.approx(0.0)
    # induction is defined for queries with an earlier copy whose next token is before them: 7 (a), 8 (b), 6 (␣)
    assert s["induction"][0, 1] == pytest.approx(2 / 3)
    # same_token: queries 6 (␣), 7 (a), 8 (b) have earlier copies; this head never looks at them
    assert s["same_token"][0, 1] == pytest.approx(0.0)
    # last_space, defined where the last space before the query is 2+ back: queries 4, 5, 6 (-> 2), 8, 9 (-> 6)
    last_space = {4: 2, 5: 2, 6: 2, 8: 6, 9: 6}
    ls_head = from_targets(T, lambda i: last_space.get(i, i))
    s3 = head_statistics(torch.stack([ls_head, ws_head])[None], tokens)
    np.testing.assert_allclose(s3["last_space"][0], [1.0, 0.0])
    # labels from token_label (␣ for a space) are understood too
    s2 = head_statistics(torch.stack([ws_head, ind_head])[None], [t.replace(" ", "\u2423") for t in tokens])
    np.testing.assert_allclose(s2["word_start"], s["word_start"])


def test_line_start_and_batches():
    tokens = list("ab\ncde")
    T = len(tokens)
    ls_head = from_targets(T, lambda i: 3 if i >= 3 else 0)
    maps = [torch.stack([ls_head, previous_head(T)])[None].repeat(2, 1, 1, 1)]  # B = 2
    s = head_statistics(maps, [tokens, tokens])
    assert s["line_start"][0, 0] == pytest.approx(1.0)  # queries 2 (-> 0) and 5 (-> 3)
    assert s["line_start"][0, 1] == pytest.approx(0.0)


def test_a_single_token_gives_nan_statistics():
    s = head_statistics(torch.ones(1, 1, 1, 1))
    assert all(np.isnan(v).all() for v in s.values())


def test_pick_heads_takes_the_extremes_and_no_head_twice():
    stats = {"previous": np.array([[0.1, 0.9], [0.2, 0.3]]), "first": np.array([[0.1, 0.95], [0.8, 0.3]]),
             "entropy": np.array([[2.0, 0.5], [0.1, 3.0]])}
    picked = pick_heads(stats, ["previous", "first", "entropy"])
    assert [(n, l, h) for n, l, h, _ in picked] == [("previous", 0, 1), ("first", 1, 0), ("entropy", 0, 0)]
    assert pick_heads(stats, ["first"], distinct=False)[0][1:3] == (0, 1)
    assert pick_heads({"x": np.full((2, 2), np.nan)}, ["x"]) == []
    with pytest.raises(KeyError, match="no statistic 'nope'"):
        pick_heads(stats, ["nope"])


def test_statistics_errors_are_clear():
    with pytest.raises(ValueError, match="probabilities"):
        head_statistics([torch.randn(1, 2, 4, 4)])  # scores, not softmax weights
    with pytest.raises(ValueError, match="same shape"):
        head_statistics([torch.eye(3)[None, None], torch.eye(4)[None, None]])
    with pytest.raises(ValueError, match=r"\(B, nh, T, T\)"):
        head_statistics([torch.ones(1, 1, 3, 4) / 4])
    with pytest.raises(TypeError, match="list over layers"):
        head_statistics("not maps")
    with pytest.raises(ValueError, match="T=4 tokens"):
        head_statistics([self_head(4)[None, None]], list("abc"))


# ---------------------------------------------------------------- a tiny GPT


@pytest.fixture(scope="module")
def tiny():
    tok = CharTokenizer.train("abcdefgh ijklmnop\nqrstuvwxyz,.:")
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=2, n_head=3, n_embd=12)).eval()
    return model, tok


def test_attention_for_text_matches_the_model(tiny):
    model, tok = tiny
    maps, tokens, note = attention_for_text(model, tok, "ab cd\nef")
    assert maps.shape == (2, 3, 8, 8) and note == ""
    assert tokens == ["a", "b", "\u2423", "c", "d", "\u21b5", "e", "f"]
    ref = model.attention_maps(torch.tensor([tok.encode("ab cd\nef")]))
    torch.testing.assert_close(maps, torch.stack(ref)[:, 0])
    s = head_statistics(maps, tokens)
    assert s["previous"].shape == (2, 3) and np.isfinite(s["word_start"]).all()


def test_attention_for_text_errors_and_truncation(tiny):
    model, tok = tiny
    with pytest.raises(ValueError, match="text is empty"):
        attention_for_text(model, tok, "")
    with pytest.raises(TypeError, match="must be a str"):
        attention_for_text(model, tok, [1, 2])
    with pytest.raises(ValueError, match="20 tokens but the model's context is block_size=16"):
        attention_for_text(model, tok, "a" * 20)
    maps, tokens, note = attention_for_text(model, tok, "abcdefghijklmnopqrst", truncate=True)
    assert maps.shape[-1] == 16 and "".join(tokens) == "abcdefghijklmnop"
    assert "20 tokens" in note and "first 16" in note


def test_figures_draw_and_check_their_input(tiny):
    model, tok = tiny
    maps, tokens, _ = attention_for_text(model, tok, "ab cd ef gh")
    fig = plot_heads(maps, tokens, [("previous", 0, 1, 0.5), ("first", 1, 2)], query=4, width=6)
    assert len(fig.axes) == 4 and "layer 0, head 1" in fig.axes[0].get_title()
    assert "previous = 0.50" in fig.axes[0].get_title()
    plt.close(fig)
    with pytest.raises(ValueError, match="head=3 is out of range: this model has 3 heads per layer"):
        plot_heads(maps, tokens, [("x", 0, 3)])
    with pytest.raises(ValueError, match="layer=2 is out of range: this model has 2 layers"):
        plot_heads(maps, tokens, [("x", 2, 0)])
    with pytest.raises(ValueError, match="query=11 is out of range"):
        plot_heads(maps, tokens, [("x", 0, 0)], query=11)
    with pytest.raises(ValueError, match="B=2"):
        plot_heads([m[None].repeat(2, 1, 1, 1) for m in maps], tokens, [("x", 0, 0)])
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="T tokens"):
        plot_attention(ax, maps[0, 0], tokens[:-1])
    with pytest.raises(ValueError, match="one weight per token"):
        plot_shaded_text(ax, maps[0, 0, 3, :-1], tokens, 3)
    plt.close(fig)


def test_shaded_html_escapes_and_greys_the_future():
    html = shaded_text_html(torch.tensor([0.25, 0.75, 0.0]), ["<", "b", "c"], query=1)
    assert "&lt;" in html and "<span" in html
    assert 'title="weight 0.750"' in html and "rgba(230,85,13,0.900)" in html  # the top weight is the darkest
    assert html.count("border-bottom") == 1 and html.count("color:#aaa") == 1  # query underlined, future grey
    with pytest.raises(ValueError, match="0 <= query < 3"):
        shaded_text_html(torch.ones(3) / 3, ["a", "b", "c"], query=3)


# ---------------------------------------------------------------- the widget


def test_viewer_follows_its_controls(tiny):
    model, tok = tiny
    box = attention_viewer(model, tok, text="ab cd ef", layer=0, head=0)
    c, v = box.controls, box.views
    assert "layer 0, head 0" in v["status"].value and v["image"].value[:4] == b"\x89PNG"
    assert c["query"].max == 7 and c["query"].value == 7
    first_image = v["image"].value
    c["layer"].value = 1
    c["head"].value = 2
    assert "layer 1, head 2" in v["status"].value and v["image"].value != first_image
    c["query"].value = 2
    assert "query 2 (<code>\u2423</code>)" in v["status"].value
    assert v["shaded"].value.count("color:#aaa") == 5  # the 5 tokens after the query are greyed out
    c["text"].value = "abcdefghijklmnopqrstu"  # 21 characters > block_size 16
    assert c["query"].max == 15 and "only the first 16" in v["status"].value
    c["text"].value = ""
    assert "text is empty" in v["status"].value and v["image"].value == b""
    c["text"].value = "xyz"
    assert c["query"].max == 2 and "layer 1, head 2" in v["status"].value


def test_viewer_errors_are_clear(tiny):
    model, tok = tiny
    with pytest.raises(ValueError, match="layer=2 is out of range: this model has 2 layers, numbered 0 to 1"):
        attention_viewer(model, tok, text="abc", layer=2)
    with pytest.raises(ValueError, match="head=-1 is out of range"):
        attention_viewer(model, tok, text="abc", head=-1)
    with pytest.raises(ValueError, match="text is empty"):
        attention_viewer(model, tok, text="")
    with pytest.raises(ValueError, match="query=3 is out of range: the text has 3 tokens"):
        attention_viewer(model, tok, text="abc", query=3)


# ---------------------------------------------------------------- properties and the book GPT


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=25, deadline=None)
@given(L=st.integers(1, 3), B=st.integers(1, 2), H=st.integers(1, 3), T=st.integers(2, 12),
       seed=st.integers(0, 10_000), text=st.text(alphabet="ab \n", min_size=12, max_size=12))
def test_statistics_stay_in_their_ranges(L, B, H, T, seed, text):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(L, B, H, T, T, generator=g) * 3
    w = torch.softmax(scores.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf")), dim=-1)
    s = head_statistics(list(w), [list(text[:T])] * B)
    for name in ["previous", "self", "first", "word_start", "line_start", "same_token", "induction"]:
        v = s[name][~np.isnan(s[name])]
        assert ((v >= -1e-6) & (v <= 1 + 1e-6)).all(), name
    assert ((s["distance"] >= 0) & (s["distance"] <= T - 1 + 1e-4)).all()
    assert ((s["entropy"] >= -1e-6) & (s["entropy"] <= math.log(T) + 1e-4)).all()
    # on average over queries, previous + self + first cannot exceed 1 except where they coincide (query 1)
    assert (s["previous"] + s["self"] <= 1 + 1e-5).all()


def test_the_book_gpt_can_be_viewed():
    from lmlib.assets import load_book_gpt

    model, tok = load_book_gpt()
    maps, tokens, note = attention_for_text(model, tok, "ROMEO:\nBut soft!")
    assert maps.shape == (model.config.n_layer, model.config.n_head, 16, 16) and tokens[6] == "\u21b5"
    torch.testing.assert_close(maps.sum(-1), torch.ones(maps.shape[:-1]))
    assert torch.equal(maps.triu(1), torch.zeros_like(maps))  # causal: nothing above the diagonal
    box = attention_viewer(model, tok, text="x" * 200, layer=model.config.n_layer - 1)
    assert f"only the first {model.config.block_size}" in box.views["status"].value
