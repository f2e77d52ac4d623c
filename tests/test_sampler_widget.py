"""lmlib.ui.sampler: generate_text (the plain function) and the widget that drives it."""
import math

import pytest
import torch

from lmlib.lm import decoding
from lmlib.lm.gpt import GPT, GPTConfig
from lmlib.ui.sampler import METHODS, generate_text, sampler_widget
from lmlib.text.tokenizer import CharTokenizer


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest.one_thread


@pytest.fixture(scope="module")
def tiny():
    """A tiny random GPT over the characters of a short text (fast, deterministic)."""
    tok = CharTokenizer.train("hello world, said the owl\n")
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16)).eval()
    return model, tok


def test_same_seed_same_text_different_seed_different_text(tiny):
    model, tok = tiny
    a = generate_text(model, tok, "hello", max_new_tokens=40, seed=3)
    b = generate_text(model, tok, "hello", max_new_tokens=40, seed=3)
    c = generate_text(model, tok, "hello", max_new_tokens=40, seed=4)
    assert a.text == b.text and torch.equal(a.ids, b.ids)
    assert a.text != c.text
    assert a.prompt == "hello" and a.ids.shape == (5 + 40,)
    assert a.text == tok.decode(a.ids[5:].tolist())


def test_generation_is_lmlib_decoding(tiny):
    model, tok = tiny
    idx = torch.tensor([tok.encode("the ")])
    r = generate_text(model, tok, "the ", method="sample", max_new_tokens=20, temperature=0.7, top_k=5, top_p=0.9,
                      repetition_penalty=1.2, seed=7)
    expected = decoding.sample(model, idx, 20, temperature=0.7, top_k=5, top_p=0.9, repetition_penalty=1.2,
                               generator=torch.Generator().manual_seed(7), max_context=16)[0]
    assert torch.equal(r.ids, expected)
    g = generate_text(model, tok, "the ", method="greedy", max_new_tokens=20, repetition_penalty=1.3)
    assert torch.equal(g.ids, decoding.greedy(model, idx, 20, repetition_penalty=1.3, max_context=16)[0])
    b = generate_text(model, tok, "the ", method="beam", max_new_tokens=6, num_beams=3)
    assert torch.equal(b.ids, decoding.beam_search(model, idx, 6, 3, max_context=16).sequences[0])
    # the reported quality is the model's mean log-probability of the generated tokens
    lp = decoding.sequence_log_likelihood(model, r.ids[None], 4, max_context=16).item()
    assert math.isclose(r.mean_log_prob, lp, rel_tol=1e-5)


def test_off_values_mean_off(tiny):
    model, tok = tiny
    plain = generate_text(model, tok, "ow", max_new_tokens=25, seed=1)
    assert generate_text(model, tok, "ow", max_new_tokens=25, seed=1, top_k=0, top_p=1.0).text == plain.text
    assert generate_text(model, tok, "ow", max_new_tokens=25, seed=1, top_k=None, top_p=None).text == plain.text
    assert plain.notes == []


def test_longer_than_the_context_is_cropped(tiny):
    model, tok = tiny
    r = generate_text(model, tok, "hello world", max_new_tokens=30, seed=0)  # 41 tokens > block_size 16
    assert len(r.ids) == 41


def test_unknown_characters_become_unk_and_are_reported(tiny):
    model, tok = tiny
    r = generate_text(model, tok, "hello ZQZ", max_new_tokens=5)
    assert r.unknown == ["Q", "Z"]
    assert r.prompt == "hello <unk><unk><unk>"
    assert any("not in the model's vocabulary" in n and "<unk>" in n for n in r.notes)


def test_knobs_the_method_ignores_are_named(tiny):
    model, tok = tiny
    g = generate_text(model, tok, "hel", method="greedy", max_new_tokens=3, temperature=0.5, top_p=0.8)
    assert "greedy ignores temperature, top_p" in g.notes
    b = generate_text(model, tok, "hel", method="beam", max_new_tokens=3, top_k=4, repetition_penalty=1.5)
    assert "beam ignores top_k, repetition_penalty" in b.notes


@pytest.mark.parametrize("kwargs, message", [
    ({"top_p": 1.5}, "top_p must be in (0, 1]"),
    ({"top_p": 0.0}, "top_p must be in (0, 1]"),
    ({"top_k": -1}, "top_k must be an int >= 1, or 0/None for off"),
    ({"temperature": -0.1}, "temperature must be a number >= 0"),
    ({"temperature": float("nan")}, "temperature must be a number >= 0"),
    ({"repetition_penalty": 0}, "repetition_penalty must be a number > 0"),
    ({"max_new_tokens": 0}, "max_new_tokens (length) must be an int >= 1"),
    ({"num_beams": 0}, "num_beams must be an int >= 1"),
    ({"seed": -1}, "seed must be an int >= 0"),
    ({"method": "nucleus"}, "method must be one of ('greedy', 'sample', 'beam')"),
    ({"prompt": ""}, "the prompt is empty"),
])
def test_bad_settings_raise_a_clear_error(tiny, kwargs, message):
    model, tok = tiny
    args = {"prompt": "hello", "max_new_tokens": 3} | kwargs
    with pytest.raises(ValueError) as err:
        generate_text(model, tok, **args)
    assert message in str(err.value)


def test_the_book_gpt_is_reproducible():
    from lmlib.assets import load_book_gpt

    model, tok = load_book_gpt()
    a = generate_text(model, tok, "ROMEO:\n", max_new_tokens=8, seed=0)
    b = generate_text(model, tok, "ROMEO:\n", max_new_tokens=8, seed=0)
    assert a.text == b.text and len(a.ids) == 7 + 8 and a.unknown == []
    assert a.mean_log_prob < 0


# ----------------------------------------------------------------------------- the widget


@pytest.fixture
def widget(tiny):
    pytest.importorskip("ipywidgets")
    model, tok = tiny
    return sampler_widget(model, tok, prompt="hello", max_new_tokens=12)


def test_widget_has_every_knob(widget):
    assert set(widget.controls) == {"prompt", "method", "temperature", "top_k", "top_p", "repetition_penalty",
                                    "num_beams", "max_new_tokens", "seed"}
    assert list(widget.controls["method"].options) == list(METHODS)
    assert "Press Generate" in widget.output.value and widget.last_result is None


def test_the_button_generates_with_the_controls_values(widget, tiny):
    model, tok = tiny
    c = widget.controls
    c["prompt"].value, c["temperature"].value, c["top_k"].value, c["seed"].value = "the owl", 0.7, 4, 5
    c["top_p"].value, c["repetition_penalty"].value, c["max_new_tokens"].value = 0.9, 1.2, 15
    widget.button.click()
    r = widget.last_result
    expected = generate_text(model, tok, "the owl", max_new_tokens=15, temperature=0.7, top_k=4, top_p=0.9,
                             repetition_penalty=1.2, seed=5)
    assert r.text == expected.text and len(r.ids) == 7 + 15
    html = widget.output.value
    assert "<b>the owl</b>" in html and "mean log-probability per token" in html
    widget.button.click()  # the same settings again: the same text (seeded)
    assert widget.last_result.text == expected.text
    c["seed"].value = 6
    widget.button.click()
    assert widget.last_result.text != expected.text


def test_widget_methods_and_notes(widget, tiny):
    model, tok = tiny
    c = widget.controls
    c["method"].value, c["num_beams"].value, c["top_k"].value = "beam", 2, 3
    result = widget.generate()
    assert torch.equal(result.ids, generate_text(model, tok, "hello", method="beam", num_beams=2,
                                                 max_new_tokens=12).ids)
    assert "beam ignores top_k" in widget.output.value
    c["method"].value = "greedy"
    widget.button.click()
    assert widget.last_result.ids.tolist() == decoding.greedy(model, torch.tensor([tok.encode("hello")]), 12,
                                                              max_context=16)[0].tolist()


def test_widget_shows_errors_instead_of_crashing(widget):
    c = widget.controls
    c["prompt"].value = ""
    widget.button.click()
    assert widget.last_result is None and "the prompt is empty" in widget.output.value
    c["prompt"].value = "<hello>"  # < and > are not in the tiny vocabulary; the HTML must stay escaped
    widget.button.click()
    html = widget.output.value
    assert "not in the model&#x27;s vocabulary" in html or "not in the model's vocabulary" in html
    assert "<b>&lt;unk&gt;hello&lt;unk&gt;</b>" in html


def test_widget_generate_now_and_bad_method(tiny):
    pytest.importorskip("ipywidgets")
    model, tok = tiny
    w = sampler_widget(model, tok, prompt="owl", max_new_tokens=5, generate_now=True, seed=2)
    assert w.last_result is not None and w.last_result.text == generate_text(model, tok, "owl", max_new_tokens=5,
                                                                             seed=2).text
    with pytest.raises(ValueError, match="method must be one of"):
        sampler_widget(model, tok, method="top-p")
