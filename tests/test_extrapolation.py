"""lmlib.experiments.extrapolation: result structure, the scoring worked by hand, reproducibility, the shipped JSON,
save/load, the plot, the recipe, clear errors."""
import importlib.util
import json
import math
from pathlib import Path

import matplotlib
import pytest
import torch
import torch.nn.functional as F

matplotlib.use("Agg")

from lmlib._io import sha256_bytes  # noqa: E402
from lmlib.text.corpus import CorpusSplit, split_text  # noqa: E402
from lmlib.experiments.extrapolation import (  # noqa: E402
    FULL,
    RESULTS_PATH,
    evaluate_lengths,
    load_extrapolation_results,
    plot_extrapolation,
    run_extrapolation,
    save_extrapolation_results,
)
from lmlib.lm.gpt import GPT, GPTConfig  # noqa: E402
from lmlib.lm.positional import ContextTooLongError  # noqa: E402

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


def small_corpus() -> CorpusSplit:
    g = torch.Generator().manual_seed(0)
    words = ["the ", "king ", "is ", "dead", ", ", "long ", "live ", "queen", ".\n\n", "my ", "lord "]
    text = "".join(words[i] for i in torch.randint(len(words), (3000,), generator=g).tolist())
    train, val = split_text(text)
    return CorpusSplit(text=text, train=train, val=val, sha256=sha256_bytes(text.encode()))


TINY = dict(train_len=8, eval_lens=(8, 16, 32), n_layer=1, n_head=2, n_embd=16, steps=4, batch_size=4,
            n_windows=6, corpus=small_corpus())


@pytest.fixture(scope="module")
def tiny_run():
    return run_extrapolation(("none", "learned", "alibi", "rope"), **TINY, seed=3)


def test_result_structure_and_learned_cannot_run_longer(tiny_run):
    r = tiny_run
    assert r["settings"]["eval_lens"] == [8, 16, 32] and r["settings"]["score_last"] == 2  # train_len // 4
    assert list(r["encodings"]) == ["none", "learned", "alibi", "rope"]
    for enc, e in r["encodings"].items():
        assert len(e["loss"]) == len(e["loss_all"]) == 3
        if enc == "learned":
            assert e["loss"][1:] == [None, None] and e["loss_all"][1:] == [None, None]
            assert len(e["position_loss"]) == 8  # its longest runnable length
        else:
            assert all(isinstance(v, float) and math.isfinite(v) for v in e["loss"] + e["loss_all"])
            assert len(e["position_loss"]) == 32
        assert e["params"] > 0 and e["train_seconds"] >= 0 and math.isfinite(e["train_loss"])
    json.dumps(r, allow_nan=False)  # JSON-ready


def test_scoring_is_the_last_predictions_of_the_longest_window(tiny_run):
    for enc in ("none", "alibi", "rope"):
        e = tiny_run["encodings"][enc]
        tail = e["position_loss"][-2:]  # score_last = 2
        assert e["loss"][-1] == pytest.approx(sum(tail) / 2, abs=1e-3)
        assert e["loss_all"][-1] == pytest.approx(sum(e["position_loss"]) / 32, abs=1e-3)


def test_evaluate_lengths_worked_by_hand():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=1, n_embd=8, pos_encoding="rope")).eval()
    val = torch.arange(40) % 5
    out = evaluate_lengths(model, val, (2, 4), n_windows=3, score_last=1)
    starts = torch.linspace(0, 40 - 4 - 1, 3).long()  # windows of Lmax + 1 = 5 tokens
    for j, L in enumerate((2, 4)):
        losses = []
        for s in starts.tolist():
            w = val[s : s + 5]
            x, y = w[5 - 1 - L : 4], w[5 - L :]  # the last L inputs and their targets
            ce = F.cross_entropy(model(x[None])[0][0], y, reduction="none")
            losses.append(ce)
        losses = torch.stack(losses)
        assert out["loss"][j] == pytest.approx(losses[:, -1].mean().item(), abs=1e-4)
        assert out["loss_all"][j] == pytest.approx(losses.mean().item(), abs=1e-4)


def test_a_seeded_run_is_reproducible(tiny_run):
    again = run_extrapolation(("none", "learned", "alibi", "rope"), **TINY, seed=3)
    for enc in tiny_run["encodings"]:
        a, b = tiny_run["encodings"][enc], again["encodings"][enc]
        assert a["loss"] == b["loss"] and a["position_loss"] == b["position_loss"] and a["train_loss"] == b["train_loss"]
    other = run_extrapolation(("alibi",), **TINY, seed=4)
    assert other["encodings"]["alibi"]["loss"] != tiny_run["encodings"]["alibi"]["loss"]


def test_save_load_roundtrip_and_plot(tiny_run, tmp_path):
    path = save_extrapolation_results({**tiny_run, "command": "test"}, tmp_path / "r.json")
    back = load_extrapolation_results(path)
    assert back["encodings"]["learned"]["loss"][1] is None and back["command"] == "test"
    fig = plot_extrapolation(back)
    assert len(fig.axes) == 2
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any("learned" in s and "cannot run longer" in s for s in labels)


def test_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="distinct names"):
        run_extrapolation(("alibi", "xpos"), **TINY)
    with pytest.raises(ValueError, match="increasing"):
        run_extrapolation(("alibi",), **{**TINY, "eval_lens": (16, 8)})
    with pytest.raises(ValueError, match="score_last"):
        run_extrapolation(("alibi",), **TINY, score_last=9)
    with pytest.raises(FileNotFoundError, match="recipes/pos_extrapolation.py"):
        load_extrapolation_results(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_extrapolation_results(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="not an extrapolation result"):
        save_extrapolation_results({"encodings": {}}, tmp_path / "x.json")
    model = GPT(GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=1, n_embd=8))
    with pytest.raises(ContextTooLongError):
        model(torch.zeros(1, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="validation text"):
        evaluate_lengths(model, torch.zeros(10, dtype=torch.long), (4, 8), n_windows=8, score_last=1)


def test_shipped_full_mode_result():
    r = load_extrapolation_results()
    s = r["settings"]
    assert s["train_len"] == FULL["train_len"] and s["eval_lens"] == list(FULL["eval_lens"])
    assert s["steps"] == FULL["steps"] and s["seed"] == 0
    assert set(r["encodings"]) == {"none", "learned", "sinusoidal", "alibi", "rope"}
    assert r["command"].startswith("python recipes/pos_extrapolation.py") and r["wall_seconds"] > 0
    learned = r["encodings"]["learned"]["loss"]
    assert learned[0] is not None and all(v is None for v in learned[1:])
    for enc in ("none", "sinusoidal", "alibi", "rope"):
        assert all(v is not None and 0 < v < 10 for v in r["encodings"][enc]["loss"])
    assert RESULTS_PATH.name == "pos_extrapolation.json"


def test_recipe_smoke(tmp_path):
    spec = importlib.util.spec_from_file_location("pos_extrapolation_recipe", ROOT / "recipes/pos_extrapolation.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    out = tmp_path / "ext.json"
    assert recipe.main(["--quick", "--steps", "1", "--encodings", "learned", "alibi", "--out", str(out)]) == 0
    r = load_extrapolation_results(out)
    assert r["settings"]["steps"] == 1 and "--quick" in r["command"] and list(r["encodings"]) == ["learned", "alibi"]
