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
from lmlib.assets import book_gpt_tokenizer, read_results
from lmlib.rlhf.instructions import build_instructions
from lmlib.lm.gpt import GPT, GPTConfig
from lmlib.preferences import ranking_loss
from lmlib.rlhf.rater import RankingRater
from lmlib.rlhf.reward import (FrozenPrefixTrunk, agreement_report, best_of_n_curve, best_of_n_kl, encode_answers,
                               fit_reward_model, gold_pairs, gpt_reward_model, label_stream, load_reward_model,
                               right_pad, save_reward_model, score_answers)
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


def test_reward_model_save_load_round_trip(tmp_path):
    tok = _tok()
    rm = gpt_reward_model(_gpt(tok, n_layer=3), trainable_layers=2)
    torch.nn.init.normal_(rm.head.weight)
    ids, mask = right_pad([[1, 2, 3, 4], [5, 6]], tok.stoi[END])
    digest = save_reward_model(rm, tmp_path / "rm.safetensors", meta={"note": "x"})
    back, meta = load_reward_model(tmp_path / "rm.safetensors", expected_sha256=digest)
    assert meta["note"] == "x" and back.trunk.trainable_layers == 2 and not back.training
    torch.testing.assert_close(back(ids, mask), rm.eval()(ids, mask))
    with pytest.raises(Exception, match="sha256|SHA-256|checksum"):
        load_reward_model(tmp_path / "rm.safetensors", expected_sha256="0" * 64)
    rm.trunk.gpt.save(tmp_path / "gpt.safetensors")
    with pytest.raises(Exception, match="not a reward model"):
        load_reward_model(tmp_path / "gpt.safetensors")
    with pytest.raises(TypeError, match="gpt_reward_model"):
        save_reward_model(torch.nn.Linear(2, 1), tmp_path / "x.safetensors")


def test_best_of_n_kl_and_curve_match_brute_force():
    import itertools

    np.testing.assert_allclose(best_of_n_kl([1, 2, 64]), [0.0, math.log(2) - 0.5, math.log(64) - 63 / 64])
    with pytest.raises(ValueError, match="n must be"):
        best_of_n_kl([0])
    rng = np.random.default_rng(0)
    gold = rng.normal(size=(6, 7))
    proxy = gold + rng.normal(size=(6, 7))
    got = best_of_n_curve(proxy, gold, [1, 2, 3, 7])
    for j, n in enumerate([1, 2, 3, 7]):  # the mean over every n-subset of each prompt's answers
        want = np.mean([np.mean([gold[p][list(s)][np.argmax(proxy[p][list(s)])]
                                 for s in itertools.combinations(range(7), n)]) for p in range(6)])
        assert got["gold"][j] == pytest.approx(want)
    assert got["proxy"][0] == pytest.approx(proxy.mean()) and got["proxy"][-1] == pytest.approx(proxy.max(1).mean())
    assert np.all(np.diff(got["proxy"]) > 0)  # the proxy score of best-of-n only grows with n
    with pytest.raises(ValueError, match="in \\[1, N"):
        best_of_n_curve(proxy, gold, [8])
    with pytest.raises(ValueError, match="same shape"):
        best_of_n_curve(proxy, gold[:, :3], [1])
    with pytest.raises(ValueError, match="finite"):
        best_of_n_curve(np.full((2, 2), np.nan), np.zeros((2, 2)), [1])


def _recipe():
    if "reward_recipe" not in sys.modules:
        spec = importlib.util.spec_from_file_location("reward_recipe", ROOT / "recipes" / "reward_model.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["reward_recipe"] = module
        spec.loader.exec_module(module)
    return sys.modules["reward_recipe"]


def test_label_stream_cycles_and_equal_effort():
    recipe = _recipe()
    gold = np.random.default_rng(0).random((5, 4))
    rater = RankingRater(10.0, 0.1, seed=1)
    long = label_stream(gold, 2, 12, rater, seed=3)
    assert sorted(p for p, _, _ in long[:10]) == sorted(list(range(5)) * 2)  # a shuffled cycle over the prompts
    assert all(len(i) == 2 and i[0] < i[1] for _, i, _ in long)
    ranks = label_stream(gold, 4, 3, rater, seed=3)
    assert all(sorted(rk.tolist()) == list(range(4)) for _, _, rk in ranks)
    assert recipe.n_labels("rank4", 12, 4) * math.comb(4, 2) == recipe.n_labels("pairs", 12, 4) == 12
    with pytest.raises(ValueError, match="k .answers per label"):
        label_stream(gold, 5, 3, rater)
    with pytest.raises(ValueError, match="finite"):
        label_stream(np.full((2, 3), np.nan), 2, 3, rater)


def test_gold_pairs_and_agreement_report():
    gold = np.array([[0.9, 0.5, 0.52], [0.1, 0.1, 0.8]])
    pairs = gold_pairs(gold, min_gap=0.05)
    assert sorted(map(tuple, pairs.tolist())) == [(0, 0, 1), (0, 0, 2), (1, 2, 0), (1, 2, 1)]
    length = np.array([[10, 40, 5], [3, 30, 20]])
    rep = agreement_report(gold, gold, length, pairs)  # a model that knows gold agrees everywhere
    assert rep["agreement"] == 1.0 and rep["n_pairs"] == 4
    rep = agreement_report(length.astype(float), gold, length, pairs)  # "longer is better"
    assert rep["agreement"] == 0.5 and rep["agreement_longer_worse"] == 0.0 and rep["length_partial_corr"] > 0.99
    with pytest.raises(ValueError, match="all be .P, K."):
        agreement_report(gold[:, :2], gold, length, pairs)
    with pytest.raises(ValueError, match="non-finite"):
        agreement_report(gold * np.nan, gold, length, pairs)


def test_fit_reward_model_learns_a_planted_preference():
    """Answers containing 'y' are better; a few dozen labels teach the head that, and bad labels are refused."""
    tok = _tok()
    rm = gpt_reward_model(_gpt(tok, n_layer=2), trainable_layers=1)
    answers = [["ya", "ab"], ["cd", "yy"], ["ye", "ee"], ["bb", "by"]]
    rows = [encode_answers(tok, ["Hi"] * 2, a, block_size=32) for a in answers]
    gold = np.array([[1.0 if "y" in x else 0.0 for x in a] for a in answers])
    labels = label_stream(gold, 2, 40, RankingRater(30.0, 0.0, seed=0), seed=0)
    fit = fit_reward_model(rm, rows, labels, tok.stoi[END], epochs=20, min_steps=60, seqs_per_step=8, lr=3e-3,
                           head_lr=1e-2)
    scores = score_answers(rm, [r for row in rows for r in row], tok.stoi[END]).view(4, 2)
    assert fit["steps"] >= 60 and np.mean(fit["history"]["accuracy"][-5:]) == 1.0
    assert ((scores[:, 0] > scores[:, 1]) == torch.tensor(gold[:, 0] > gold[:, 1])).all()
    with pytest.raises(ValueError, match="outside rows"):
        fit_reward_model(rm, rows, [(9, np.array([0, 1]), np.array([1, 0]))], tok.stoi[END])
    with pytest.raises(ValueError, match="no labels"):
        fit_reward_model(rm, rows, [], tok.stoi[END])


def test_recipe_quick_writes_results(tmp_path):
    before = torch.get_num_threads()
    try:
        returned = _recipe().main(["--quick", "--threads", "1", "--work", str(tmp_path / "w"),
                                   "--out", str(tmp_path / "a")])
    finally:
        torch.set_num_threads(before)
    res = read_results(tmp_path / "a" / "reward_results.json", "python recipes/reward_model.py")
    manifest = json.loads((tmp_path / "a" / "MANIFEST.json").read_text())
    assert res["command"].startswith("python recipes/reward_model.py --quick") and res["machine"] and res["utc"]
    budgets = res["recipe"]["budgets"]
    for c in ("pairs", "rank4"):
        assert [p["budget"] for p in res["curve"][c]] == budgets
        assert all(0 <= p["agreement"] <= 1 and p["comparisons"] <= p["budget"] for p in res["curve"][c])
        assert res["scratch"][c]["budget"] == max(budgets)
    assert 0.5 <= res["heldout"]["rater_ceiling_on_pairs"] <= 1 and res["heldout"]["pairs"] > 0
    assert -1 <= res["runs"][f"sft/rank4/{budgets[-1]}/s0"]["length_partial_corr"] <= 1
    assert set(res["goals"]) == {"agreement_at_least_0.8_within_2000_comparisons", "best_within_2000",
                                 "best_condition"}
    # the shipped reward model loads (checksum verified) and gives the held-out scores the results record
    model, meta = load_reward_model(tmp_path / "a" / "reward_gpt.safetensors",
                                    expected_sha256=manifest["reward_gpt.safetensors"]["sha256"])
    assert meta["run"] == res["shipped"]["run"] == f"sft/rank4/{budgets[-1]}/s0"
    tok = book_gpt_tokenizer(meta)
    held = res["heldout_candidates"]
    data = {e.id: e for e in build_instructions(seed=0)["val"]}
    prompts = [data[i] for i in res["heldout"]["ids"]]
    rows = [row for e, answers in zip(prompts, held["answers"]) for row in
            encode_answers(tok, [e] * len(answers), answers, model.trunk.gpt.config.block_size)]
    assert len(rows) == np.size(res["shipped"]["heldout_reward"])
    assert res == json.loads(json.dumps(returned))
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


def _best_of_n():
    if "best_of_n_recipe" not in sys.modules:
        spec = importlib.util.spec_from_file_location("best_of_n_recipe", ROOT / "recipes" / "best_of_n.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["best_of_n_recipe"] = module
        spec.loader.exec_module(module)
    return sys.modules["best_of_n_recipe"]


def test_best_of_n_recipe_quick(tmp_path):
    """The best-of-n recipe on a reward model made by the reward recipe's smoke test: curves over n = 1..N with
    the exact KL, the proxy rising with n, the oracle above the proxy's choice, and a resumed run reusing samples."""
    before = torch.get_num_threads()
    try:
        _recipe().main(["--quick", "--threads", "1", "--work", str(tmp_path / "w"), "--no-ship"])
        rm = tmp_path / "w" / "quick_reward_gpt.safetensors"
        res = _best_of_n().main(["--quick", "--threads", "1", "--reward", str(rm), "--work", str(tmp_path / "b"),
                                 "--out", str(tmp_path / "a")])
        again = _best_of_n().main(["--quick", "--threads", "1", "--reward", str(rm), "--work", str(tmp_path / "b"),
                                   "--no-ship"])
    finally:
        torch.set_num_threads(before)
    N = res["recipe"]["N"]
    assert res["n"] == list(range(1, N + 1)) and len(res["gold"]) == len(res["proxy"]) == N
    np.testing.assert_allclose(res["kl"], best_of_n_kl(np.arange(1, N + 1)), atol=1e-5)
    assert all(b >= a - 1e-9 for a, b in zip(res["proxy"], res["proxy"][1:]))
    assert all(o >= g - 1e-6 for o, g in zip(res["oracle_gold"], res["gold"]))  # gold picks best by gold
    assert res["oracle_gold"][0] == pytest.approx(res["gold"][0], abs=1e-6)  # n = 1: no choice at all
    assert len(res["prompts"]) == 7 * res["recipe"]["per_category"]
    assert again["gold"] == res["gold"] and again["samples_seconds"] == res["samples_seconds"]  # from the cache
    read_results(tmp_path / "a" / "best_of_n_results.json", "python recipes/best_of_n.py")


@pytest.mark.skipif(not SHIPPED, reason="no shipped results (python recipes/reward_model.py makes them)")
def test_shipped_reward_model_reproduces_its_recorded_scores():
    """The shipped reward model loads (checksums verified) and scores held-out answers as the recipe recorded;
    the shipped best-of-n results are the manifest's and use this very reward model."""
    from lmlib.assets import ASSETS, load_reward_gpt, manifest_sha256

    res = read_results(ASSETS / "reward_results.json", "python recipes/reward_model.py")
    model, tok = load_reward_gpt()
    held, ids = res["heldout_candidates"], res["heldout"]["ids"]
    val = {e.id: e for e in build_instructions(seed=0)["val"]}
    rows = [row for p in (0, 1) for row in encode_answers(tok, [val[ids[p]]] * len(held["answers"][p]),
                                                          held["answers"][p], model.trunk.gpt.config.block_size,
                                                          held["ended"][p])]
    got = score_answers(model, rows, tok.stoi[END]).numpy().reshape(2, -1)
    np.testing.assert_allclose(got, np.array(res["shipped"]["heldout_reward"][:2]), atol=1e-4)
    bon = read_results(ASSETS / "best_of_n_results.json", "python recipes/best_of_n.py")
    assert sha256_file(ASSETS / "best_of_n_results.json") == manifest_sha256("best_of_n_results.json")
    assert bon["reward_gpt_sha256"] == manifest_sha256("reward_gpt.safetensors") and not bon["quick"]
    np.testing.assert_allclose(bon["kl"], best_of_n_kl(np.array(bon["n"])), atol=1e-5)
