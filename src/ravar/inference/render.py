"""Pictures of predictions at the video's original resolution: the keyframe with each
sentence's box, sentence and top actions (PNG), and optionally the clip as an annotated MP4."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ravar.data.frames import VideoReader
from ravar.inference.results import KeyframeResult

# one colour per sentence (RGB), in the order the sentences were given
PALETTE = (
    (255, 48, 48),
    (48, 220, 48),
    (64, 128, 255),
    (255, 200, 0),
    (220, 64, 255),
    (0, 220, 220),
)
DETECTION_COLOUR = (200, 200, 200)
TEXT_ACTIONS = 3  # actions written in each caption
CAPTION_SHARE = 0.4  # captions take at most this fraction of the frame's height (one line at least)


def colour_of(j: int) -> tuple[int, int, int]:
    """Drawing colour of the j-th sentence."""
    return PALETTE[j % len(PALETTE)]


def line_width(width: int, height: int) -> int:
    """Outline width in pixels of the boxes drawn on a `width` x `height` frame."""
    return max(2, round(min(width, height) / 100))


def outline_rect(box_pixels: Sequence[float], width: int, height: int) -> list[int]:
    """Integer corners [x1, y1, x2, y2] of a pixel box's outline, inside the frame."""
    x1, y1, x2, y2 = (int(round(v)) for v in box_pixels)
    x1, x2 = min(max(x1, 0), width - 1), min(max(x2 - 1, 0), width - 1)
    y1, y2 = min(max(y1, 0), height - 1), min(max(y2 - 1, 0), height - 1)
    return [x1, y1, max(x1, x2), max(y1, y2)]


def _font(height: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=max(9, round(height / 22)))


def _caption(result: KeyframeResult, chars: int, max_lines: int) -> list[str]:
    """The sentence (up to 2 lines), then the top actions, in at most `max_lines` lines."""
    sentence = textwrap.wrap(f'"{result.text}"', width=chars)[:2] or ['""']
    acts = ", ".join(f"{a.name} {a.probability:.2f}" for a in result.actions[:TEXT_ACTIONS])
    actions = textwrap.wrap(acts, width=chars)[:3]
    keep = max(1, min(len(sentence), max_lines - 1))
    return sentence[:keep] + actions[: max(0, max_lines - keep)]


def draw_results(frame: np.ndarray, results: Sequence[KeyframeResult]) -> Image.Image:
    """`frame` [H, W, 3] uint8 with, per result (colour by position), its box outline and a
    caption (sentence and top actions, stacked from the top-left corner, shortened on small
    frames), and the detections as thin grey boxes; the image keeps the frame's size."""
    height, width = frame.shape[:2]
    lw = line_width(width, height)
    font = _font(height)
    chars = max(10, int(width * 0.9 / max(1.0, font.getlength("abcdefghij") / 10)))
    line_h = int(font.getbbox("Hg")[3]) + 2
    base = Image.fromarray(np.ascontiguousarray(frame), "RGB").convert("RGBA")
    overlay = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    scale = (width, height, width, height)
    for box in dict.fromkeys(tuple(det.box) for r in results for det in r.detections):
        px = [v * s for v, s in zip(box, scale, strict=True)]
        draw.rectangle(outline_rect(px, width, height), outline=(*DETECTION_COLOUR, 255))
    top = 0
    per_result = max(1, int(height * CAPTION_SHARE) // line_h // max(1, len(results)))
    for j, r in enumerate(results):
        lines = _caption(r, chars, per_result)
        block_w = int(max(font.getlength(s) for s in lines)) + 6
        block_h = line_h * len(lines) + 4
        draw.rectangle([0, top, block_w, top + block_h], fill=(0, 0, 0, 150))
        for i, s in enumerate(lines):
            draw.text((3, top + 2 + i * line_h), s, fill=(*colour_of(j), 255), font=font)
        top += block_h + 1
    image = Image.alpha_composite(base, overlay).convert("RGB")
    boxes = ImageDraw.Draw(image)
    for j, r in enumerate(results):  # outlines last: never hidden by captions
        boxes.rectangle(outline_rect(r.box_pixels, width, height), outline=colour_of(j), width=lw)
    return image


def write_keyframe_png(frame: np.ndarray, results: Sequence[KeyframeResult], path: Path) -> Path:
    """Draw `results` (all at this keyframe) on `frame` and save a PNG at `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    draw_results(frame, results).save(path)
    return path


def _encoder() -> str:
    import av

    for name in ("libx264", "mpeg4"):
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:  # not built into this FFmpeg
            continue
    raise RuntimeError("no H.264 or MPEG-4 encoder in this PyAV build")


def write_clip_mp4(
    reader: VideoReader, results: Sequence[KeyframeResult], path: Path, fps: float | None = None
) -> Path:
    """The frames from the clip's first to its last frame (results at one keyframe), each with
    the boxes and captions drawn, as an MP4 at `path`; frames the model read carry a white dot."""
    import av

    clip = results[0].clip_frames
    frames = list(range(min(clip), max(clip) + 1))
    pixels = reader.read(frames)  # [F, H, W, 3]
    height, width = pixels.shape[1:3]
    even_w, even_h = width + width % 2, height + height % 2  # yuv420p needs even sizes
    used = set(clip)
    path.parent.mkdir(parents=True, exist_ok=True)
    codec = _encoder()
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=Fraction(fps or reader.fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = even_w, even_h, "yuv420p"
        r = max(2, min(width, height) // 60)
        for n, frame in zip(frames, pixels, strict=True):
            image = draw_results(frame, results)
            if n in used:
                ImageDraw.Draw(image).ellipse(
                    [width - 4 * r, 2 * r, width - 2 * r, 4 * r], fill="white"
                )
            canvas = np.zeros((even_h, even_w, 3), np.uint8)
            canvas[:height, :width] = np.asarray(image)
            for packet in stream.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path
