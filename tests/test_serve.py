"""`ravar serve`: the page's prediction, its errors, the CLI's errors, and the page itself driven
in headless Chromium like a person would."""

from __future__ import annotations

import io
import math
import os
import socket
import subprocess
import sys
import time as clock
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ravar.app.callback import NO_VIDEO, parse_time, predict_page
from ravar.cli import main
from ravar.data.frames import VideoReader
from ravar.errors import FrameError, PredictError
from ravar.inference.keyframes import frame_at
from ravar.inference.render import PALETTE, draw_results
from ravar.labels import action_classes

from builders import H, W, write_video

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
CLIP = "two_players.mp4"  # of the `footage` fixture: 426x240, 29.97 fps, 10.01 s
RED = PALETTE[0]  # the colour of the (only) sentence's box
ENTRY_KEYS = {"video", "time", "frame_index", "text", "box", "box_pixels", "actions",
              "probabilities", "detections", "clip_frames", "timings_ms"}  # fmt: skip
ACTION_NAMES = {c.name for c in action_classes()}


@pytest.fixture(scope="module")
def predictor(ckpt):
    import ravar

    return ravar.load(ckpt)


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """A 48x32 mp4 of 40 frames at 30 fps (1.33 s) with a white box on the left."""
    path = tmp_path_factory.mktemp("video") / "synth.mp4"
    write_video(path, 40, fps=30, box=[0.125, 0.2, 0.375, 0.9])
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ravar: error: "), err
    assert "Traceback" not in err
    return lines[0]


def assert_outline(png: np.ndarray, box_pixels: list[float], colour: tuple) -> None:
    """The middle of each side of the box outline (>= 2 px wide) has `colour`."""
    height, width = png.shape[:2]
    x1, y1, x2, y2 = (math.floor(v) for v in box_pixels)
    x2, y2 = min(x2, width), min(y2, height)
    ym, xm = (y1 + y2) // 2, (x1 + x2) // 2
    for x, y in ((x1 + 1, ym), (x2 - 1, ym), (xm, y1 + 1), (xm, y2 - 1)):
        assert tuple(png[y, x]) == colour, (x, y)


# --- the page's prediction, without a browser --------------------------------------------------


def test_page_prediction_matches_the_python_api(predictor, video):
    text = "the person on the left"
    page = predict_page(predictor, str(video), text, 0.5, top_k=4)
    (expected,) = predictor.predict(video, text, time=0.5, top_k=4)
    # the image: the keyframe at the video's size, drawn exactly as `ravar predict` draws it
    frame = VideoReader(video).read([frame_at(0.5, 30.0, 40)])[0]  # [H, W, 3]
    assert page.image.shape == (H, W, 3) and page.image.dtype == np.uint8
    assert np.array_equal(page.image, np.asarray(draw_results(frame, [expected])))
    assert_outline(page.image, expected.box_pixels, RED)
    # the bars: the top-k actions with their probabilities, most probable first
    assert list(page.actions) == [a.name for a in expected.actions]
    assert list(page.actions.values()) == [a.probability for a in expected.actions]
    assert set(page.actions) <= ACTION_NAMES and len(page.actions) == 4
    # the JSON: the predictions.json entry (timings are measured per call)
    assert set(page.entry) == ENTRY_KEYS
    want = expected.to_dict()
    differ = {"timings_ms", "video"}  # timings are measured per call; video: the file's name
    assert {k: v for k, v in page.entry.items() if k not in differ} == {
        k: v for k, v in want.items() if k not in differ
    }
    assert page.entry["time"] == 0.5 and page.entry["frame_index"] == 15
    assert page.entry["text"] == text and page.entry["video"] == "synth.mp4"


def test_an_empty_time_field_means_the_middle(predictor, video):
    assert parse_time(None) is None and parse_time("") is None and parse_time(" ") is None
    assert parse_time("2.5") == 2.5 and parse_time(3) == 3.0
    page = predict_page(predictor, str(video), "the person", "")
    assert page.entry["time"] == pytest.approx(40 / 30 / 2)
    assert page.entry["frame_index"] == 20


@pytest.mark.parametrize(
    ("video_given", "text", "time", "message"),
    [
        (False, "the man", 0.5, NO_VIDEO),
        (True, "", 0.5, "text: the sentence is empty or only whitespace"),
        (True, " \t", 0.5, "text: the sentence is empty or only whitespace"),
        (True, None, 0.5, "text: the sentence is empty or only whitespace"),
        (True, "the man", 99, "time: 99 s is beyond the end of the video (1.33 s long)"),
        (True, "the man", -1, "time: -1 s is negative (times count from the video's start)"),
        (True, "the man", "soon", "time: expected a number of seconds, got 'soon'"),
        (True, "the man", float("nan"), "time: expected a number of seconds, got nan"),
    ],
)
def test_page_errors_name_the_field(predictor, video, video_given, text, time, message):
    with pytest.raises(PredictError) as err:
        predict_page(predictor, str(video) if video_given else None, text, time)
    assert str(err.value) == message


def test_page_error_for_a_file_that_is_no_video(predictor, tmp_path):
    fake = tmp_path / "notes.mp4"
    fake.write_text("not a video\n")
    with pytest.raises(FrameError, match="notes.mp4: cannot open as a video"):
        predict_page(predictor, str(fake), "the man", None)


@pytest.mark.slow  # importing gradio takes ~5 s
def test_gradio_callbacks_show_errors_as_gr_error(predictor, video):
    gr = pytest.importorskip("gradio", reason="the 'app' extra (gradio) is not installed")
    from ravar.app.page import build_page, page_callbacks

    submit, on_video = page_callbacks(predictor, top_k=3)
    image, actions, entry = submit(str(video), "the person", 1.0)
    assert image.shape == (H, W, 3) and len(actions) == 3 and entry["time"] == 1.0
    with pytest.raises(gr.Error) as err:
        submit(str(video), "the person", 99)
    assert err.value.message == "time: 99 s is beyond the end of the video (1.33 s long)"
    with pytest.raises(gr.Error) as err:
        submit(None, "the person", None)
    assert err.value.message == NO_VIDEO
    assert "1.33 s long" in on_video(str(video))["info"]
    assert "s long" not in on_video(None)["info"]
    page = build_page(predictor, [video])
    assert isinstance(page, gr.Blocks) and not page.analytics_enabled
    labels = {getattr(b, "label", None) for b in page.blocks.values()}
    assert {"Video", "Examples", "Sentence", "Time (s)", "Keyframe", "Actions"} <= labels


# --- the CLI's errors, before any server starts -------------------------------------------------


def test_the_page_has_one_api_endpoint_without_duplicate_names(predictor, video):
    """The button and Enter in the sentence box are one event (/predict), not /submit and
    /submit_1; the time field's hint is not an endpoint."""
    pytest.importorskip("gradio")
    from ravar.app.page import API_NAME, build_page

    page = build_page(predictor, [video])
    info = page.get_api_info()
    assert sorted(info["named_endpoints"]) == [f"/{API_NAME}"] == ["/predict"]
    assert info["unnamed_endpoints"] == {}
    endpoint = info["named_endpoints"]["/predict"]
    assert [p["label"] for p in endpoint["parameters"]] == ["Video", "Sentence", "Time (s)"]
    names = [d["api_name"] for d in page.get_config_file()["dependencies"]]
    assert len(names) == len(set(names)) and not any(n.endswith("_1") for n in names)


def test_serve_without_gradio_says_how_to_install_it(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "gradio", None)  # `import gradio` raises ImportError
    rc = main(["serve", "--checkpoint", str(tmp_path / "none"), "--port", str(free_port())])
    line = one_error_line(capsys)
    assert rc == 1 and "pip install 'ravar[app]'" in line and "Gradio" in line


@pytest.fixture
def no_gradio_import(monkeypatch):
    """`ravar serve` finds the extra without importing it (the errors below come before any use
    of gradio, and the tests stay fast)."""
    from ravar.app import extra

    monkeypatch.setattr(extra, "require_gradio", lambda: None)


def test_serve_missing_checkpoint_is_one_line(no_gradio_import, capsys, tmp_path):
    rc = main(["serve", "--checkpoint", str(tmp_path / "none"), "--port", str(free_port())])
    line = one_error_line(capsys)
    assert rc == 1 and f"{tmp_path / 'none'}: no checkpoint there" in line


def test_serve_bad_examples_and_taken_port_are_one_line(no_gradio_import, ckpt, capsys, tmp_path):
    base = ["serve", "--checkpoint", str(ckpt)]
    assert main([*base, "--port", str(free_port()), "--examples", str(tmp_path / "nope")]) == 1
    assert f"--examples {tmp_path / 'nope'}: not a folder" in one_error_line(capsys)
    (tmp_path / "notes.txt").write_text("x")
    assert main([*base, "--port", str(free_port()), "--examples", str(tmp_path)]) == 1
    assert "no video files (.mp4" in one_error_line(capsys)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main([*base, "--port", str(port)]) == 1
    assert f"--host 127.0.0.1 --port {port}: cannot listen" in one_error_line(capsys)


def test_serve_launches_on_localhost_only(no_gradio_import, ckpt, monkeypatch, capsys):
    """The page is launched once, with the loaded checkpoint, on 127.0.0.1 and no public link."""
    from ravar.app import page as page_module

    calls: dict = {}

    class FakePage:
        def launch(self, **kwargs):
            calls["launch"] = kwargs

        def block_thread(self):
            calls["blocked"] = True

        def close(self):
            calls["closed"] = True

    def fake_build(predictor, examples, top_k):
        calls["build"] = (predictor.model_name, predictor.detector.kind, list(examples), top_k)
        return FakePage()

    monkeypatch.setattr(page_module, "build_page", fake_build)
    port = free_port()
    assert main(["serve", "--checkpoint", str(ckpt), "--port", str(port), "--top-k", "3"]) == 0
    assert calls["build"] == ("tiny", "hog", [], 3)
    launch = calls["launch"]
    assert launch["server_name"] == "127.0.0.1" and launch["server_port"] == port
    assert launch["share"] is False and launch["inbrowser"] is False
    assert calls["blocked"] and calls["closed"]
    out = capsys.readouterr().out
    assert f"ravar serve: http://127.0.0.1:{port}/ (model tiny, detector hog" in out
    assert "reachable from other machines" not in out
    assert main(["serve", "--checkpoint", str(ckpt), "--port", "70000"]) == 1
    assert "--port 70000: must be at most 65535" in one_error_line(capsys)


@pytest.mark.slow  # a fresh interpreter imports torch (~5 s)
def test_ravar_help_does_not_import_gradio():
    code = (
        "import sys; from ravar.cli import build_parser; p = build_parser(); "
        "p.parse_args(['serve', '--checkpoint', 'x']); "
        "assert 'gradio' not in sys.modules, 'gradio imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# --- the page in a browser ----------------------------------------------------------------------


@pytest.fixture
def server(ckpt, footage, tmp_path):
    """`ravar serve` in a subprocess on a free port, with the footage clips as examples; its URL."""
    pytest.importorskip("gradio", reason="the 'app' extra (gradio) is not installed")
    port = free_port()
    log = tmp_path / "serve.log"
    env = {**os.environ, "GRADIO_TEMP_DIR": str(tmp_path / "gradio")}
    argv = [sys.executable, "-m", "ravar", "serve", "--checkpoint", str(ckpt), "--port",
            str(port), "--examples", str(footage)]  # fmt: skip
    with log.open("w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = clock.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"ravar serve exited with {proc.returncode}:\n{log.read_text()}")
            if f"ravar serve: {url}" in log.read_text():  # printed once the server listens
                with urllib.request.urlopen(url, timeout=30) as r:
                    assert r.status == 200
                break
            if clock.monotonic() > deadline:
                pytest.fail(f"ravar serve did not answer within 180 s:\n{log.read_text()}")
            clock.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def browser():
    """Headless Chromium of the system (Debian's `chromium`); nothing is downloaded."""
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing (Debian package 'chromium'; `make test` installs it)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')"
    )
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.mark.slow
def test_the_page_in_a_browser(server, browser, predictor, footage, tmp_path):
    clip = footage / CLIP
    text, when = "the person in the blue shirt", 3.0
    (expected,) = predictor.predict(clip, text, time=when)  # the same checkpoint, in-process
    reader = VideoReader(clip)
    requests: list[str] = []
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.on("request", lambda r: requests.append(r.url))
    page.goto(server)

    # upload the clip, type the sentence, set the time, submit
    page.locator("#video input[type=file]").set_input_files(str(clip))
    page.get_by_text(f"the video is {reader.duration:.2f} s long").wait_for(timeout=60_000)
    page.get_by_label("Sentence").fill(text)
    page.get_by_label("Time (s)").fill(str(when))
    page.get_by_label("Time (s)").blur()  # the field's change event before the click
    page.get_by_role("button", name="Submit").click()
    image = page.locator("#image img")
    image.wait_for(timeout=120_000)
    first = expected.actions[0].name
    page.locator("#actions").get_by_text(first, exact=True).first.wait_for(timeout=30_000)

    # the image: the keyframe at the video's size with the box drawn where the model put it
    # (polled: on a loaded machine the page may first show an answer for the time field's
    # previous value, then update)
    frame = reader.read([expected.frame_index])[0]
    drawn = np.asarray(draw_results(frame, [expected]))  # [H, W, 3]
    deadline = clock.monotonic() + 60
    while True:
        src = image.get_attribute("src")
        assert src
        response = page.request.get(src)
        assert response.ok, src
        png = np.asarray(Image.open(io.BytesIO(response.body())).convert("RGB"))  # [H, W, 3]
        same = (png.shape == drawn.shape) and (png == drawn).all(-1).mean() > 0.99
        if same or clock.monotonic() > deadline:
            break
        clock.sleep(0.5)
    assert png.shape == (reader.height, reader.width, 3) == (240, 426, 3)
    assert_outline(png, expected.box_pixels, RED)
    assert same
    # the bars: the top actions by name, all of them AVA actions
    bars = page.locator("#actions").inner_text()
    for a in expected.actions:
        assert a.name in bars and a.name in ACTION_NAMES
    # the JSON of the result
    result = page.locator("#result").inner_text()
    for key in ("box_pixels", "probabilities", "clip_frames", text):
        assert key in result
    assert f"{expected.frame_index}" in result

    shot = Path(os.environ.get("RAVAR_SCREENSHOT") or tmp_path / "serve.png")
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot), full_page=True)
    assert Image.open(shot).size[0] == 1280

    # bad input: a message in the page, the same text as the Python API's error
    page.get_by_label("Time (s)").fill("99")
    page.get_by_role("button", name="Submit").click()
    beyond = f"time: 99 s is beyond the end of the video ({reader.duration:.2f} s long)"
    page.get_by_text(beyond).first.wait_for(timeout=30_000)
    page.get_by_label("Time (s)").fill(str(when))
    page.get_by_label("Sentence").fill("   ")
    page.get_by_role("button", name="Submit").click()
    page.get_by_text("text: the sentence is empty or only whitespace").first.wait_for(
        timeout=30_000
    )
    assert "Traceback" not in page.content()

    # nothing but the local server was asked for anything
    outside = [u for u in requests if not u.startswith((server, "blob:", "data:"))]
    assert requests and not outside, outside
