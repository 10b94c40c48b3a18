"""The Gradio page of `ravar serve`: inputs on the left, the prediction on the right."""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ravar.app.callback import predict_page, video_duration
from ravar.app.extra import require_gradio
from ravar.errors import RavarError
from ravar.inference.predictor import Predictor

TIME_INFO = "seconds from the start; empty: the middle of the video"
INTRO = (
    "Upload a video or pick an example, describe one person by appearance or position "
    "(not by what they do), choose the keyframe time and press **Submit**. The page shows the "
    "keyframe with the person's box, their most probable AVA actions and the result as JSON "
    "(an entry of `predictions.json`)."
)


def short_path(path: str | None) -> str:
    """The last two parts of `path` (e.g. "r1/best"), enough to tell checkpoints apart."""
    if path is None:
        return "(in memory)"
    return "/".join(Path(path).parts[-2:])


def page_callbacks(predictor: Predictor, top_k: int = 5) -> tuple[Callable, Callable]:
    """(submit, on_video): the page's event handlers. `submit(video, text, time)` returns
    (keyframe image, {action: probability}, result dict) and turns a RavarError into a
    `gr.Error` with the same message; `on_video(video)` updates the time field's hint."""
    gr = require_gradio()

    def submit(video: str | None, text: str | None, time: float | None) -> tuple:
        try:
            page = predict_page(predictor, video, text, time, top_k=top_k)
        except RavarError as e:
            # the message is plain text; gr.Error would render it as HTML
            raise gr.Error(html.escape(str(e), quote=False), print_exception=False) from None
        return page.image, page.actions, page.entry

    def on_video(video: str | None) -> Any:
        duration = video_duration(video)
        if duration is None:
            return gr.update(info=TIME_INFO)
        return gr.update(info=f"the video is {duration:.2f} s long; {TIME_INFO}")

    return submit, on_video


API_NAME = "predict"  # the page's one API endpoint: /predict (video, sentence, time)


def build_page(
    predictor: Predictor, examples: Sequence[Path] = (), top_k: int = 5
) -> Any:  # a gradio.Blocks
    """The page (not launched) over `predictor`, offering the `examples` videos."""
    gr = require_gradio()
    model = predictor.describe()["model"]
    checkpoint = short_path(predictor.checkpoint)
    submit, on_video = page_callbacks(predictor, top_k)

    with gr.Blocks(title="ravar: who does what", analytics_enabled=False) as page:
        gr.Markdown("# ravar: what is this person doing?\n" + INTRO)
        gr.Markdown(
            f"Model `{model['name']}` ({model['family']}, {model['clip']['num_frames']} frames), "
            f"detector `{predictor.detector.kind}`, checkpoint `{checkpoint}`."
        )
        with gr.Row():
            with gr.Column():
                video = gr.Video(label="Video", sources=["upload"], elem_id="video")
                if examples:
                    gr.Examples([[str(p)] for p in examples], inputs=[video], label="Examples")
                text = gr.Textbox(
                    label="Sentence",
                    placeholder="the person in the blue shirt",
                    lines=1,
                    elem_id="text",
                )
                time = gr.Number(
                    label="Time (s)",
                    value=None,
                    placeholder="middle of the video",
                    info=TIME_INFO,
                    elem_id="time",
                )
                button = gr.Button("Submit", variant="primary", elem_id="submit")
            with gr.Column():
                image = gr.Image(
                    label="Keyframe", type="numpy", format="png", interactive=False, elem_id="image"
                )
                actions = gr.Label(label="Actions", num_top_classes=top_k, elem_id="actions")
                entry = gr.JSON(label="Result (predictions.json entry)", elem_id="result")
        # the time field's hint follows the video: a page detail, not an API endpoint
        video.change(on_video, inputs=video, outputs=time, api_visibility="private")
        # the button and Enter in the sentence box: one event, one endpoint
        gr.on(
            [button.click, text.submit],
            submit,
            inputs=[video, text, time],
            outputs=[image, actions, entry],
            api_name=API_NAME,
        )
    return page
