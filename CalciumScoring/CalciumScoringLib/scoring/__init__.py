"""CT + (shortened) artery groups + calcification -> scores; and calcification by threshold.

Takes the CT, the shortened artery-group label map, the calcification mask and
optionally the unshortened groups; gives a :class:`~.scores.ScoreResult`, one row per
group, side and combined: burden (calcified / artery volume), cluster count and mean
size, Agatston, volume and mass scores, with the rows of calcium outside the shortened
or any artery.  :mod:`.scores` computes the table, :mod:`.agatston` the classical
per-slice lesion scores, :mod:`.thresholds` the threshold baselines (fixed 130/470 HU,
8-bit display scale, contrast-adaptive, idealised, Otsu) that give a calcification mask.
"""

from .scores import ScoreResult, score

__all__ = ["ScoreResult", "score"]
