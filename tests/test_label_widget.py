"""lmlib.ui.labeling: the reader-as-rater widget, driven through its callbacks (no browser needed)."""
import json

import imageio.v2 as imageio
import numpy as np
import pytest

from lmlib import preferences as P
from lmlib.ui.labeling import BUTTON_TEXT, KEYS, LabelingWidget, default_render, encode_mp4, static_example_html

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 16  # enough for the widget, which only sniffs the header


def clip(seed: int, frames: bool = False, L: int = 8) -> P.Segment:
    """A tiny segment: (L, 2) features, and optionally L frames of 16x16 RGB."""
    rng = np.random.default_rng(seed)
    meta = {"frames": rng.integers(0, 256, size=(L, 16, 16, 3), dtype=np.uint8)} if frames else {"text": f"clip {seed}"}
    return P.Segment(rng.normal(size=(L, 2)), meta=meta)


def make_pairs(n: int, frames: bool = False) -> list[P.PreferencePair]:
    return [P.PreferencePair(clip(2 * i, frames), clip(2 * i + 1, frames)) for i in range(n)]


def png_render(segment: P.Segment) -> bytes:
    return PNG


def records(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# --------------------------------------------------------------------------- media


def test_encode_mp4_reads_back_with_every_frame(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, size=(8, 16, 16, 3), dtype=np.uint8)
    data = encode_mp4(frames, fps=10)
    assert data[4:8] == b"ftyp"
    (tmp_path / "a.mp4").write_bytes(data)
    back = imageio.mimread(tmp_path / "a.mp4")
    assert len(back) == 8 and back[0].shape == (16, 16, 3)
    # grey and odd-sized frames: padded by one pixel to even sizes (H.264 needs them)
    grey = np.full((5, 9, 15), 200, dtype=np.uint8)
    (tmp_path / "b.mp4").write_bytes(encode_mp4(grey))
    back = imageio.mimread(tmp_path / "b.mp4")
    assert len(back) == 5 and back[0].shape == (10, 16, 3)
    assert abs(float(back[2].mean()) - 200) < 3, "the picture survives the lossy encoding"


def test_encode_mp4_errors_name_the_problem():
    with pytest.raises(TypeError, match="uint8"):
        encode_mp4(np.zeros((4, 8, 8, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(L, H, W, 3\)"):
        encode_mp4(np.zeros((4, 8, 8, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="at least one frame"):
        encode_mp4(np.zeros((0, 8, 8, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="fps"):
        encode_mp4(np.zeros((2, 8, 8, 3), dtype=np.uint8), fps=0)


def test_default_render():
    assert default_render(clip(3)) == "clip 3"
    assert default_render(clip(3, frames=True))[4:8] == b"ftyp"
    with pytest.raises(ValueError, match="render="):
        default_render(P.Segment(np.zeros((3, 2))))


# --------------------------------------------------------------------------- the callbacks


def test_every_answer_is_on_disk_at_once(tmp_path):
    path = tmp_path / "labels.jsonl"
    pairs = make_pairs(5)
    w = LabelingWidget(pairs, path, render=png_render, rater="ada")
    assert w.current_pair is pairs[0] and w.progress == (0, 5) and not path.exists()
    assert w.progress_text == "0 / 5 labelled (0 can't tell)"
    rec = w.answer("left")
    assert rec["pair_id"] == pairs[0].id and rec["seconds"] >= 0
    assert records(path) == [rec] and records(path)[0]["rater"] == "ada"
    assert w.current_pair is pairs[1] and w.progress == (1, 5)
    w.buttons["right"].click()  # the button calls answer("right")
    assert w.on_key("X") == "cant_tell"  # keys are case-blind
    assert [(r["pair_id"], r["choice"]) for r in records(path)] == [
        (pairs[0].id, "left"), (pairs[1].id, "right"), (pairs[2].id, "cant_tell")]
    assert w.progress_text == "3 / 5 labelled (1 can't tell)"
    assert "3 / 5 labelled" in w.progress_label.value
    with pytest.raises(ValueError, match="choice must be one of"):
        w.answer("both")
    assert len(records(path)) == 3


def test_keyboard_box_and_unknown_keys(tmp_path):
    path = tmp_path / "labels.jsonl"
    pairs = make_pairs(4)
    w = LabelingWidget(pairs, path, render=png_render)
    assert set(KEYS.values()) == set(P.CHOICES) | {"back"}
    w.keys.value = "s"  # what the browser sends when the reader presses s in the key box
    assert w.keys.value == "", "the box is emptied for the next key"
    assert records(path)[-1]["choice"] == "equal"
    w.keys.value = "ad"  # two keys arrived at once: only the last one counts
    assert [r["choice"] for r in records(path)] == ["equal", "right"]
    assert w.on_key("q") is None and w.on_key("") is None
    w.keys.value = "7"
    assert "does nothing" in w.status.value and "<b>a</b> = left is better" in w.status.value
    assert len(records(path)) == 2 and w.current_pair is pairs[2]


def test_kernel_restart_resumes_where_labelling_stopped(tmp_path):
    path = tmp_path / "labels.jsonl"
    pairs = make_pairs(6)
    w = LabelingWidget(pairs, path, render=png_render)
    w.answer("left")
    w.answer("equal")
    del w  # the kernel dies: only the file is left
    again = LabelingWidget(pairs, P.LabelStore(path), render=png_render)
    assert again.current_pair is pairs[2] and again.progress == (2, 6)
    # pairs rebuilt from the same data get the same content ids, in any order
    rebuilt = make_pairs(6)[::-1]
    assert LabelingWidget(rebuilt, path, render=png_render).current_pair is rebuilt[0]
    third = LabelingWidget(rebuilt[:4], path, render=png_render)  # the four pairs nobody answered yet
    assert third.progress == (0, 4)


def test_done_disables_buttons_and_refuses_more_answers(tmp_path):
    path = tmp_path / "labels.jsonl"
    pairs = make_pairs(2)
    w = LabelingWidget(pairs, path, render=png_render)
    w.answer("right")
    w.on_key("d")
    assert w.done and w.current_pair is None and w.progress == (2, 2)
    assert all(b.disabled for b in w.buttons.values()) and not w.back_button.disabled
    assert "All 2 pairs are labelled" in w.status.value and str(path) in w.status.value
    with pytest.raises(RuntimeError, match="all 2 pairs are labelled"):
        w.answer("left")
    assert w.on_key("a") is None
    w.buttons["left"].click()  # a click that gets through anyway: the error shows, nothing is written
    assert "nothing left to answer" in w.status.value
    assert len(records(path)) == 2
    assert LabelingWidget(pairs, path, render=png_render).done, "a finished file opens finished"


def test_back_changes_an_earlier_answer(tmp_path):
    path = tmp_path / "labels.jsonl"
    pairs = make_pairs(4)
    w = LabelingWidget(pairs, path, render=png_render)
    assert w.back_button.disabled
    with pytest.raises(RuntimeError, match="no earlier answer"):
        w.back()
    w.answer("left")
    w.answer("right")
    assert w.on_key("u") == "back" and w.current_pair is pairs[1]
    assert "you answered <b>Right is better</b>" in w.status.value
    assert w.back() is pairs[0] and w.back_button.disabled
    w.answer("equal")  # replaces the first answer; the file keeps both, the latest counts
    assert w.current_pair is pairs[2]
    assert [r["choice"] for r in records(path)] == ["left", "right", "equal"]
    assert P.LabelStore(path).choices() == {pairs[0].id: "equal", pairs[1].id: "right"}
    assert w.progress == (2, 4)
    # back also works after a restart: the file says what was answered last
    again = LabelingWidget(pairs, path, render=png_render)
    assert again.back() is pairs[1]


def test_two_widgets_on_one_file_never_double_label(tmp_path):
    path = tmp_path / "labels.jsonl"
    pairs = make_pairs(3)
    a = LabelingWidget(pairs, path, render=png_render)
    b = LabelingWidget(pairs, path, render=png_render)  # a re-run cell, the old widget still on screen
    b.answer("left")
    with pytest.raises(RuntimeError, match="answered meanwhile"):
        a.answer("right")
    assert len(records(path)) == 1 and a.current_pair is pairs[1]


def test_clips_are_shown_as_video_and_rendered_once(tmp_path):
    calls = []

    def counting_render(seg):
        calls.append(seg)
        return default_render(seg)

    pairs = make_pairs(2, frames=True)
    w = LabelingWidget(pairs, tmp_path / "l.jsonl", render=counting_render)
    left = w.left_box.children[-1]
    assert type(left).__name__ == "Video" and left.format == "mp4" and left.loop and left.autoplay
    assert bytes(left.value)[4:8] == b"ftyp"
    w.answer("left")
    w.back()
    assert len(calls) == 4, "each segment is encoded once and cached"
    bundle = w._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle and "1 / 2 labelled" in bundle["text/plain"]
    text = LabelingWidget(make_pairs(1), tmp_path / "t.jsonl")  # default_render of meta["text"]
    assert "clip 0" in text.left_box.children[-1].value


def test_bad_input_errors_are_clear(tmp_path):
    path = tmp_path / "labels.jsonl"
    pairs = make_pairs(3)
    with pytest.raises(ValueError, match="no pairs to label"):
        LabelingWidget([], path)
    with pytest.raises(ValueError, match=r"pairs\[0\] and pairs\[2\] have the same id"):
        LabelingWidget([pairs[0], pairs[1], P.PreferencePair(pairs[0].left, pairs[0].right)], path)
    with pytest.raises(TypeError, match=r"pairs\[1\] must be a PreferencePair"):
        LabelingWidget([pairs[0], "pair"], path)
    with pytest.raises(TypeError, match="render must be a function"):
        LabelingWidget(pairs, path, render="mp4")
    with pytest.raises(TypeError, match="must return bytes .* got int"):
        LabelingWidget(pairs, path, render=lambda seg: 3)
    with pytest.raises(ValueError, match="not an mp4/webm video nor a png/gif/jpeg"):
        LabelingWidget(pairs, path, render=lambda seg: b"hello there, bytes")
    with pytest.raises(ValueError, match="meta\\['frames'\\]"):
        LabelingWidget([P.PreferencePair(P.Segment(np.zeros((2, 2))), P.Segment(np.ones((2, 2))))], path)
    assert not path.exists(), "nothing was written"


def test_malformed_label_file_is_reported_through_the_widget(tmp_path):
    path = tmp_path / "labels.jsonl"
    pairs = make_pairs(3)
    LabelingWidget(pairs, path, render=png_render).answer("left")
    path.write_text(path.read_text() + "garbage\n" + path.read_text().replace(pairs[0].id, pairs[1].id))
    with pytest.raises(P.LabelFileError, match="line 2: malformed"):
        LabelingWidget(pairs, path, render=png_render)


# --------------------------------------------------------------------------- the static book


def test_static_example_html_shows_each_pair_and_its_answer(tmp_path):
    pairs = make_pairs(3, frames=True)
    mp4 = default_render(pairs[0].left)  # one real video, shown for every clip: encoding six would be slow

    def render(seg):
        return mp4

    page = static_example_html(pairs, ["left", "equal", "cant_tell"], render=render)
    assert page.count("<video") == 6 and page.count("data:video/mp4;base64,") == 6
    assert page.count('class="label-choice"') == 3
    for choice in ("left", "equal", "cant_tell"):
        assert f'class="label-choice">{BUTTON_TEXT[choice]}<' in page.replace("&#x27;", "'")
    assert page.count("3px solid #2a2") == 1 + 2 + 0, "the preferred clip is framed; both when equal"
    # the same page from a mapping or a label file
    store = P.LabelStore(tmp_path / "l.jsonl")
    for p, c in zip(pairs, ["left", "equal", "cant_tell"]):
        store.add(p.id, c)
    assert static_example_html(pairs, store, render=render) == page
    assert static_example_html(pairs, store.choices(), render=render) == page
    images = static_example_html(pairs[:1], ["right"], render=png_render)
    assert images.count("data:image/png;base64,") == 2 and "<video" not in images
    texts = static_example_html(make_pairs(2), ["left", "right"])
    assert "clip 0" in texts and "clip 3" in texts
    with pytest.raises(ValueError, match="2 pairs but 1 labels"):
        static_example_html(make_pairs(2), ["left"])
    with pytest.raises(ValueError, match="must be among"):
        static_example_html(make_pairs(1), ["up"])
    with pytest.raises(ValueError, match="no label for pair"):
        static_example_html(make_pairs(1), {})


def test_docstrings_name_the_chapter():
    import lmlib.ui.labeling as m

    for name in m.__all__:
        obj = getattr(m, name)
        if callable(obj):
            assert 'Chapter 11, "Learning rewards from human preferences"' in (obj.__doc__ or ""), name
