"""How long a request takes, fitted from the team's own recorded events: seconds = latency +
bytes / throughput, by least squares over (bytes, seconds) samples: per request for a tier
(``fit_tier``); metrics fits the BSR per cold fetch with the same ``fit``."""

from __future__ import annotations

from dataclasses import dataclass

from bsr_team_cache.usage.log import TIER_CODE, EventLog

# A fit on fewer samples, or one whose slope is not positive (all modules the same size, or
# noise), falls back to the mean time per request with no size term.
MIN_SAMPLES = 3


@dataclass(frozen=True)
class TransferModel:
    latency_seconds: float  # per request
    bytes_per_second: float | None  # None: no size term (too few samples or no spread)
    samples: int

    def seconds(self, size: int | float, requests: int | float = 1) -> float:
        """Estimated time of ``requests`` requests of ``size`` bytes in all."""
        extra = size / self.bytes_per_second if self.bytes_per_second else 0.0
        return self.latency_seconds * requests + extra

    def to_json(self) -> dict:
        return {
            "latency_seconds": round(self.latency_seconds, 6),
            "bytes_per_second": round(self.bytes_per_second) if self.bytes_per_second else None,
            "samples": self.samples,
        }


def fit(n: int, sx: float, sy: float, sxx: float, sxy: float) -> TransferModel | None:
    """Least squares of y = a + x / b from the sums of n samples; None without samples."""
    if n == 0:
        return None
    mean_x, mean_y = sx / n, sy / n
    var_x = sxx / n - mean_x * mean_x
    if n >= MIN_SAMPLES and var_x > 1e-9 * max(1.0, mean_x * mean_x):
        slope = (sxy / n - mean_x * mean_y) / var_x
        intercept = mean_y - slope * mean_x
        if slope > 0 and intercept >= 0:
            return TransferModel(intercept, 1.0 / slope, n)
        if slope > 0:  # a negative intercept: the line through the origin instead
            through = sxy / sxx
            return TransferModel(0.0, 1.0 / through, n)
    return TransferModel(mean_y, None, n)


def fit_tier(log: EventLog, tiers: tuple[str, ...], **filters) -> TransferModel | None:
    """The model of requests served by ``tiers`` (``log.where`` filters), or None if the log
    has none."""
    where, params = log.where(**filters)
    codes = ",".join(str(TIER_CODE[t]) for t in tiers)
    clause = f"{where} AND" if where else " WHERE"
    row = log.db.execute(
        "SELECT COUNT(*), TOTAL(bytes), TOTAL(seconds), TOTAL(bytes * bytes),"
        f" TOTAL(bytes * seconds) FROM events{clause} tier IN ({codes})",
        params,
    ).fetchone()
    return fit(*row)
