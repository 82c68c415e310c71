"""Where experiments and their counters live, so every gateway replica agrees.

* ``sqlite`` (the embedded default): ``.mlctl/experiments.db`` in the project, shared by the CLI
  and by every gateway process on the machine (WAL, one short transaction per flush).
* ``memory``: the same tables in an in-process SQLite database; one process, nothing kept.
* ``redis://HOST:PORT/DB``: replicas on several machines share it (``redis`` extra).

A gateway does not write per request: it counts into a :class:`Tally` and flushes it every
second or so with :meth:`ExperimentStore.flush`, which adds the counts atomically and records the
request ids that may receive feedback until their window closes. Feedback for one request counts
once: a second one is refused.

>>> store = open_store("memory")
>>> from mlctl.serving.experiments.definition import new_experiment
>>> _ = store.create(new_experiment("ab", "churn", "champion:50,challenger:50"))
>>> tally = Tally()
>>> tally.assign("ab", "challenger", "req-1", expires_at=4102444800.0)
>>> store.flush(tally)
>>> store.feedback("req-1", reward=1.0).variant
'challenger'
>>> store.stats("ab")["challenger"].trials
1
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from mlctl.core.errors import NotFound, ServiceUnavailable, StateError, UsageError
from mlctl.serving.experiments.definition import Experiment, check_name
from mlctl.serving.experiments.strategies import Arm

STORE_FILE = "experiments.db"
_SCHEMA_VERSION = 1


@dataclasses.dataclass
class VariantStats:
    """One variant's counters: requests assigned (and how many by the random fallback of a sticky
    experiment whose key was missing), shadow copies answered (and how many agreed with the answer
    returned), errors, and the outcomes received."""

    assigned: int = 0
    fallback: int = 0
    shadowed: int = 0
    shadow_agreed: int = 0
    errors: int = 0
    trials: int = 0
    reward_sum: float = 0.0
    reward_sq_sum: float = 0.0

    COUNTS: ClassVar[tuple[str, ...]] = ("assigned", "fallback", "shadowed", "shadow_agreed", "errors", "trials")
    SUMS: ClassVar[tuple[str, ...]] = ("reward_sum", "reward_sq_sum")

    def add(self, other: VariantStats) -> None:
        for f in (*self.COUNTS, *self.SUMS):
            setattr(self, f, getattr(self, f) + getattr(other, f))

    def is_zero(self) -> bool:
        return not any(getattr(self, f) for f in (*self.COUNTS, *self.SUMS))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class PendingRequest:
    """A request that may still receive feedback: its experiment, variant and the answer given."""

    request_id: str
    experiment: str
    variant: str
    expires_at: float
    prediction: str | None = None


@dataclasses.dataclass(frozen=True)
class Outcome:
    """Feedback counted for one request."""

    request_id: str
    experiment: str
    variant: str
    reward: float


class Tally:
    """What one gateway counted since its last flush (not thread-safe: one lock around it).

    ``batch_id`` names it in the store: a flush retried after an unclear failure (the answer
    lost, the write done) is applied once.
    """

    def __init__(self) -> None:
        self.stats: dict[tuple[str, str], VariantStats] = {}
        self.requests: list[PendingRequest] = []
        self.batch_id = os.urandom(12).hex()

    def _of(self, experiment: str, variant: str) -> VariantStats:
        key = (experiment, variant)
        if key not in self.stats:
            self.stats[key] = VariantStats()
        return self.stats[key]

    def assign(self, experiment: str, variant: str, request_id: str, *, expires_at: float,
               fallback: bool = False, prediction: str | None = None) -> None:
        s = self._of(experiment, variant)
        s.assigned += 1
        s.fallback += int(fallback)
        self.requests.append(PendingRequest(request_id, experiment, variant, expires_at, prediction))

    def shadow(self, experiment: str, target: str, *, agreed: bool = False) -> None:
        s = self._of(experiment, target)
        s.shadowed += 1
        s.shadow_agreed += int(agreed)

    def outcome(self, experiment: str, variant: str, reward: float) -> None:
        """An outcome already matched to its variant (feedback adds these one at a time)."""
        s = self._of(experiment, variant)
        s.trials += 1
        s.reward_sum += reward
        s.reward_sq_sum += reward * reward

    def error(self, experiment: str, variant: str) -> None:
        self._of(experiment, variant).errors += 1

    def merge(self, other: Tally) -> None:
        """Add ``other`` (a flush that failed goes back into the next one)."""
        for key, s in other.stats.items():
            self._of(*key).add(s)
        self.requests.extend(other.requests)

    def take(self) -> Tally:
        """The counts so far, leaving this tally empty."""
        out = Tally()
        out.stats, out.requests = self.stats, self.requests
        self.stats, self.requests = {}, []
        return out

    def __bool__(self) -> bool:
        return bool(self.requests) or any(not s.is_zero() for s in self.stats.values())


def _reward(pending: PendingRequest, reward: float | None, label: str | None) -> float:
    if (reward is None) == (label is None):
        raise UsageError("give a reward or a label (one of them)")
    if reward is not None:
        if reward != reward or reward in (float("inf"), float("-inf")):
            raise UsageError("the reward must be a finite number")
        return float(reward)
    if pending.prediction is None:
        raise UsageError(f"request {pending.request_id} recorded no prediction to compare a label with; "
                         "send a reward instead")
    return 1.0 if str(label) == pending.prediction else 0.0


def _answered(request_id: str) -> UsageError:
    return UsageError(f"request {request_id} already has an outcome; each request counts once")


def _expired(request_id: str) -> NotFound:
    return NotFound(f"unknown or expired request id {request_id}",
                    hint="feedback is accepted for the experiment's feedback window")


class ExperimentStore(ABC):
    """Experiments, their per-variant counters and the requests awaiting feedback."""

    url: str = ""

    @abstractmethod
    def create(self, experiment: Experiment, *, replace: bool = False) -> bool:
        """Store a new experiment; True if written. The same definition again is a no-op (False);
        a different one under a live name is refused unless ``replace`` (its counters restart)."""

    @abstractmethod
    def get(self, name: str) -> Experiment:
        """The experiment, or :class:`NotFound`."""

    @abstractmethod
    def experiments(self) -> list[Experiment]:
        """Every experiment, by name."""

    @abstractmethod
    def _put(self, experiment: Experiment) -> None: ...

    @abstractmethod
    def flush(self, tally: Tally) -> None:
        """Add a tally's counters and record its pending requests, atomically and once per
        ``tally.batch_id`` (flushing the same tally again changes nothing)."""

    @abstractmethod
    def stats(self, name: str) -> dict[str, VariantStats]:
        """Counters per variant (and per shadow target) of one experiment."""

    @abstractmethod
    def _lookup(self, request_id: str, now: float) -> PendingRequest:
        """A request awaiting feedback; NotFound (unknown, expired) or UsageError (answered) otherwise."""

    @abstractmethod
    def _mark(self, request_id: str) -> bool:
        """Mark a request answered, atomically; False when another feedback did it first."""

    @abstractmethod
    def _add_outcome(self, experiment: str, variant: str, reward: float) -> None: ...

    def close(self) -> None:  # noqa: B027 - optional
        """Release connections."""

    def set_status(self, name: str, status: str) -> Experiment:
        """Pause, resume or stop an experiment; setting the status it has is a no-op."""
        exp = self.get(name)
        if exp.status == status:
            return exp
        if exp.status == "stopped":
            raise UsageError(f"experiment {name} is stopped; create a new one (or create --replace)")
        changed = exp.with_status(status)
        self._put(changed)
        return changed

    def feedback(self, request_id: str, *, reward: float | None = None, label: str | None = None,
                 now: float | None = None) -> Outcome:
        """Count an outcome for one request: a reward, or a label compared with the answer given."""
        if not request_id or len(request_id) > 128:
            raise UsageError("a request id of 1 to 128 characters is needed")
        if (reward is None) == (label is None):
            raise UsageError("give a reward or a label (one of them)")
        pending = self._lookup(request_id, time.time() if now is None else now)
        value = _reward(pending, reward, label)  # a bad reward or label leaves the request unanswered
        if not self._mark(request_id):
            raise _answered(request_id)
        self._add_outcome(pending.experiment, pending.variant, value)
        return Outcome(request_id, pending.experiment, pending.variant, value)

    def arms(self, name: str) -> list[Arm]:
        """The experiment's variants as the strategy sees them (weights and outcomes)."""
        exp = self.get(name)
        stats = self.stats(name)
        return [Arm(name=v.name, weight=v.weight, trials=stats.get(v.name, VariantStats()).trials,
                    reward_sum=stats.get(v.name, VariantStats()).reward_sum,
                    reward_sq_sum=stats.get(v.name, VariantStats()).reward_sq_sum)
                for v in exp.variants]

    def __enter__(self) -> ExperimentStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- SQLite (and memory) -------------------------------------------------------------------------

_DDL = (
    "CREATE TABLE IF NOT EXISTS experiments (name TEXT PRIMARY KEY, spec TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS variant_stats (
        experiment TEXT NOT NULL, variant TEXT NOT NULL,
        assigned INTEGER NOT NULL DEFAULT 0, fallback INTEGER NOT NULL DEFAULT 0,
        shadowed INTEGER NOT NULL DEFAULT 0, shadow_agreed INTEGER NOT NULL DEFAULT 0,
        errors INTEGER NOT NULL DEFAULT 0,
        trials INTEGER NOT NULL DEFAULT 0, reward_sum REAL NOT NULL DEFAULT 0,
        reward_sq_sum REAL NOT NULL DEFAULT 0, PRIMARY KEY (experiment, variant))""",
    """CREATE TABLE IF NOT EXISTS requests (
        request_id TEXT PRIMARY KEY, experiment TEXT NOT NULL, variant TEXT NOT NULL,
        expires_at REAL NOT NULL, prediction TEXT, answered INTEGER NOT NULL DEFAULT 0)""",
    "CREATE INDEX IF NOT EXISTS requests_expiry ON requests(expires_at)",
    "CREATE TABLE IF NOT EXISTS flushes (batch_id TEXT PRIMARY KEY, at REAL NOT NULL)",
)
#: how long a flushed batch id is remembered (a retry comes within seconds)
_FLUSH_MEMORY_S = 86400.0
_FIELDS = (*VariantStats.COUNTS, *VariantStats.SUMS)


class SqliteStore(ExperimentStore):
    """Experiments in one SQLite file (or ``:memory:``), safe across processes on one machine."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self.url = "memory" if self.path == ":memory:" else f"sqlite:///{self.path}"
        self._lock = threading.Lock()
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            if self.path != ":memory:":
                self._conn.execute("PRAGMA journal_mode=WAL")
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version > _SCHEMA_VERSION:
                raise StateError(f"{self.path} was written by a newer mlctl (schema {version})")
            with self._tx() as c:
                for statement in _DDL:
                    c.execute(statement)
                have = {row[1] for row in c.execute("PRAGMA table_info(variant_stats)")}
                for f in _FIELDS:  # counters added since the file was made start at 0
                    if f not in have:
                        kind = "INTEGER" if f in VariantStats.COUNTS else "REAL"
                        c.execute(f"ALTER TABLE variant_stats ADD COLUMN {f} {kind} NOT NULL DEFAULT 0")
                c.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise StateError(f"cannot use {self.path} as the experiment store: {exc}",
                             hint="move the file away; experiments and their counters live there") from exc

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def create(self, experiment: Experiment, *, replace: bool = False) -> bool:
        with self._tx() as c:
            row = c.execute("SELECT spec FROM experiments WHERE name = ?", (experiment.name,)).fetchone()
            if row is not None:
                old = Experiment.from_dict(json.loads(row[0]))
                if old.same_definition(experiment) and old.status != "stopped" and not replace:
                    return False
                if not replace and old.status != "stopped":
                    raise UsageError(f"experiment {experiment.name} exists with another definition "
                                     f"(status {old.status})", hint="stop it first, or create --replace")
                c.execute("DELETE FROM variant_stats WHERE experiment = ?", (experiment.name,))
                c.execute("DELETE FROM requests WHERE experiment = ?", (experiment.name,))
            c.execute("INSERT OR REPLACE INTO experiments (name, spec) VALUES (?, ?)",
                      (experiment.name, json.dumps(experiment.to_dict())))
        return True

    def get(self, name: str) -> Experiment:
        check_name(name)
        with self._lock:
            row = self._conn.execute("SELECT spec FROM experiments WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"no experiment {name}", hint="see `mlctl serve experiment list`")
        return Experiment.from_dict(json.loads(row[0]))

    def experiments(self) -> list[Experiment]:
        with self._lock:
            rows = self._conn.execute("SELECT spec FROM experiments ORDER BY name").fetchall()
        return [Experiment.from_dict(json.loads(r[0])) for r in rows]

    def _put(self, experiment: Experiment) -> None:
        with self._tx() as c:
            c.execute("UPDATE experiments SET spec = ? WHERE name = ?",
                      (json.dumps(experiment.to_dict()), experiment.name))

    def flush(self, tally: Tally) -> None:
        if not tally:
            return
        sets = ", ".join(f"{f} = {f} + excluded.{f}" for f in _FIELDS)
        sql = (f"INSERT INTO variant_stats (experiment, variant, {', '.join(_FIELDS)}) "
               f"VALUES (?, ?, {', '.join('?' * len(_FIELDS))}) "
               f"ON CONFLICT (experiment, variant) DO UPDATE SET {sets}")
        now = time.time()
        with self._tx() as c:
            if c.execute("INSERT OR IGNORE INTO flushes (batch_id, at) VALUES (?, ?)",
                         (tally.batch_id, now)).rowcount == 0:
                return  # this batch was added already
            c.execute("DELETE FROM flushes WHERE at < ?", (now - _FLUSH_MEMORY_S,))
            c.executemany(sql, [(e, v, *(getattr(s, f) for f in _FIELDS))
                                for (e, v), s in tally.stats.items() if not s.is_zero()])
            c.executemany("INSERT OR IGNORE INTO requests (request_id, experiment, variant, expires_at, prediction) "
                          "VALUES (?, ?, ?, ?, ?)",
                          [(r.request_id, r.experiment, r.variant, r.expires_at, r.prediction)
                           for r in tally.requests])
            c.execute("DELETE FROM requests WHERE expires_at < ?", (now,))

    def stats(self, name: str) -> dict[str, VariantStats]:
        with self._lock:
            rows = self._conn.execute(f"SELECT variant, {', '.join(_FIELDS)} FROM variant_stats "
                                      "WHERE experiment = ?", (name,)).fetchall()
        return {r[0]: VariantStats(**dict(zip(_FIELDS, r[1:], strict=True))) for r in rows}

    def _lookup(self, request_id: str, now: float) -> PendingRequest:
        with self._lock:
            row = self._conn.execute("SELECT experiment, variant, expires_at, prediction, answered FROM requests "
                                     "WHERE request_id = ?", (request_id,)).fetchone()
        if row is None or row[2] < now:
            raise _expired(request_id)
        if row[4]:
            raise _answered(request_id)
        return PendingRequest(request_id, row[0], row[1], row[2], row[3])

    def _mark(self, request_id: str) -> bool:
        with self._tx() as c:
            done = c.execute("UPDATE requests SET answered = 1 WHERE request_id = ? AND answered = 0", (request_id,))
            return done.rowcount == 1

    def _add_outcome(self, experiment: str, variant: str, reward: float) -> None:
        t = Tally()
        t.outcome(experiment, variant, reward)
        self.flush(t)


# -- Redis ---------------------------------------------------------------------------------------


class RedisStore(ExperimentStore):
    """Experiments in Redis, for gateway replicas on several machines.

    Keys (``PREFIX`` is ``mlctl`` by default): ``PREFIX:experiments`` (a set of names),
    ``PREFIX:exp:NAME`` (the definition, JSON), ``PREFIX:stats:NAME`` (a hash of
    ``VARIANT|COUNTER`` -> number, added with HINCRBY/HINCRBYFLOAT), ``PREFIX:req:ID`` (a hash of
    the request's experiment, variant and answer, expiring with the feedback window).
    """

    def __init__(self, url: str, *, prefix: str = "mlctl", timeout: float = 5.0) -> None:
        try:
            import redis
        except ImportError as exc:  # pragma: no cover - depends on the install
            from mlctl.core.errors import MissingExtra

            raise MissingExtra("redis", "redis", feature="the Redis experiment store") from exc
        self.url = url
        self.prefix = prefix
        self._errors: tuple[type[BaseException], ...] = (redis.exceptions.ConnectionError,
                                                           redis.exceptions.TimeoutError)
        self._r: Any = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                       decode_responses=True)

    @contextmanager
    def _call(self) -> Iterator[None]:
        try:
            yield
        except self._errors as exc:
            raise ServiceUnavailable(f"Redis at {self.url} is unreachable: {exc}",
                                     hint="check serve.state, or start Redis") from exc

    def _k(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def close(self) -> None:
        self._r.close()

    def create(self, experiment: Experiment, *, replace: bool = False) -> bool:
        with self._call():
            raw = self._r.get(self._k("exp", experiment.name))
            if raw is not None:
                old = Experiment.from_dict(json.loads(raw))
                if old.same_definition(experiment) and old.status != "stopped" and not replace:
                    return False
                if not replace and old.status != "stopped":
                    raise UsageError(f"experiment {experiment.name} exists with another definition "
                                     f"(status {old.status})", hint="stop it first, or create --replace")
            pipe = self._r.pipeline(transaction=True)
            pipe.delete(self._k("stats", experiment.name))
            pipe.set(self._k("exp", experiment.name), json.dumps(experiment.to_dict()))
            pipe.sadd(self._k("experiments"), experiment.name)
            pipe.execute()
        return True

    def get(self, name: str) -> Experiment:
        check_name(name)
        with self._call():
            raw = self._r.get(self._k("exp", name))
        if raw is None:
            raise NotFound(f"no experiment {name}", hint="see `mlctl serve experiment list`")
        return Experiment.from_dict(json.loads(raw))

    def experiments(self) -> list[Experiment]:
        with self._call():
            names = sorted(self._r.smembers(self._k("experiments")))
            raws = self._r.mget([self._k("exp", n) for n in names]) if names else []
        return [Experiment.from_dict(json.loads(r)) for r in raws if r is not None]

    def _put(self, experiment: Experiment) -> None:
        with self._call():
            self._r.set(self._k("exp", experiment.name), json.dumps(experiment.to_dict()))

    #: One flush, applied once per batch id: the marker key is set first (NX), then every increment.
    _FLUSH = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
local i = 2
while i <= #ARGV do
  local op = ARGV[i]
  if op == 'i' then redis.call('HINCRBY', ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]); i = i + 4
  elseif op == 'f' then redis.call('HINCRBYFLOAT', ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]); i = i + 4
  elseif op == 'h' then redis.call('HSET', ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]); i = i + 4
  else redis.call('EXPIRE', ARGV[i + 1], ARGV[i + 2]); i = i + 3 end
end
return 1
"""

    def flush(self, tally: Tally) -> None:
        if not tally:
            return
        now = time.time()
        args: list[Any] = [int(_FLUSH_MEMORY_S)]
        for (exp, variant), s in tally.stats.items():
            for f in VariantStats.COUNTS:
                if getattr(s, f):
                    args += ["i", self._k("stats", exp), f"{variant}|{f}", getattr(s, f)]
            for f in VariantStats.SUMS:
                if getattr(s, f):
                    args += ["f", self._k("stats", exp), f"{variant}|{f}", repr(getattr(s, f))]
        for r in tally.requests:
            key = self._k("req", r.request_id)
            args += ["h", key, "experiment", r.experiment, "h", key, "variant", r.variant,
                     "h", key, "expires_at", repr(r.expires_at)]
            if r.prediction is not None:
                args += ["h", key, "prediction", r.prediction]
            args += ["e", key, max(1, int(r.expires_at - now))]
        with self._call():
            self._r.eval(self._FLUSH, 1, self._k("flush", tally.batch_id), *args)

    def stats(self, name: str) -> dict[str, VariantStats]:
        with self._call():
            raw = self._r.hgetall(self._k("stats", name))
        out: dict[str, VariantStats] = {}
        for field, value in raw.items():
            variant, _, counter = field.rpartition("|")
            s = out.setdefault(variant, VariantStats())
            setattr(s, counter, int(value) if counter in VariantStats.COUNTS else float(value))
        return out

    def _lookup(self, request_id: str, now: float) -> PendingRequest:
        with self._call():
            fields = self._r.hgetall(self._k("req", request_id))
        if not fields.get("experiment") or float(fields.get("expires_at", "inf")) < now:
            raise _expired(request_id)
        if fields.get("answered"):
            raise _answered(request_id)
        return PendingRequest(request_id, fields["experiment"], fields["variant"],
                              float(fields.get("expires_at", now)), fields.get("prediction"))

    #: HSETNX only on a key that still exists (never recreate an expired request without its TTL)
    _MARK = "if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('HSETNX', KEYS[1], 'answered', 1) " \
            "else return 0 end"

    def _mark(self, request_id: str) -> bool:
        with self._call():
            return bool(self._r.eval(self._MARK, 1, self._k("req", request_id)))

    def _add_outcome(self, experiment: str, variant: str, reward: float) -> None:
        with self._call():
            pipe = self._r.pipeline(transaction=True)
            key = self._k("stats", experiment)
            pipe.hincrby(key, f"{variant}|trials", 1)
            pipe.hincrbyfloat(key, f"{variant}|reward_sum", reward)
            pipe.hincrbyfloat(key, f"{variant}|reward_sq_sum", reward * reward)
            pipe.execute()


def open_store(state: str, *, base: Path | None = None) -> ExperimentStore:
    """The store for a ``serve.state`` value: ``memory``, ``sqlite`` (``BASE/experiments.db``),
    ``sqlite:///PATH`` (relative to ``base``) or ``redis://...``."""
    if state == "memory":
        return SqliteStore(":memory:")
    if state == "sqlite":
        return SqliteStore((base or Path(".mlctl")) / STORE_FILE)
    if state.startswith("sqlite:///"):
        path = Path(state[len("sqlite:///"):])
        return SqliteStore(path if path.is_absolute() or base is None else base.parent / path)
    if state.startswith(("redis://", "rediss://", "unix://")):
        return RedisStore(state)
    raise UsageError(f"unknown serve.state {state!r}: use memory, sqlite, sqlite:///PATH or redis://HOST:PORT/DB")
