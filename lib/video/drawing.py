"""Drawing people (box, track id, skeleton) and the FPS overlay on images and video frames."""
from __future__ import annotations

import cv2
import numpy as np

from lib.utils.vis import draw_skeleton, palette

__all__ = ['draw_people', 'draw_fps', 'id_color', 'BOX_COLOR']

BOX_COLOR = (200, 200, 200)  # BGR, light grey: visible on most backgrounds, distinct from the limbs
_ID_COLORS = palette(12)  # track ids cycle through 12 well-separated hues
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def id_color(track_id: int) -> tuple[int, int, int]:
    return _ID_COLORS[(int(track_id) * 5) % len(_ID_COLORS)]  # step 5: neighbouring ids get distant hues


def draw_people(image: np.ndarray, people: list[dict], metainfo, kpt_thr: float) -> np.ndarray:
    """A copy of the image with every person's box and skeleton (joints scoring > kpt_thr) drawn; a
    person with an 'id' gets a box in its id's colour and the id written above it."""
    canvas = image.copy()
    for person in people:
        x, y, w, h = (int(round(v)) for v in person['box'])
        color = id_color(person['id']) if 'id' in person else BOX_COLOR
        cv2.rectangle(canvas, (x, y), (x + w, y + h), color, 1, cv2.LINE_AA)
        if 'id' in person:
            cv2.putText(canvas, str(person['id']), (x + 2, max(y - 4, 10)), _FONT, 0.45, color, 1, cv2.LINE_AA)
        canvas = draw_skeleton(canvas, person['keypoints'], metainfo, score_thr=kpt_thr)
    return canvas


def draw_fps(image: np.ndarray, pose_fps: float, total_fps: float) -> np.ndarray:
    """Write 'pose N FPS | end-to-end M FPS' at the top left of `image` (in place; returned)."""
    text = f'pose {pose_fps:.1f} FPS | end-to-end {total_fps:.1f} FPS'
    scale = max(0.4, image.shape[0] / 720)
    (tw, th), base = cv2.getTextSize(text, _FONT, scale, 1)
    cv2.rectangle(image, (0, 0), (tw + 8, th + base + 8), (0, 0, 0), -1)
    cv2.putText(image, text, (4, th + 4), _FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return image
