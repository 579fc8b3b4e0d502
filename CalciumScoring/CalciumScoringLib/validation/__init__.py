"""Scores and masks against a reference: the validation toolkit of the study.

Takes cases (CT, reference arteries and calcification, optionally an automated result)
or two score tables; gives per-case Dice and score differences, and per cohort the
agreement of every method with the reference (Pearson, regression, Bland-Altman, MAPE,
paired t, ICC, Cohen's kappa on risk categories).  :mod:`.agreement` holds the
statistics, :mod:`.evaluate` runs a case or a cohort through the methods,
:mod:`.report` writes the CSVs, the Markdown/HTML summary and the figures.
"""
