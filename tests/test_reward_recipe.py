"""lmlib.rlhf.reward (Chapter 14) and recipes/reward_model.py at smoke-test size: the encoding of prompt + answer,
the partly frozen trunk equals the GPT it wraps and trains only its top, and the recipe writes results that
read_results reads, with the curve of pairs vs rankings at equal effort, the ceiling and the length bias."""
from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lmlib._io import sha256_file
from lmlib.assets import read_results
from lmlib.lm.gpt import GPT, GPTConfig
from lmlib.preferences import ranking_loss
from lmlib.rlhf.reward import FrozenPrefixTrunk, encode_answers, gpt_reward_model, right_pad, score_answers
from lmlib.rlhf.template import END, chat_tokenizer, format_prompt
from lmlib.text.tokenizer import CharTokenizer

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")


def _tok():
    return chat_tokenizer(CharTokenizer.train("abcdefghijklmnopqrstuvwxyz ?!.,'HY"))


def _gpt(tok, n_layer=2):
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=n_layer, n_head=2, n_embd=16))


def test_encode_answers_worked_example_and_cropping():
    tok = _tok()
    rows = encode_answers(tok, ["Hi", "Hi"], ["Yo", "Yo"], block_size=64, ended=[True, False])
    assert rows[0] == tok.encode(format_prompt("Hi") + "Yo") + [tok.stoi[END]]
    assert rows[1] == tok.encode(format_prompt("Hi") + "Yo")  # cut at the length limit: no <|end|>
    cropped = encode_answers(tok, ["Hi"], ["Yo"], block_size=3)[0]
    assert cropped == rows[0][-3:]  # the end survives, where the score is read
    with pytest.raises(ValueError, match="one answer each"):
        encode_answers(tok, ["Hi"], ["a", "b"], block_size=8)


def test_right_pad():
    ids, mask = right_pad([[1, 2, 3], [4]], pad_id=0)
    assert ids.tolist() == [[1, 2, 3], [4, 0, 0]] and mask.tolist() == [[True] * 3, [True, False, False]]
    with pytest.raises(ValueError):
        right_pad([], 0)


def test_frozen_prefix_trunk_equals_gpt_and_trains_only_its_top():
    tok = _tok()
    gpt = _gpt(tok, n_layer=3)
    ids = torch.randint(0, tok.vocab_size, (2, 10))
    rm = gpt_reward_model(gpt, trainable_layers=1)
    torch.testing.assert_close(rm.trunk.hidden_states(ids), gpt.hidden_states(ids))
    assert all(p.requires_grad for p in gpt.parameters())  # a copy: the original is untouched
    ids, mask = right_pad([[1, 2, 3, 4], [5, 6]], tok.stoi[END])
    assert torch.equal(rm(ids, mask), torch.zeros(2))  # the head starts at zero
    loss, _ = ranking_loss(rm(ids, mask).view(1, 2) + torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 0.0]]))
    loss.backward()
    trunk = rm.trunk.gpt
    assert all(p.grad is None for p in trunk.transformer.h[:2].parameters())
    assert all(p.grad is not None for p in trunk.transformer.h[2].parameters())
    assert rm.head.weight.grad is not None and trunk.transformer.wte.weight.grad is None
    full = FrozenPrefixTrunk(_gpt(tok), trainable_layers=2)
    assert all(p.requires_grad for p in full.parameters())
    with pytest.raises(ValueError, match="trainable_layers"):
        FrozenPrefixTrunk(_gpt(tok), trainable_layers=3)
    scores = score_answers(rm, [[1, 2], [3, 4, 5]], tok.stoi[END], batch_size=1)
    assert scores.shape == (2,) and rm.training


def _recipe():
    if "reward_recipe" not in sys.modules:
        spec = importlib.util.spec_from_file_location("reward_recipe", ROOT / "recipes" / "reward_model.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["reward_recipe"] = module
        spec.loader.exec_module(module)
    return sys.modules["reward_recipe"]


def test_label_stream_cycles_and_equal_effort():
    recipe = _recipe()
    r = recipe.RewardRecipe.quick()
    gold = np.random.default_rng(0).random((5, r.K))
    long = recipe.label_stream(gold, "pairs", 12, r, seed=3)
    assert sorted(p for p, _, _ in long[:10]) == sorted(list(range(5)) * 2)  # a shuffled cycle over the prompts
    assert all(len(i) == 2 and i[0] < i[1] for _, i, _ in long)
    ranks = recipe.label_stream(gold, "rank4", 3, r, seed=3)
    assert all(sorted(rk.tolist()) == list(range(r.K)) for _, _, rk in ranks)
    assert recipe.n_labels("rank4", 12, 4) * math.comb(4, 2) == recipe.n_labels("pairs", 12, 4) == 12


def test_recipe_quick_writes_results(tmp_path):
    before = torch.get_num_threads()
    try:
        returned = _recipe().main(["--quick", "--threads", "1", "--work", str(tmp_path / "w"),
                                   "--out", str(tmp_path / "a")])
    finally:
        torch.set_num_threads(before)
    res = read_results(tmp_path / "a" / "reward_results.json", "python recipes/reward_model.py")
    assert res["command"].startswith("python recipes/reward_model.py --quick") and res["machine"] and res["utc"]
    budgets = res["recipe"]["budgets"]
    for c in ("pairs", "rank4"):
        assert [p["budget"] for p in res["curve"][c]] == budgets
        assert all(0 <= p["agreement"] <= 1 and p["comparisons"] <= p["budget"] for p in res["curve"][c])
        assert res["scratch"][c]["budget"] == max(budgets)
    assert 0.5 <= res["heldout"]["rater_ceiling_on_pairs"] <= 1 and res["heldout"]["pairs"] > 0
    assert -1 <= res["runs"][f"sft/rank4/{budgets[-1]}"]["length_partial_corr"] <= 1
    assert set(res["goals"]) == {"agreement_at_least_0.8_within_2000_comparisons", "best_within_2000"}
    assert res == json.loads(json.dumps(returned))
    manifest = json.loads((tmp_path / "a" / "MANIFEST.json").read_text())
    assert manifest["reward_results.json"]["sha256"] == sha256_file(tmp_path / "a" / "reward_results.json")
    # a second run finds the candidates and the finished models in --work and trains nothing
    again = _recipe().main(["--quick", "--threads", "1", "--work", str(tmp_path / "w"), "--no-ship"])
    assert again["runs"] == returned["runs"]


SHIPPED = (ROOT / "lmlib" / "assets" / "reward_results.json").exists()


@pytest.mark.skipif(not SHIPPED, reason="no shipped results (python recipes/reward_model.py makes them)")
def test_shipped_results_match_the_manifest():
    """The shipped results are the manifest's, hold both curves at the same budgets, the ceiling and the
    from-scratch runs, and every agreement lies between 0 and 1."""
    from lmlib.assets import ASSETS, manifest_sha256

    res = read_results(ASSETS / "reward_results.json", "python recipes/reward_model.py")
    assert sha256_file(ASSETS / "reward_results.json") == manifest_sha256("reward_results.json")
    assert not res["quick"] and res["heldout"]["pairs"] > 100
    assert [p["budget"] for p in res["curve"]["pairs"]] == [p["budget"] for p in res["curve"]["rank4"]]
    assert all(0 <= p["agreement"] <= 1 for c in ("pairs", "rank4") for p in res["curve"][c])
    assert 0.5 < res["heldout"]["rater_ceiling_on_pairs"] <= 1
    assert {c: res["scratch"][c]["budget"] for c in ("pairs", "rank4")} == {c: max(res["recipe"]["budgets"])
                                                                           for c in ("pairs", "rank4")}
