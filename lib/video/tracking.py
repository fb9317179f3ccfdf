"""Person ids across video frames, and the boxes that follow people between detector frames.

    tracker = PoseTracker(metainfo.sigmas, kpt_thr=0.3, max_missed=3)
    people = tracker.update(estimator.predict(frame, det_boxes, det_scores), t)        # a detector frame
    ids, boxes, scores = tracker.boxes_to_follow()                                     # the next frame ...
    people = tracker.update(estimator.predict(frame, boxes, scores), t, ids)           # ... without the detector

A detector frame's people are matched to the tracks by pose similarity: OKS (`lib.nms.oks_iou`, joints
scoring >= kpt_thr in both poses) between a person's keypoints and the track's last keypoints, or box IoU
when no joint counts; the assignment maximises the total similarity (Hungarian, scipy) and pairs below
`match_thr` stay apart. Unmatched people start new tracks (new ids, counting up from 0); unmatched tracks
are missed. Between detector frames each track seen in the last frame is followed: its box is the tight box
around its last keypoints scoring >= kpt_thr (`keypoint_box`). The pose crop then adds the same 1.25
padding that a detector box gets (`box_to_center_scale` in lib.dataset.transforms, run by PoseEstimator),
so the crop is 25 % larger than the joints' extent, room for a frame's movement. A followed track whose new
pose has too few confident joints is missed for that frame. A track missed in more than `max_missed`
consecutive frames is dropped (its id is never reused); a missed track is not followed between detector
frames, but a detector frame can still match it while it lives.

With smoothing (a dict of OneEuroFilter arguments), each track's output keypoints x, y go through its own
One-Euro filter, restarted whenever the track is missed; matching and box following use the raw keypoints.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from lib.nms import oks_iou

from .detector import box_iou
from .smoothing import OneEuroFilter

__all__ = ['PoseTracker', 'Track', 'keypoint_box', 'xywh_to_xyxy', 'MIN_TRACK_JOINTS']

MIN_TRACK_JOINTS = 3  # a pose with fewer confident joints gives no box to follow


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)


def keypoint_box(keypoints: np.ndarray, kpt_thr: float, min_joints: int = MIN_TRACK_JOINTS) -> np.ndarray | None:
    """Tight box (4,) x, y, w, h around the joints (K, 3) scoring >= kpt_thr; None when fewer than
    `min_joints` qualify or the box has no width or height."""
    kpts = np.asarray(keypoints, dtype=np.float64)
    sure = kpts[(kpts[:, 2] >= kpt_thr) & np.isfinite(kpts[:, :2]).all(axis=1), :2]
    if len(sure) < min_joints:
        return None
    (x0, y0), (x1, y1) = sure.min(axis=0), sure.max(axis=0)
    if x1 - x0 <= 0 or y1 - y0 <= 0:
        return None
    return np.array([x0, y0, x1 - x0, y1 - y0])


@dataclass
class Track:
    id: int
    box: np.ndarray  # (4,) x, y, w, h: where this person is cropped in the next followed frame
    keypoints: np.ndarray  # (K, 3) the last raw keypoints
    score: float  # the last matched detection's score
    missed: int = 0  # consecutive frames without this person
    smoother: OneEuroFilter | None = field(default=None, repr=False)


class PoseTracker:
    """Ids for the people of each frame (see the module docstring).

    Args:
        sigmas: (K,) OKS constants of the keypoint set (metainfo.sigmas).
        kpt_thr: joints scoring >= this count for OKS and for the box followed between detector frames.
        max_missed: a track missed in more consecutive frames than this is dropped.
        match_thr: a detection joins a track when their similarity (OKS, or IoU) is >= this.
        smoothing: None, or OneEuroFilter keyword arguments (min_cutoff, beta, d_cutoff) to smooth the
            output keypoints of each track.
    """

    def __init__(self, sigmas: Sequence[float], kpt_thr: float = 0.3, max_missed: int = 3, match_thr: float = 0.3,
                 smoothing: dict | None = None) -> None:
        if max_missed < 0:
            raise ValueError(f'max_missed must be >= 0, got {max_missed}')
        self.sigmas = np.asarray(sigmas, dtype=np.float64)
        self.kpt_thr, self.max_missed, self.match_thr = float(kpt_thr), int(max_missed), float(match_thr)
        self.smoothing = dict(smoothing) if smoothing is not None else None
        if self.smoothing is not None:
            OneEuroFilter(**self.smoothing)  # reject bad parameters now, not at the first person
        self.tracks: list[Track] = []
        self._next_id = 0

    def boxes_to_follow(self) -> tuple[list[int], np.ndarray, np.ndarray]:
        """Ids, boxes (M, 4) x, y, w, h and scores (M,) of the tracks seen in the last frame."""
        seen = [tr for tr in self.tracks if tr.missed == 0]
        return ([tr.id for tr in seen], np.array([tr.box for tr in seen], dtype=np.float64).reshape(-1, 4),
                np.array([tr.score for tr in seen], dtype=np.float64))

    def update(self, people: list[dict], t: float, ids: Sequence[int] | None = None) -> list[dict]:
        """The people of this frame with 'id' added (and keypoints smoothed), in input order; people
        that are not tracked this frame are left out.

        people: dicts {'keypoints' (K, 3), 'box' (4,) x, y, w, h, 'score'} as PoseEstimator.predict returns.
        t: the frame's time in seconds. ids: None for a detector frame (match the people to the tracks);
        for a followed frame, the track id each person's box came from (`boxes_to_follow`).
        """
        if ids is None:
            pairs = self._match(people)
        else:
            if len(ids) != len(people):
                raise ValueError(f'{len(people)} people but {len(ids)} track ids')
            by_id = {tr.id: tr for tr in self.tracks}
            pairs = [(i, by_id[tid]) for i, tid in enumerate(ids)]
        out, updated = [], set()
        for i, track in pairs:
            person = people[i]
            follow = keypoint_box(person['keypoints'], self.kpt_thr)
            if track is None:
                track = self._new_track(person)
            elif ids is not None and follow is None:
                continue  # followed, but the pose lost the person: missed below
            else:
                track.keypoints = person['keypoints']
                if ids is None:  # a detector frame: the detection's score
                    track.score = float(person['score'])
            track.box = follow if follow is not None else np.asarray(person['box'], np.float64)
            track.missed = 0
            updated.add(track.id)
            out.append((i, dict(person, id=track.id, keypoints=self._smoothed(track, person['keypoints'], t))))
        self._miss_all_but(updated)
        return [p for _, p in sorted(out, key=lambda item: item[0])]

    def _new_track(self, person: dict) -> Track:
        track = Track(self._next_id, np.asarray(person['box'], np.float64), person['keypoints'],
                      float(person['score']))
        self._next_id += 1
        self.tracks.append(track)
        return track

    def _match(self, people: list[dict]) -> list[tuple[int, Track | None]]:
        """(person index, matched track or None) for every person of a detector frame."""
        matched: dict[int, Track] = {}
        if self.tracks and people:
            sim = self.similarity(people)
            for r, c in zip(*linear_sum_assignment(-sim)):
                if sim[r, c] >= self.match_thr:
                    matched[c] = self.tracks[r]
        return [(i, matched.get(i)) for i in range(len(people))]

    def similarity(self, people: list[dict]) -> np.ndarray:
        """(tracks, people) OKS of the poses (joints >= kpt_thr in both), or box IoU where no joint counts."""
        kpts = np.array([p['keypoints'] for p in people], dtype=np.float64)
        boxes = np.array([p['box'] for p in people], dtype=np.float64).reshape(-1, 4)
        areas = boxes[:, 2] * boxes[:, 3]
        track_boxes = np.array([tr.box for tr in self.tracks], dtype=np.float64)
        iou = box_iou(xywh_to_xyxy(track_boxes), xywh_to_xyxy(boxes))
        # oks_iou counts joints strictly above its threshold; nextafter makes that ">= kpt_thr".
        vis = np.nextafter(self.kpt_thr, -np.inf)
        oks = np.array([oks_iou(np.asarray(tr.keypoints, np.float64), kpts, tr.box[2] * tr.box[3], areas,
                                self.sigmas, vis) for tr in self.tracks])
        sure_track = np.array([np.asarray(tr.keypoints)[:, 2] for tr in self.tracks]) >= self.kpt_thr  # (T, K)
        counted = (sure_track[:, None, :] & (kpts[None, :, :, 2] >= self.kpt_thr)).any(axis=2)
        return np.where(counted, oks, iou)

    def _smoothed(self, track: Track, keypoints: np.ndarray, t: float) -> np.ndarray:
        if self.smoothing is None:
            return keypoints
        if track.smoother is None:
            track.smoother = OneEuroFilter(**self.smoothing)
        out = np.array(keypoints, dtype=np.float64)
        out[:, :2] = track.smoother(out[:, :2], t)
        return out

    def _miss_all_but(self, updated: set[int]) -> None:
        for track in self.tracks:
            if track.id not in updated:
                track.missed += 1
                if track.smoother is not None:
                    track.smoother.reset()  # a lost track starts its smoothing afresh
        self.tracks = [tr for tr in self.tracks if tr.missed <= self.max_missed]
