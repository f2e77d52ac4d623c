"""lmlib.ui.ranking and lmlib.preferences.ranking_store: the reader ranks K answers; valid rankings, a crash-safe file that
resumes, conversion for ranking_loss, the widget driven through its buttons, and the static page."""
import html
import json
import math
import warnings

import numpy as np
import pytest
import torch

import lmlib._io
from lmlib import preferences as P
from lmlib.ui.ranking import LETTERS, RankingWidget, ordinal, record_rater_session, static_ranking_html
from lmlib.preferences.ranking_store import (MAX_ANSWERS, MIN_ANSWERS, RankingBatch, RankingSession, RankingStore,
                                    RankingTask, check_ranks, places_to_ranks, ranking_batch, ranks_to_places)


def make_tasks(n: int, k: int = 3) -> list[RankingTask]:
    return [RankingTask(f"question {i}?", [f"answer {i}.{j}" for j in range(k)], id=f"q{i}") for i in range(n)]


def records(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# --------------------------------------------------------------------------- what a valid ranking is


def test_ranks_places_and_their_errors():
    assert check_ranks([2, 0, 1, 1]) == [2, 0, 1, 1]
    assert check_ranks(np.array([1, 0])) == [1, 0] and check_ranks([1.0, 0.0]) == [1, 0]
    assert places_to_ranks([1, 3, 1, 4]) == [2, 1, 2, 0]  # two answers tied first
    assert places_to_ranks([2, 1, 9]) == [1, 2, 0], "only the order of places matters"
    assert ranks_to_places([2, 1, 2, 0]) == [1, 3, 1, 4]
    for ranks in ([0, 1, 2], [3, 0, 2, 1, 2, 0]):
        assert places_to_ranks(ranks_to_places(ranks)) == ranks
    with pytest.raises(ValueError, match="got 2 ranks for 3 answers"):
        check_ranks([1, 0], k=3)
    with pytest.raises(ValueError, match=r"rank\(s\) \[2\] missing.*Did you mean \[2, 0, 1, 1\]"):
        check_ranks([3, 0, 1, 1])
    with pytest.raises(ValueError, match="all 3 answers have rank 0 .*can't tell"):
        check_ranks([0, 0, 0])
    with pytest.raises(ValueError, match="rank of answer 1 is 0.5: ranks must be whole numbers"):
        check_ranks([1, 0.5])
    with pytest.raises(ValueError, match="whole numbers"):
        check_ranks([1, float("nan")])
    with pytest.raises(ValueError, match="rank of answer 0 is -1"):
        check_ranks([-1, 0])
    with pytest.raises(ValueError, match="K = 1 answers; a ranking holds 2 to 9"):
        check_ranks([0])
    with pytest.raises(ValueError, match="K = 10 answers"):
        check_ranks(list(range(10)))
    with pytest.raises(ValueError, match=r"one row \(K,\)"):
        check_ranks(np.zeros((2, 2), dtype=int))
    with pytest.raises(TypeError, match="sequence of whole numbers"):
        check_ranks("10")
    with pytest.raises(ValueError, match="places must be whole numbers >= 1"):
        places_to_ranks([0, 1])
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd"]


def test_tasks_check_their_input():
    t = RankingTask("Who says hi?", ["A", "B"])
    assert t.turns == (("user", "Who says hi?"),) and t.k == 2 and t.prompt == "Who says hi?"
    assert RankingTask("Who says hi?", ("A", "B")).id == t.id, "the same content gets the same id"
    assert RankingTask("Who says hi?", ["B", "A"]).id != t.id
    assert (MIN_ANSWERS, MAX_ANSWERS) == (2, 9)
    RankingTask("q", ["a"] * 9)
    with pytest.raises(ValueError, match="K = 10 answers"):
        RankingTask("q", ["a"] * 10)
    with pytest.raises(ValueError, match="K = 1 answers"):
        RankingTask("q", ["a"])
    with pytest.raises(TypeError, match="one string"):
        RankingTask("q", "ab")
    with pytest.raises(TypeError, match="answer 1 is a int"):
        RankingTask("q", ["a", 3])
    with pytest.raises(ValueError, match="starting and ending with a user turn"):
        RankingTask([("user", "q"), ("assistant", "a")], ["a", "b"])
    with pytest.raises(ValueError, match="role in"):
        RankingTask([("system", "q")], ["a", "b"])
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        RankingTask("q", ["a", "b"], meta={"x": object()})
    # a Part III example: its turns, id and category
    from lmlib.rlhf.chat import Example, Turn
    ex = Example("follow_up/0001", "follow_up", (Turn("user", "A line as Romeo."), Turn("assistant", "O love!"),
                                                 Turn("user", "Shorter.")), "Love!")
    task = RankingTask.from_example(ex, ["Love!", "O!", "I will not."])
    assert task.turns == (("user", "A line as Romeo."), ("assistant", "O love!"), ("user", "Shorter."))
    assert task.id.startswith("follow_up/0001-") and task.meta == {"example_id": ex.id, "category": "follow_up"}
    assert RankingTask.from_example(ex, ["Love!", "O!"]).id != task.id, "new answers, new task"


# --------------------------------------------------------------------------- the file


def test_every_answer_is_on_disk_at_once_and_ties_and_skips_round_trip(tmp_path):
    path = tmp_path / "rankings.jsonl"
    tasks = make_tasks(4, k=4)
    s = RankingSession(tasks, path, rater="ada")
    assert s.next() is tasks[0] and s.progress == (0, 0, 4) and not path.exists()
    rec = s.rank("q0", [2, 0, 1, 1], seconds=3.5)  # answers 2 and 3 tied
    assert records(path) == [rec]
    assert rec["ranks"] == [2, 0, 1, 1] and rec["choice"] == "ranked" and rec["rater"] == "ada"
    assert rec["answers"] == list(tasks[0].answers) and rec["turns"] == [["user", "question 0?"]]
    assert rec["seconds"] == 3.5
    s.skip("q1")
    assert records(path)[-1]["choice"] == "cant_tell" and records(path)[-1]["ranks"] is None
    s.rank("q3", np.array([0, 1, 2, 3]))  # any task, in any order; numpy ranks are fine
    assert s.next() is tasks[2] and s.progress == (3, 1, 4)
    assert s.progress_text == "3 / 4 prompts done (1 can't tell)"
    again = RankingStore(path)  # read back from disk
    assert [(r["prompt_id"], r["choice"], r["ranks"]) for r in again.records()] == [
        ("q0", "ranked", [2, 0, 1, 1]), ("q1", "cant_tell", None), ("q3", "ranked", [0, 1, 2, 3])]
    batch = ranking_batch(path)
    assert batch.prompt_ids == ("q0", "q3"), "skipped prompts give no ranking"
    np.testing.assert_array_equal(batch.ranks, [[2, 0, 1, 1], [0, 1, 2, 3]])
    assert batch.raters == ("ada", "ada") and batch.answers[0] == tasks[0].answers
    with pytest.raises(ValueError, match="already answered .*back()"):
        s.rank("q0", [0, 1, 2, 3])
    with pytest.raises(KeyError, match="no prompt with id 'q9'"):
        s.skip("q9")
    with pytest.raises(ValueError, match="already has a record"):
        RankingStore(path).add(tasks[0], None)
    with pytest.raises(ValueError, match="may not override"):
        RankingStore(path).add(tasks[2], None, answers=["x"])
    assert len(records(path)) == 3, "refused answers write nothing"


def test_store_refuses_a_missing_folder_and_a_folder_as_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="folder .*nope does not exist"):
        RankingStore(tmp_path / "nope" / "r.jsonl")
    with pytest.raises(IsADirectoryError, match="not a file"):
        RankingStore(tmp_path)
    with pytest.raises(ValueError, match="rater must be a non-empty name"):
        RankingStore(tmp_path / "r.jsonl", rater="")
    assert not (tmp_path / "nope").exists()
    with pytest.raises(FileNotFoundError, match="no ranking file"):
        ranking_batch(tmp_path / "none.jsonl")


def test_a_crash_mid_write_loses_only_the_torn_line(tmp_path):
    path = tmp_path / "rankings.jsonl"
    tasks = make_tasks(3)
    s = RankingSession(tasks, path)
    s.rank("q0", [0, 2, 1])
    good = path.read_bytes()
    with open(path, "ab") as f:  # the kernel died half-way through the next line
        f.write(b'{"prompt_id": "q1", "choice": "ran')
    with pytest.warns(RuntimeWarning, match="torn last line .*line 2"):
        again = RankingSession(tasks, path)
    assert path.read_bytes() == good, "the torn line was cut off"
    assert (tmp_path / "rankings.jsonl.torn").read_bytes() == b'{"prompt_id": "q1", "choice": "ran\n'
    assert again.next() is tasks[1]
    again.skip("q1")  # the next answer starts on a clean line
    assert [r["prompt_id"] for r in records(path)] == ["q0", "q1"]
    # a complete last record whose newline never got written is kept
    path.write_bytes(path.read_bytes()[:-1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert RankingStore(path).done_ids() == {"q0", "q1"}
    assert path.read_bytes().endswith(b"}\n")


def test_a_failed_append_leaves_no_half_line(tmp_path, monkeypatch):
    path = tmp_path / "rankings.jsonl"
    tasks = make_tasks(2)
    s = RankingSession(tasks, path)
    s.rank("q0", [1, 0, 2])
    before = path.read_bytes()
    real = lmlib._io.write_all

    def half_then_fail(fd, data):
        real(fd, data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(lmlib._io, "write_all", half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        s.rank("q1", [0, 1, 2])
    monkeypatch.undo()
    assert path.read_bytes() == before, "the half-written record was truncated away"
    assert s.next() is tasks[1]
    s.rank("q1", [0, 1, 2])
    assert len(RankingStore(path)) == 2


def test_a_malformed_line_that_is_not_the_last_is_refused(tmp_path):
    path = tmp_path / "rankings.jsonl"
    tasks = make_tasks(3)
    s = RankingSession(tasks, path)
    s.rank("q0", [0, 2, 1])
    s.rank("q1", [0, 1, 2])
    lines = path.read_text().splitlines()
    path.write_text(lines[0].replace("[0, 2, 1]", "[0, 3, 1]") + "\n" + lines[1] + "\n")
    with pytest.raises(P.LabelFileError, match=r"rankings.jsonl, line 1: malformed ranking record: ranks \[0, 3, 1\]"):
        RankingStore(path)
    path.write_text("garbage\n" + lines[1] + "\n")
    with pytest.raises(P.LabelFileError, match="line 1: malformed ranking record: not valid JSON"):
        RankingSession(tasks, path)


# --------------------------------------------------------------------------- resume


def test_kernel_restart_resumes_at_the_first_unranked_prompt(tmp_path):
    path = tmp_path / "rankings.jsonl"
    tasks = [RankingTask(f"question {i}?", ["yes", "no", "perhaps"]) for i in range(5)]  # content ids
    w = RankingWidget(tasks, path)
    w.set_places([1, 2, 3])
    w.save()
    w.skip()
    del w  # the kernel dies: only the file is left
    rebuilt = [RankingTask(f"question {i}?", ["yes", "no", "perhaps"]) for i in range(5)]
    again = RankingWidget(rebuilt, path)
    assert again.task is rebuilt[2] and again.session.progress == (2, 1, 5)
    assert "2 / 5 prompts done (1 can't tell)" in html.unescape(again.progress_label.value)
    assert RankingSession(rebuilt[::-1], path).next() is rebuilt[4], "order is the tasks' order"
    # the same ids with other answers: the file belongs to other data
    with pytest.raises(ValueError, match="other answers"):
        RankingSession([RankingTask("question 0?", ["yes", "no", "perhaps"], id=rebuilt[0].id),
                        RankingTask("question 0?", ["yes", "no"], id=rebuilt[1].id)], path)


def test_session_errors_and_back(tmp_path):
    path = tmp_path / "rankings.jsonl"
    tasks = make_tasks(3)
    with pytest.raises(ValueError, match="no prompts to rank"):
        RankingSession([], path)
    with pytest.raises(ValueError, match=r"tasks\[0\] and tasks\[2\] have the same prompt id 'q0'"):
        RankingSession([tasks[0], tasks[1], tasks[0]], path)
    with pytest.raises(TypeError, match=r"tasks\[1\] must be a RankingTask"):
        RankingSession([tasks[0], "q1"], path)
    s = RankingSession(tasks, path)
    with pytest.raises(RuntimeError, match="no earlier answer"):
        s.back()
    with pytest.raises(ValueError, match="got 2 ranks for 3 answers"):
        s.rank("q0", [1, 0])
    s.rank("q0", [2, 1, 0])
    s.skip("q1")
    assert s.back() is tasks[1] and s.back() is tasks[0] and not s.can_go_back
    s.rank("q0", [0, 1, 2])  # replaces; the file keeps both lines
    assert s.current is tasks[2]
    assert [r["ranks"] for r in records(path)] == [[2, 1, 0], None, [0, 1, 2]]
    assert s.record_of("q0")["ranks"] == [0, 1, 2]
    np.testing.assert_array_equal(s.rankings().ranks, [[0, 1, 2]])
    assert not path.with_name("rankings.jsonl.torn").exists()
    assert not (tmp_path / "nothing").exists() and not path.is_dir()


# --------------------------------------------------------------------------- for ranking_loss


def test_rankings_are_what_ranking_loss_needs_by_hand(tmp_path):
    path = tmp_path / "rankings.jsonl"
    tasks = [RankingTask("p0", ["a", "b", "c"], id="p0"), RankingTask("p1", ["d", "e"], id="p1"),
             RankingTask("p2", ["f", "g"], id="p2")]
    s = RankingSession(tasks, path)
    s.rank("p0", [2, 0, 1])  # a > c > b
    s.skip("p2")
    s.rank("p1", [0, 1])  # e > d
    batch = s.rankings()
    assert batch.prompt_ids == ("p0", "p1") and len(batch) == 2
    np.testing.assert_array_equal(batch.mask, [[True, True, True], [True, True, False]])
    assert batch.ranks[0].tolist() == [2, 0, 1] and batch.ranks[1, :2].tolist() == [0, 1]
    assert np.isnan(batch.ranks[1, 2])
    assert batch.pairs() == [(0, 0, 1), (0, 0, 2), (0, 2, 1), (1, 1, 0)]
    assert [(batch.answers[b][i], batch.answers[b][j]) for b, i, j in batch.pairs()] == [
        ("a", "b"), ("a", "c"), ("c", "b"), ("e", "d")]
    scores = torch.tensor([[1.0, -1.0, 0.5], [0.2, 0.0, 99.0]])  # 99: padding, ignored
    loss, diag = P.ranking_loss(scores, batch.ranks, batch.mask)  # numpy arrays as they are

    def nls(x):  # -log sigmoid(x)
        return math.log1p(math.exp(-x))

    p0 = (nls(1.0 - -1.0) + nls(1.0 - 0.5) + nls(0.5 - -1.0)) / 3
    p1 = nls(0.0 - 0.2)
    assert loss.item() == pytest.approx((p0 + p1) / 2, rel=1e-6)
    assert diag["pairs"] == 4 and diag["accuracy"] == 0.75
    # forgetting the mask is an error, not a silent padding answer
    with pytest.raises(ValueError, match="non-finite"):
        P.ranking_loss(scores, torch.as_tensor(batch.ranks))
    # the reader's rankings plus synthetic ones made in memory
    synth_tasks = [RankingTask("p9", ["x", "y", "z", "w"], id="p9")]
    synth = RankingBatch.from_arrays(synth_tasks, np.array([[0, 3, 1, 2]]), rater="synthetic")
    both = ranking_batch(path) + synth
    assert both.prompt_ids == ("p0", "p1", "p9") and both.ranks.shape == (3, 4)
    assert both.raters == ("reader", "reader", "synthetic") and both.mask.sum() == 3 + 2 + 4
    loss_b, diag_b = P.ranking_loss(torch.zeros(3, 4), torch.as_tensor(both.ranks), torch.as_tensor(both.mask))
    assert loss_b.item() == pytest.approx(math.log(2)) and diag_b["pairs"] == 4 + 6
    assert both.pairs()[-6:] == [(2, i, j) for i, j in P.ranking_to_pairs(range(4), [0, 3, 1, 2])]
    with pytest.raises(ValueError, match="prompt 'p9': ranks .* not a valid ranking"):
        RankingBatch.from_arrays(synth_tasks, [[0, 3, 1, 1]])
    with pytest.raises(ValueError, match="1 tasks but 2 rows"):
        RankingBatch.from_arrays(synth_tasks, [[0, 1, 2, 3]] * 2)


# --------------------------------------------------------------------------- the widget


def test_widget_buttons_write_to_the_store(tmp_path):
    path = tmp_path / "rankings.jsonl"
    tasks = [RankingTask("Who says \"Hath not a Jew eyes\"?", ["Shylock.", "Portia.", "I know not.", "Shylock!"],
                         id="jew")] + make_tasks(2)
    w = RankingWidget(tasks, path, rater="ada")
    import ipywidgets as widgets
    assert isinstance(w.widget, widgets.VBox) and len(w.menus) == 4 and w.places == [0, 0, 0, 0]
    assert [m.description for m in w.menus] == ["A:", "B:", "C:", "D:"] and LETTERS[:4] == "ABCD"
    assert dict(w.menus[0].options)["1st (best)"] == 1 and len(w.menus[0].options) == 5
    assert "Hath not a Jew eyes" in w.prompt_box.value and w.back_button.disabled
    # a missing place: the status says which, nothing is written
    w.menus[0].value, w.menus[1].value, w.menus[3].value = 1, 3, 1
    w.save_button.click()
    assert "answer(s) C have no place yet" in w.status.value and not path.exists()
    # all tied: refused, with a pointer to can't tell
    w.set_places([2, 2, 2, 2])
    w.save_button.click()
    assert "all tied" in w.status.value and "can&#x27;t tell" in w.status.value and not path.exists()
    w.set_places([1, 3, 4, 1])  # the two Shylocks tied best
    w.save_button.click()
    assert records(path)[0]["ranks"] == [2, 1, 0, 2] and records(path)[0]["rater"] == "ada"
    assert w.task is tasks[1] and len(w.menus) == 3 and w.status.value == ""
    assert "1 / 3 prompts done (0 can't tell)" in html.unescape(w.progress_label.value)
    w.skip_button.click()
    assert records(path)[-1]["choice"] == "cant_tell" and w.task is tasks[2]
    w.back_button.click()  # back to the skipped one
    assert w.task is tasks[1] and "can't tell" in w.status.value
    w.back()  # back to the first: its places are filled in
    assert w.task is tasks[0] and w.places == [1, 3, 4, 1] and w.back_button.disabled
    w.menus[2].value = 3  # C and B tied third now
    assert w.save() ["ranks"] == [1, 0, 0, 1]
    assert w.task is tasks[2]
    w.set_places([3, 2, 1])
    w.save()
    assert w.done and w.task is None and w.save_button.disabled and w.skip_button.disabled
    assert "All 3 prompts are done" in w.status.value and str(path) in w.status.value
    w.save_button.click()  # a click that gets through anyway: the error shows, nothing is written
    assert "nothing left to rank" in w.status.value
    with pytest.raises(RuntimeError, match="all 3 prompts are done"):
        w.skip()
    assert [r["prompt_id"] for r in records(path)] == ["jew", "q0", "jew", "q1"]
    assert RankingStore(path).latest()["jew"]["ranks"] == [1, 0, 0, 1]
    with pytest.raises(ValueError, match="got 2 places for the 0 answers"):
        w.set_places([1, 2])
    bundle = w._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle and "3 / 3 prompts done" in bundle["text/plain"]
    assert RankingWidget(tasks, path).done, "a finished file opens finished"


def test_widget_bad_places_and_two_widgets_on_one_file(tmp_path):
    path = tmp_path / "rankings.jsonl"
    tasks = make_tasks(3)
    a = RankingWidget(tasks, path)
    with pytest.raises(ValueError, match="place 4 for answer A is not on its menu"):
        a.set_places([4, 1, 2])
    b = RankingWidget(tasks, path)  # a re-run cell, the old widget still on screen
    b.set_places([1, 2, 3])
    b.save()
    a.set_places([3, 2, 1])
    with pytest.raises(RuntimeError, match="answered meanwhile"):
        a.save()
    assert len(records(path)) == 1 and a.task is tasks[1]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        RankingWidget(tasks, tmp_path / "missing" / "r.jsonl")


# --------------------------------------------------------------------------- the static book


def test_static_html_shows_order_ties_and_skips_and_escapes(tmp_path):
    path = tmp_path / "rankings.jsonl"
    tasks = [RankingTask([("user", "Say <b>hi</b>"), ("assistant", "Hi."), ("user", "Shorter & louder.")],
                         ["Hi!", "<script>alert('x')</script>", "HI", ""], id="q<0>"),
             RankingTask("plain", ["a", "b"], id="q1"), RankingTask("third", ["c", "d"], id="q2")]
    s = RankingSession(tasks, path)
    s.rank("q<0>", [1, 2, 1, 0])  # the script answer best, two tied second, the empty one last
    s.skip("q1")
    page = static_ranking_html(path)
    assert "<script>" not in page and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "<b>hi</b>" not in page and "Say &lt;b&gt;hi&lt;/b&gt;" in page and "Shorter &amp; louder." in page
    assert "q&lt;0&gt;" in page and "(empty answer)" in page
    assert "2 prompts, 1 ranked, 1 can't tell" in page and "by <b>reader</b>" in page
    # the reader's order, best first, with places and ranks; ties marked
    first = page.index("alert"), page.index("Hi!"), page.index(">HI<"), page.index("(empty answer)")
    assert list(first) == sorted(first)
    assert page.count('class="ranking-tie"') == 2 and page.count("<b>2nd</b>") == 2 and "<b>4th</b>" in page
    assert "rank 2" in page and "rank 0" in page
    assert page.count('class="ranking-skip"') == 1 and "<b>Can't tell</b>" in page
    assert static_ranking_html(s) == page and static_ranking_html(RankingStore(path)) == page
    assert static_ranking_html(path, limit=1).count('class="ranking-example"') == 1
    with pytest.raises(ValueError, match="limit must be"):
        static_ranking_html(path, limit=0)
    with pytest.raises(ValueError, match="holds no answers"):
        static_ranking_html(RankingSession(tasks, tmp_path / "empty.jsonl"))
    with pytest.raises(FileNotFoundError, match="no recorded session"):
        static_ranking_html(tmp_path / "none.jsonl")


def test_the_synthetic_rater_records_a_real_session(tmp_path):
    from lmlib.rlhf.instructions import build_instructions
    from lmlib.rlhf.judge import judge_batch
    from lmlib.rlhf.rater import RankingRater

    examples = build_instructions(n_per_category=3)["train"][:4]
    tasks, scores = [], []
    for i, ex in enumerate(examples):
        answers = [ex.answer, "I know not; the play does not say.", examples[(i + 1) % 4].answer, "I will not do that."]
        tasks.append(RankingTask.from_example(ex, answers))
        scores.append([s.overall for s in judge_batch([ex] * 4, answers)])
    path = tmp_path / "synthetic.jsonl"
    session = record_rater_session(tasks, path, RankingRater(beta=10, epsilon=0.1, seed=3), scores)
    recs = records(path)
    assert len(recs) == 4 and session.done
    assert all(r["rater"] == "synthetic RankingRater(beta=10, epsilon=0.1, tie_tol=None)" for r in recs)
    expected = RankingRater(beta=10, epsilon=0.1, seed=3)  # the same rater, the same draws
    assert [r["ranks"] for r in recs] == [expected.rank(np.array(s)).tolist() for s in scores]
    assert recs[0]["meta"] == {"example_id": examples[0].id, "category": examples[0].category}
    # resumable: a second call ranks nothing twice
    record_rater_session(tasks, path, RankingRater(seed=4), scores)
    assert len(records(path)) == 4
    page = static_ranking_html(path)
    assert "synthetic RankingRater" in page and page.count('class="ranking-example"') == 4
    batch = ranking_batch(path)
    assert len(batch) == 4 and batch.ranks.shape == (4, 4) and batch.mask.all()
    loss, diag = P.ranking_loss(torch.as_tensor(np.array(scores)), torch.as_tensor(batch.ranks))
    assert diag["pairs"] == len(batch.pairs()) and torch.isfinite(loss)
    # a noise-free rater never ranks an answer with a lower gold score above a higher one
    exact = ranking_batch(record_rater_session(tasks, tmp_path / "exact.jsonl", RankingRater(beta=math.inf,
                                                                                            epsilon=0.0), scores))
    assert all(scores[b][i] >= scores[b][j] for b, i, j in exact.pairs()) and len(exact.pairs()) > 0
    # all tied by the rater (tie_tol): recorded as can't tell
    tied = record_rater_session(tasks[:1], tmp_path / "tied.jsonl", RankingRater(tie_tol=1.0), scores[:1], name="tie")
    assert tied.record_of(tasks[0].id)["choice"] == "cant_tell" and tied.store.records()[0]["rater"] == "tie"
    with pytest.raises(TypeError, match="rank\\(scores\\) method"):
        record_rater_session(tasks, path, object(), scores)
    with pytest.raises(ValueError, match="4 tasks but 3 rows"):
        record_rater_session(tasks, path, expected, scores[:3])
    with pytest.raises(ValueError, match="has 4 answers but its scores have shape \\(3,\\)"):
        record_rater_session(tasks, path, expected, [s[:3] for s in scores])


def test_docstrings_name_the_chapter():
    import lmlib.ui.ranking as m
    import lmlib.preferences.ranking_store as st

    for mod in (m, st):
        assert 'Chapter 14, "Reward models from rankings"' in mod.__doc__
        for name in mod.__all__:
            obj = getattr(mod, name)
            if callable(obj):
                assert 'Chapter 14, "Reward models from rankings"' in (obj.__doc__ or ""), name
