"""NAB scoring: the Numenta Anomaly Benchmark's rules, as pure functions over arrays.

The rules, as the reference scorer (NAB 1.x, ``nab/sweeper.py``) applies them:

* **Probation.** The first ``min(floor(0.15 * rows), 750)`` rows of a file are not scored at all.
* **Windows.** Each labelled anomaly is a window of rows. A detection inside a window is a
  true positive worth ``A_TP * S(p) / S(-1)``, where ``S(p) = 2 / (1 + exp(5 p)) - 1`` is the
  scaled sigmoid and ``p = -(end - i + 1) / width`` runs from -1 (first row, worth the full
  ``A_TP``) towards 0 (last row, worth almost nothing). Only the best (earliest) detection of a
  window counts; a window with no detection costs ``A_FN``.
* **False positives.** A detection outside every window costs ``A_FP * S(p)`` with
  ``p = (i - end_prev) / (width_prev - 1)`` measured from the end of the closest preceding
  window (``S`` is -1 beyond ``p > 3``), or the full ``A_FP`` when no window precedes it.
* **Profiles** weight the three costs (:data:`PROFILES`).
* **One threshold for the corpus.** A row is a detection when ``score >= threshold``; the
  threshold that maximises the corpus total is found by sweeping every distinct score once,
  from the highest down (ties: the highest threshold wins).
* **Normalisation.** ``100 * (S - S_null) / (S_perfect - S_null)``: the null detector detects
  nothing (``-A_FN`` per scored window); the perfect one detects the first row of every
  window (``A_TP`` per window).

Two places where the reference scorer has no defined behaviour are pinned down here: a window
whose bounds are not exact row timestamps covers the rows that fall inside it (the reference
skips it silently), and a false positive after a one-row window costs the full ``A_FP`` (the
reference divides by zero).

Everything here needs numpy only. :func:`score_corpus` is the entry point; to score several
profiles over one corpus, build a :class:`PreparedCorpus` once with :func:`prepare_corpus`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from mlctl.core.errors import ConfigError, NotFound, UsageError

PROBATION_FRACTION = 0.15
#: the reference caps probation at 15% of 5000 rows
PROBATION_CAP = 750
#: the threshold reported when detecting nothing scores best (above any score in [0, 1])
NO_DETECTION_THRESHOLD = 1.1

Window = tuple[datetime, datetime]
Timestamps = Sequence[datetime] | Sequence[str] | np.ndarray


@dataclass(frozen=True)
class Profile:
    """A NAB application profile: the weight of a true positive, false positive and false negative."""

    name: str
    a_tp: float
    a_fp: float
    a_fn: float
    a_tn: float = 1.0


#: NAB's three profiles (``config/profiles.json``)
PROFILES: dict[str, Profile] = {
    "standard": Profile("standard", a_tp=1.0, a_fp=0.11, a_fn=1.0),
    "reward_low_FP_rate": Profile("reward_low_FP_rate", a_tp=1.0, a_fp=0.22, a_fn=1.0),
    "reward_low_FN_rate": Profile("reward_low_FN_rate", a_tp=1.0, a_fp=0.11, a_fn=2.0),
}


def get_profile(profile: str | Profile) -> Profile:
    """A profile by name (or the profile itself)."""
    if isinstance(profile, Profile):
        return profile
    if profile not in PROFILES:
        raise UsageError(f"unknown NAB profile {profile!r}", hint=f"profiles: {', '.join(PROFILES)}")
    return PROFILES[profile]


def scaled_sigmoid(position: np.ndarray | float) -> np.ndarray:
    """NAB's ``2 * sigmoid(-5 p) - 1``, and -1 for positions beyond 3 (far past a window).

    >>> [round(float(v), 5) for v in scaled_sigmoid(np.array([-1.0, -0.5, 0.0, 1.0, 3.5]))]
    [0.98661, 0.84828, 0.0, -0.98661, -1.0]
    """
    p = np.asarray(position, dtype=float)
    with np.errstate(over="ignore"):
        value = 2.0 / (1.0 + np.exp(5.0 * p)) - 1.0
    return np.where(p > 3.0, -1.0, value)


_MAX_TP = float(scaled_sigmoid(-1.0))


def probation_length(rows: int) -> int:
    """Rows at the start of a file that are not scored: ``min(floor(0.15 * rows), 750)``.

    >>> probation_length(4032), probation_length(15833), probation_length(100)
    (604, 750, 15)
    """
    return int(min(math.floor(PROBATION_FRACTION * rows), PROBATION_CAP))


# --------------------------------------------------------------------------- labels


def _parse_time(text: Any, where: str) -> datetime:
    if not isinstance(text, str):
        raise ConfigError(f"{where}: window bound {text!r} is not a timestamp string")
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            f"{where}: cannot read {text!r} as a timestamp", hint="use 'YYYY-MM-DD HH:MM:SS[.ffffff]'"
        ) from None


def parse_windows(raw: Any, *, source: str = "labels") -> dict[str, list[Window]]:
    """Validate ``{"category/file.csv": [[start, end], ...]}`` data into sorted datetime windows."""
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{source}: expected a JSON object keyed by data file",
            hint='e.g. {"realTweets/Twitter_volume_FB.csv": [["2015-03-01 00:00:00", ...]]}',
        )
    out: dict[str, list[Window]] = {}
    for key, windows in raw.items():
        where = f"{source}: {key}"
        if not isinstance(windows, list):
            raise ConfigError(f"{where}: expected a list of [start, end] pairs")
        parsed: list[Window] = []
        for pair in windows:
            if not isinstance(pair, list | tuple) or len(pair) != 2:
                raise ConfigError(f"{where}: each window must be a [start, end] pair, got {pair!r}")
            start, end = (_parse_time(t, where) for t in pair)
            if end < start:
                raise ConfigError(f"{where}: window ends before it starts ({pair[0]} > {pair[1]})")
            parsed.append((start, end))
        parsed.sort()
        for (_, prev_end), (start, _) in zip(parsed, parsed[1:], strict=False):
            if start <= prev_end:
                raise ConfigError(f"{where}: windows overlap at {start}", hint="merge overlapping windows")
        out[str(key).replace("\\", "/")] = parsed
    return out


def load_windows(path: str | Path) -> dict[str, list[Window]]:
    """Read NAB's ``combined_windows.json`` (keyed ``category/file.csv``) into sorted windows."""
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"labels file not found: {path}", hint="pass NAB's labels/combined_windows.json")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"labels file {path} is not valid JSON: {exc}") from None
    return parse_windows(raw, source=str(path))


# --------------------------------------------------------------------------- per-file layout


def as_datetime64(timestamps: Timestamps, *, where: str = "timestamps") -> np.ndarray:
    """Timestamps (datetimes, ISO strings or datetime64) as a ``datetime64[us]`` array."""
    try:
        return np.asarray(timestamps, dtype="datetime64[us]")
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: cannot read the timestamps ({exc})") from None


@dataclass(frozen=True)
class _FileData:
    """One file laid out for scoring: window membership and unweighted worth of every row."""

    key: str
    probation: int
    win: np.ndarray  # window index of each row, -1 outside windows
    u: np.ndarray  # in a window: S(p)/S(-1) in (0, 1]; outside: S(p) in [-1, 0)
    scores: np.ndarray  # anomaly scores; NaN replaced by -inf (never a detection)
    n_windows: int
    n_scored_windows: int  # windows with at least one row after probation

    @property
    def rows(self) -> int:
        return len(self.scores)


def _layout(key: str, timestamps: Timestamps, scores: Any, windows: Sequence[Window]) -> _FileData:
    ts = as_datetime64(timestamps, where=key)
    values = np.asarray(scores, dtype=float).reshape(-1)
    n = len(ts)
    if n != len(values):
        raise UsageError(f"{key}: {n} timestamps but {len(values)} anomaly scores")
    if n == 0:
        raise ConfigError(f"{key}: the file has no rows")
    if n > 1 and bool(np.any(ts[1:] < ts[:-1])):
        raise ConfigError(f"{key}: timestamps are not in increasing order")
    windows = sorted(windows)
    for (_, prev_end), (start, _) in zip(windows, windows[1:], strict=False):
        if start <= prev_end:
            raise ConfigError(f"{key}: windows overlap at {start}", hint="merge overlapping windows")
    bounds = np.asarray(
        [[np.datetime64(s, "us"), np.datetime64(e, "us")] for s, e in windows], dtype="datetime64[us]"
    ).reshape(-1, 2)
    starts = np.searchsorted(ts, bounds[:, 0], side="left").astype(np.int64)
    ends = np.searchsorted(ts, bounds[:, 1], side="right").astype(np.int64) - 1
    for (s, e), lo, hi in zip(windows, starts, ends, strict=True):
        if np.datetime64(s, "us") < ts[0] or np.datetime64(e, "us") > ts[-1] or hi < lo:
            raise ConfigError(
                f"{key}: window [{s}, {e}] lies outside the file's rows ({ts[0]} .. {ts[-1]})",
                hint="labels and data do not match: check the labels file is for this data",
            )
    idx = np.arange(n)
    widths = (ends - starts + 1).astype(float)
    # the window each row is in, if any
    k = np.searchsorted(starts, idx, side="right") - 1
    inside = (k >= 0) & (idx <= ends[np.maximum(k, 0)]) if len(starts) else np.zeros(n, dtype=bool)
    win = np.where(inside, k, -1).astype(np.int64)
    u = np.empty(n, dtype=float)
    if inside.any():
        kk = k[inside]
        pos = -(ends[kk] - idx[inside] + 1) / widths[kk]
        u[inside] = scaled_sigmoid(pos) / _MAX_TP
    outside = ~inside
    # the closest window that ended before each row
    prev = np.searchsorted(ends, idx, side="left") - 1 if len(ends) else np.full(n, -1)
    u[outside] = -1.0
    after = outside & (prev >= 0)
    if after.any():
        pk = prev[after]
        denom = widths[pk] - 1.0
        with np.errstate(divide="ignore", invalid="ignore"):
            pos = np.where(denom > 0, (idx[after] - ends[pk]) / np.where(denom > 0, denom, 1.0), np.inf)
        u[after] = scaled_sigmoid(pos)
    probation = probation_length(n)
    scored = win[probation:]
    clean = np.where(np.isnan(values), -np.inf, values)
    return _FileData(
        key=key,
        probation=probation,
        win=win,
        u=u,
        scores=clean,
        n_windows=len(windows),
        n_scored_windows=len(np.unique(scored[scored >= 0])),
    )


# --------------------------------------------------------------------------- results


@dataclass
class FileScore:
    """One file's NAB result at a threshold. Counts are rows after probation, as NAB counts them."""

    file: str
    threshold: float
    score: float  # the raw NAB score
    tp: int
    fp: int
    fn: int
    tn: int
    windows: int
    detected_windows: int
    rows: int
    probation: int
    null: float
    perfect: float
    normalized: float | None  # 100 * (score - null) / (perfect - null); None without windows


def _normalize(raw: float, null: float, perfect: float) -> float | None:
    if perfect == null:
        return None
    return 100.0 * (raw - null) / (perfect - null)


def _score_at(fd: _FileData, threshold: float, profile: Profile) -> FileScore:
    p = fd.probation
    win = fd.win[p:]
    u = fd.u[p:]
    det = fd.scores[p:] >= threshold
    inwin = win >= 0
    hit = det & inwin
    false_pos = det & ~inwin
    # the earliest detection of each window is its best one
    hit_windows, first = np.unique(win[hit], return_index=True)
    tp_part = profile.a_tp * math.fsum(u[hit][first].tolist())
    fp_part = profile.a_fp * math.fsum(u[false_pos].tolist())
    missed = fd.n_scored_windows - len(hit_windows)
    raw = tp_part + fp_part - profile.a_fn * missed
    null = -profile.a_fn * fd.n_scored_windows + 0.0  # + 0.0: no -0.0 for files without windows
    perfect = profile.a_tp * fd.n_windows
    n_in = int(inwin.sum())
    tp = int(hit.sum())
    fp = int(false_pos.sum())
    return FileScore(
        file=fd.key,
        threshold=float(threshold),
        score=raw,
        tp=tp,
        fp=fp,
        fn=n_in - tp,
        tn=len(win) - n_in - fp,
        windows=fd.n_windows,
        detected_windows=len(hit_windows),
        rows=fd.rows,
        probation=p,
        null=null,
        perfect=perfect,
        normalized=_normalize(raw, null, perfect),
    )


def score_file(
    timestamps: Timestamps,
    scores: Any,
    windows: Sequence[Window],
    threshold: float,
    profile: str | Profile = "standard",
    *,
    key: str = "file",
) -> FileScore:
    """Score one file's anomaly scores at ``threshold`` (a detection is ``score >= threshold``)."""
    return _score_at(_layout(key, timestamps, scores, windows), float(threshold), get_profile(profile))


# --------------------------------------------------------------------------- the corpus


@dataclass(frozen=True)
class _Sweep:
    """Profile-independent sweep over every scorable row of a corpus, highest score first."""

    scores: np.ndarray  # sorted, descending
    tp_gain: np.ndarray  # cumulative sum of improvements of each window's best S(p)/S(-1)
    first: np.ndarray  # cumulative count of windows detected at least once
    fp_cost: np.ndarray  # cumulative sum of false-positive S(p)
    ends: np.ndarray  # positions where a run of equal scores ends: the candidate thresholds


class PreparedCorpus:
    """A corpus laid out once so that several profiles (and thresholds) score it cheaply."""

    def __init__(self, files: Iterable[_FileData]) -> None:
        self.files: list[_FileData] = sorted(files, key=lambda f: f.key)
        self.n_windows = sum(f.n_windows for f in self.files)
        self.n_scored_windows = sum(f.n_scored_windows for f in self.files)
        self._sweep: _Sweep | None = None

    @property
    def keys(self) -> list[str]:
        return [f.key for f in self.files]

    def sweep(self) -> _Sweep:
        if self._sweep is None:
            self._sweep = _build_sweep(self.files)
        return self._sweep

    def threshold_scores(self, profile: str | Profile) -> tuple[np.ndarray, np.ndarray]:
        """Every candidate threshold (descending, detect-nothing first) and the corpus raw score at it."""
        prof = get_profile(profile)
        sw = self.sweep()
        base = -prof.a_fn * self.n_scored_windows
        totals = base + prof.a_tp * sw.tp_gain + prof.a_fn * sw.first + prof.a_fp * sw.fp_cost
        top = float(sw.scores[0]) if len(sw.scores) else 0.0
        nothing = NO_DETECTION_THRESHOLD if top < NO_DETECTION_THRESHOLD else float(np.nextafter(top, np.inf))
        thresholds = np.concatenate([[nothing], sw.scores[sw.ends]])
        return thresholds, np.concatenate([[base], totals[sw.ends]])

    def best_threshold(self, profile: str | Profile) -> float:
        thresholds, totals = self.threshold_scores(profile)
        return float(thresholds[int(np.argmax(totals))])  # first maximum: the highest threshold wins ties


def _build_sweep(files: Sequence[_FileData]) -> _Sweep:
    scores = np.concatenate([f.scores[f.probation :] for f in files]) if files else np.empty(0)
    u = np.concatenate([f.u[f.probation :] for f in files]) if files else np.empty(0)
    gid_parts, offset = [], 0
    for f in files:
        w = f.win[f.probation :]
        gid_parts.append(np.where(w >= 0, w + offset, -1))
        offset += f.n_windows
    gid = np.concatenate(gid_parts) if files else np.empty(0, dtype=np.int64)
    keep = scores > -np.inf  # NaN scores (stored as -inf) never become detections
    pos_all = np.flatnonzero(keep)
    order = pos_all[np.argsort(-scores[keep], kind="stable")]
    s = scores[order]
    g = gid[order]
    fp_cost = np.where(g < 0, u[order], 0.0)
    tp_delta = np.zeros(len(order))
    first = np.zeros(len(order))
    ranks = np.flatnonzero(g >= 0)
    if len(ranks):
        wg = g[ranks]
        rows = order[ranks]  # position of each hit in the concatenated rows: earlier row = larger u
        by_window = np.lexsort((ranks, wg))  # grouped by window, in sweep order within a window
        wg_s, rows_s = wg[by_window], rows[by_window]
        big = len(scores) + 1
        key = wg_s * big + (big - 1 - rows_s)  # running max of key = earliest row so far, per window
        best_row = (big - 1) - (np.maximum.accumulate(key) - wg_s * big)
        best_u = u[best_row]
        new_window = np.ones(len(wg_s), dtype=bool)
        new_window[1:] = wg_s[1:] != wg_s[:-1]
        prev_u = np.concatenate([[0.0], best_u[:-1]])
        delta = np.where(new_window, best_u, best_u - prev_u)
        tp_delta[ranks[by_window]] = delta
        first[ranks[by_window]] = new_window
    ends = np.flatnonzero(np.append(s[1:] != s[:-1], True)) if len(s) else np.empty(0, dtype=np.int64)
    return _Sweep(scores=s, tp_gain=np.cumsum(tp_delta), first=np.cumsum(first), fp_cost=np.cumsum(fp_cost), ends=ends)


Corpus = Mapping[str, tuple[Timestamps, Any]]


def prepare_corpus(corpus: Corpus, windows: Mapping[str, Sequence[Window]]) -> PreparedCorpus:
    """Lay out ``{key: (timestamps, scores)}`` against the labels, once for every profile."""
    if not corpus:
        raise UsageError("nothing to score: the corpus has no files")
    files = []
    for key, (timestamps, scores) in corpus.items():
        if key not in windows:
            raise ConfigError(f"no labels for {key}", hint="every scored file needs an entry in the labels file")
        files.append(_layout(key, timestamps, scores, windows[key]))
    return PreparedCorpus(files)


def optimize_threshold(
    corpus: Corpus | PreparedCorpus,
    windows: Mapping[str, Sequence[Window]] | None = None,
    profile: str | Profile = "standard",
) -> float:
    """The one threshold that maximises the corpus's raw NAB score (O(n log n) in all rows)."""
    prepared = corpus if isinstance(corpus, PreparedCorpus) else prepare_corpus(corpus, windows or {})
    return prepared.best_threshold(profile)


def null_and_perfect(
    corpus: Corpus | PreparedCorpus,
    windows: Mapping[str, Sequence[Window]] | None = None,
    profile: str | Profile = "standard",
) -> tuple[float, float]:
    """The raw scores of the null detector (detects nothing) and the perfect one (first row of each window)."""
    prepared = corpus if isinstance(corpus, PreparedCorpus) else prepare_corpus(corpus, windows or {})
    prof = get_profile(profile)
    return -prof.a_fn * prepared.n_scored_windows + 0.0, prof.a_tp * prepared.n_windows


@dataclass
class CorpusScore:
    """A detector's NAB result on a corpus under one profile."""

    profile: str
    threshold: float
    score: float | None  # normalised: 0 = null detector, 100 = perfect detector
    raw: float
    null: float
    perfect: float
    tp: int
    fp: int
    fn: int
    tn: int
    windows: int
    detected_windows: int
    files: list[FileScore] = field(default_factory=list)


def score_corpus(
    corpus: Corpus | PreparedCorpus,
    windows: Mapping[str, Sequence[Window]] | None = None,
    profile: str | Profile = "standard",
    threshold: float | None = None,
) -> CorpusScore:
    """Score a corpus under one profile, at ``threshold`` or at the corpus-optimal one."""
    prepared = corpus if isinstance(corpus, PreparedCorpus) else prepare_corpus(corpus, windows or {})
    prof = get_profile(profile)
    thr = prepared.best_threshold(prof) if threshold is None else float(threshold)
    rows = [_score_at(f, thr, prof) for f in prepared.files]
    raw = math.fsum(r.score for r in rows)
    null, perfect = null_and_perfect(prepared, profile=prof)
    return CorpusScore(
        profile=prof.name,
        threshold=thr,
        score=_normalize(raw, null, perfect),
        raw=raw,
        null=null,
        perfect=perfect,
        tp=sum(r.tp for r in rows),
        fp=sum(r.fp for r in rows),
        fn=sum(r.fn for r in rows),
        tn=sum(r.tn for r in rows),
        windows=prepared.n_windows,
        detected_windows=sum(r.detected_windows for r in rows),
        files=rows,
    )


def window_labels(timestamps: Timestamps, windows: Sequence[Window]) -> np.ndarray:
    """1 for rows inside a window, 0 elsewhere (NAB's ``label`` column)."""
    ts = as_datetime64(timestamps)
    labels = np.zeros(len(ts), dtype=np.int8)
    for start, end in windows:
        lo = np.searchsorted(ts, np.datetime64(start, "us"), side="left")
        hi = np.searchsorted(ts, np.datetime64(end, "us"), side="right")
        labels[lo:hi] = 1
    return labels
