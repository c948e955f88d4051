r"""The study's summary: per image source, the fraction of answers "real" with a 95% interval.

A source (the real test images, or one model's samples) got ``n`` answers, ``k`` of them "real".
The fraction judged real -- the "% labeled real" of the GAN papers' tables -- is

    p̂ = k / n                                                                               (1)

and its 95% confidence interval is Wilson's score interval (Wilson 1927): the p whose score test
does not reject p̂, i.e. the two roots of

    (p̂ − p)² = z² p (1 − p) / n,        z = Φ⁻¹(0.975) ≈ 1.95996                            (2)

which are

    centre = (p̂ + z² / (2n)) / (1 + z² / n)                                                 (3)
    half   = z / (1 + z² / n) · sqrt(p̂ (1 − p̂) / n + z² / (4n²))                            (4)
    [low, high] = [centre − half, centre + half]

Why Wilson rather than the textbook Wald interval p̂ ± z sqrt(p̂(1 − p̂)/n): Wald collapses to
zero width at k = 0 or k = n (a model fooled nobody in 10 answers would get [0, 0]) and covers
far less than 95% for small n; Wilson stays inside [0, 1], is never empty, and its coverage is
close to the nominal level at the tens of answers a small study collects (Brown, Cai &
DasGupta 2001, "Interval estimation for a binomial proportion").
"""
from __future__ import annotations

import math
from statistics import NormalDist

__all__ = ["Z95", "wilson_interval", "summarize"]

Z95 = NormalDist().inv_cdf(0.975)           # 1.959963984540054


def wilson_interval(judged_real: int, answers: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval for ``judged_real`` successes out of ``answers`` trials."""
    for name, value in (("judged_real", judged_real), ("answers", answers)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"wilson_interval: {name} must be a non-negative int, got {value!r}")
    if answers == 0:
        raise ValueError("wilson_interval: no answers (answers = 0) give no interval")
    if judged_real > answers:
        raise ValueError(f"wilson_interval: judged_real ({judged_real}) exceeds answers "
                         f"({answers})")
    n, p = answers, judged_real / answers                                       # eq.       (1)
    shrink = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / shrink                                      # eq.      (3)
    half = z / shrink * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))         # eq.      (4)
    # at k = 0 (k = n) the lower (upper) root of eq. (2) is exactly 0 (1); centre - half only
    # reaches it up to rounding
    low = 0.0 if judged_real == 0 else max(0.0, centre - half)
    high = 1.0 if judged_real == n else min(1.0, centre + half)
    return low, high


def summarize(records) -> list[dict]:
    """One row per source of the answer records (dicts with ``source``, ``truth`` and
    ``answer``): ``{"source", "truth", "answers", "judged_real", "fraction_real", "ci95"}``,
    the real images first, then the models in the order they first appear."""
    rows: dict[str, dict] = {}
    for record in records:
        row = rows.setdefault(record["source"], {"source": record["source"],
                                                 "truth": record["truth"],
                                                 "answers": 0, "judged_real": 0})
        row["answers"] += 1
        row["judged_real"] += record["answer"] == "real"
    for row in rows.values():
        row["fraction_real"] = row["judged_real"] / row["answers"]
        row["ci95"] = list(wilson_interval(row["judged_real"], row["answers"]))
    return sorted(rows.values(), key=lambda row: row["truth"] != "real")
