"""`ravar serve` against large uploads and leftovers: an upload size limit (`--max-upload-mb`),
uploads kept in a folder of the server's own that is removed when it stops (Ctrl+C or kill),
and error messages that name an upload by its file name, never by the server's path."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time as clock
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from ravar.app.callback import predict_page
from ravar.app.uploads import FOLDER_PREFIX, GRADIO_TEMP_DIR, hide_upload_path
from ravar.cli import main
from ravar.errors import FrameError
from test_serve import free_port, one_error_line


class FakePage:
    """Stands for the Gradio page: records how it was launched and what the upload folder
    was meanwhile."""

    def __init__(self, calls: dict) -> None:
        self.calls = calls

    def launch(self, **kwargs):
        folder = Path(os.environ[GRADIO_TEMP_DIR])
        self.calls.update(launch=kwargs, folder=folder, existed=folder.is_dir())
        (folder / "upload.mp4").write_bytes(b"an upload")  # as Gradio would store one

    def block_thread(self):
        if self.calls.get("interrupt"):
            raise KeyboardInterrupt

    def close(self):
        self.calls["closed"] = True


@pytest.fixture
def fake_page(monkeypatch):
    from ravar.app import extra
    from ravar.app import page as page_module

    calls: dict = {}
    monkeypatch.setattr(extra, "require_gradio", lambda: None)
    monkeypatch.setattr(page_module, "build_page", lambda *a, **k: FakePage(calls))
    return calls


def test_upload_limit_and_own_upload_folder_removed_at_the_end(
    fake_page, ckpt, tmp_path, monkeypatch
):
    monkeypatch.setenv(GRADIO_TEMP_DIR, str(tmp_path))
    base = ["serve", "--checkpoint", str(ckpt), "--port", str(free_port())]
    assert main(base) == 0
    assert fake_page["launch"]["max_file_size"] == 200 * 1024 * 1024  # the default, in bytes
    folder = fake_page["folder"]
    assert fake_page["existed"] and folder.parent == tmp_path
    assert folder.name.startswith(FOLDER_PREFIX)
    assert not folder.exists() and list(tmp_path.iterdir()) == []  # upload removed
    assert os.environ[GRADIO_TEMP_DIR] == str(tmp_path)  # restored
    # a smaller limit; an interrupted server removes its uploads too
    fake_page["interrupt"] = True
    assert main([*base, "--max-upload-mb", "1.5"]) == 130
    assert fake_page["launch"]["max_file_size"] == int(1.5 * 1024 * 1024)
    assert fake_page["closed"] and not fake_page["folder"].exists()


def test_upload_folder_without_gradio_temp_dir(fake_page, ckpt, monkeypatch):
    monkeypatch.delenv(GRADIO_TEMP_DIR, raising=False)
    assert main(["serve", "--checkpoint", str(ckpt), "--port", str(free_port())]) == 0
    assert not fake_page["folder"].exists()
    assert GRADIO_TEMP_DIR not in os.environ


@pytest.mark.parametrize(
    ("value", "message"),
    [("0", "must be > 0, got '0'"), ("inf", "--max-upload-mb: must be a finite number, got inf")],
)
def test_bad_upload_limit_is_one_line(fake_page, ckpt, capsys, value, message):
    argv = ["serve", "--checkpoint", str(ckpt), "--port", str(free_port())]
    try:
        rc = main([*argv, "--max-upload-mb", value])
    except SystemExit as e:  # argparse's own error (exit 2)
        rc = e.code
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    else:
        assert rc == 1 and message in one_error_line(capsys)
    assert rc in (1, 2) and "launch" not in fake_page


def test_errors_name_an_upload_by_its_file_name(tmp_path):

    secret = tmp_path / "server" / "uploads" / uuid.uuid4().hex
    secret.mkdir(parents=True)
    fake = secret / "holiday.mp4"
    fake.write_text("not a video\n")
    with pytest.raises(FrameError) as err:
        predict_page(_NoModel(), str(fake), "the man", None)
    message = str(err.value)
    assert message.startswith("holiday.mp4: cannot open as a video")
    assert str(secret) not in message and "uploads" not in message
    assert (
        hide_upload_path(f"{fake.resolve()}: x; {fake}: y", fake)
        == "holiday.mp4: x; holiday.mp4: y"
    )


class _NoModel:
    """A predictor that only opens the video (the error comes before any model runs)."""

    def predict(self, video, text, **kwargs):
        from ravar.inference.inputs import open_video

        open_video(video)
        raise AssertionError("not a video, yet opened")


@pytest.mark.slow  # a fresh interpreter imports torch and gradio (~15 s)
def test_a_real_server_refuses_large_uploads_and_removes_its_folder_when_killed(ckpt, tmp_path):
    pytest.importorskip("gradio", reason="the 'app' extra (gradio) is not installed")
    port = free_port()
    parent = tmp_path / "gradio"
    parent.mkdir()
    log = tmp_path / "serve.log"
    env = {**os.environ, GRADIO_TEMP_DIR: str(parent)}
    argv = [sys.executable, "-m", "ravar", "serve", "--checkpoint", str(ckpt), "--port",
            str(port), "--max-upload-mb", "0.5"]  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    with log.open("w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    try:
        deadline = clock.monotonic() + 180
        while f"ravar serve: {url}" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert clock.monotonic() < deadline, log.read_text()
            clock.sleep(0.3)
        (folder,) = parent.iterdir()
        assert folder.name.startswith(FOLDER_PREFIX)
        assert _upload(url, 600 * 1024) == 413  # over 0.5 MiB: refused, and not kept
        assert not [p for p in folder.rglob("*") if p.is_file() and p.stat().st_size > 1024]
        assert _upload(url, 100 * 1024) == 200
        stored = [p for p in folder.rglob("*") if p.is_file() and p.stat().st_size == 100 * 1024]
        assert stored, "the upload was not stored in the server's folder"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()  # stopped like Ctrl+C
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert list(parent.iterdir()) == []  # the server's folder and the upload are gone


def _upload(url: str, size: int) -> int:
    """POST a `size`-byte file to the page's upload endpoint; the HTTP status."""
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="v.mp4"\r\n'
            "Content-Type: video/mp4\r\n\r\n"
        ).encode()
        + b"\0" * size
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        f"{url}gradio_api/upload",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_a_gradio_temp_dir_that_does_not_exist_yet_is_made(tmp_path, monkeypatch):
    from ravar.app.uploads import upload_folder

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "not" / "yet"))
    with upload_folder() as folder:
        assert folder.parent == tmp_path / "not" / "yet" and folder.is_dir()
    assert not folder.exists() and os.environ["GRADIO_TEMP_DIR"] == str(tmp_path / "not" / "yet")
