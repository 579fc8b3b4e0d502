"""Quality control: what can be processed, and what the result can be trusted for.

Takes a CT (and, after segmentation, its artery groups and calcification); gives an
:class:`~.checks.InputError` with a message saying what to do for a CT that cannot be
processed, and otherwise a list of flags ``{"code", "message"}`` (no contrast, metal near
the arteries, aorta cut by the field of view, no arteries) that travel with the scores
into the tables, the cohort CSV and the report.  :mod:`.checks` holds the checks.
"""
