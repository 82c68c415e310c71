"""Shared checks over every registered assignment strategy, then behaviour per strategy, then the
parsing of an experiment's variants. Everything is seeded: no test depends on chance."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path
from statistics import NormalDist
from typing import Any

import pytest

from mlctl.core.errors import UsageError
from mlctl.serving.experiments.strategies import (
    STRATEGIES,
    Arm,
    Bandit,
    EpsilonGreedy,
    Sticky,
    Strategy,
    Thompson,
    Weighted,
    make_strategy,
    parse_shadow,
    parse_variants,
    probability_best,
)
from mlctl.serving.experiments.strategies._posteriors import BetaPosterior, NormalPosterior, beta_cdf

ROOT = Path(__file__).resolve().parents[2]
#: parameters a strategy cannot do without
REQUIRED: dict[str, dict[str, Any]] = {"sticky": {"salt": "exp-1"}}
#: every registered strategy with its defaults, plus the bandits' other settings
CASES: list[tuple[str, dict[str, Any]]] = [(name, REQUIRED.get(name, {})) for name in sorted(STRATEGIES)] + [
    ("thompson", {"reward_kind": "continuous"}),
    ("thompson", {"min_share": 0.05}),
    ("epsilon-greedy", {"epsilon": 0.3, "min_share": 0.1}),
]
IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in params.items())}".rstrip("-") for name, params in CASES]
N = 20_000


def binary(name: str, weight: float, trials: int = 0, successes: int = 0) -> Arm:
    """An arm with 0/1 rewards (so its sum of squares is its number of successes)."""
    return Arm(name, weight, trials=trials, reward_sum=float(successes), reward_sq_sum=float(successes))


#: arms with a paused one (which would win on rewards) and three active ones close enough to share traffic
ARMS = [
    binary("champion", 60, 400, 48),
    binary("paused", 0, 50, 45),
    binary("challenger", 30, 400, 56),
    binary("third", 10, 100, 13),
]


def make(name: str, params: dict[str, Any]) -> Strategy:
    return make_strategy(name, **params)


def shares(names: list[str], arms: list[Arm]) -> list[float]:
    counts = Counter(names)
    return [counts[a.name] / len(names) for a in arms]


# ---------------------------------------------------------------------------------------------- registry


def test_registry_holds_the_four_strategies() -> None:
    assert set(STRATEGIES) == {"weighted", "sticky", "thompson", "epsilon-greedy"}
    assert STRATEGIES["weighted"] is Weighted and STRATEGIES["sticky"] is Sticky
    assert STRATEGIES["thompson"] is Thompson and STRATEGIES["epsilon-greedy"] is EpsilonGreedy
    for name, cls in STRATEGIES.items():
        assert cls.name == name and cls.summary and cls.__doc__
        assert issubclass(cls, Strategy)
        for key, spec in cls.params.items():
            assert spec.doc, key
            assert spec.default is None or isinstance(spec.default, spec.type), key


def test_an_unknown_strategy_names_the_known_ones() -> None:
    with pytest.raises(UsageError) as err:
        make_strategy("round-robin")
    message = err.value.message
    assert "round-robin" in message and "\n" not in message
    for name in STRATEGIES:
        assert name in message


def test_bandits_declare_their_reward_kind_and_the_others_none() -> None:
    assert make_strategy("weighted").reward_kind is None
    assert make_strategy("sticky", salt="x").reward_kind is None
    assert make_strategy("thompson").reward_kind == "binary"
    assert make_strategy("epsilon-greedy", reward_kind="continuous").reward_kind == "continuous"


# ---------------------------------------------------------------------------------------------- shared suite


@pytest.mark.parametrize(("name", "params"), CASES, ids=IDS)
def test_probabilities_are_shares_and_a_paused_arm_gets_none(name: str, params: dict[str, Any]) -> None:
    s = make(name, params)
    p = s.probabilities(ARMS)
    assert len(p) == len(ARMS)
    assert all(x >= 0.0 for x in p)
    assert math.fsum(p) == pytest.approx(1.0, abs=1e-12)
    assert p[1] == 0.0
    assert s.probabilities(ARMS) == p  # pure: the same arms, the same shares


@pytest.mark.parametrize(("name", "params"), CASES, ids=IDS)
def test_choices_are_known_active_arms_and_follow_the_probabilities(name: str, params: dict[str, Any]) -> None:
    s = make(name, params)
    rng = random.Random(1234)
    picked = [s.choose(ARMS, key=None, rng=rng) for _ in range(N)]
    assert set(picked) <= {a.name for a in ARMS if a.weight > 0}
    expected = s.probabilities(ARMS)
    # the standard error of a share over 20,000 draws is at most 0.0036: 0.02 is more than 5 of them
    for got, want in zip(shares(picked, ARMS), expected, strict=True):
        assert got == pytest.approx(want, abs=0.02)


@pytest.mark.parametrize(("name", "params"), CASES, ids=IDS)
def test_the_same_seed_gives_the_same_choices(name: str, params: dict[str, Any]) -> None:
    a, b = make(name, params), make(name, params)
    first = [a.choose(ARMS, key=None, rng=random.Random(7)) for _ in range(3)]
    rng1, rng2 = random.Random(99), random.Random(99)
    seq1 = [a.choose(ARMS, key=None, rng=rng1) for _ in range(500)]
    seq2 = [b.choose(ARMS, key=None, rng=rng2) for _ in range(500)]
    assert seq1 == seq2
    assert len(set(first)) == 1  # a fresh rng with one seed gives one first choice
    assert len(set(seq1)) > 1  # and the sequence is not stuck


@pytest.mark.parametrize(("name", "params"), CASES, ids=IDS)
def test_a_single_active_arm_takes_everything(name: str, params: dict[str, Any]) -> None:
    arms = [binary("a", 0, 10, 9), binary("b", 100, 10, 1), binary("c", 0)]
    s = make(name, params)
    assert s.probabilities(arms) == [0.0, 1.0, 0.0]
    rng = random.Random(3)
    assert {s.choose(arms, key=k, rng=rng) for k in (None, "u1", "u2", None)} == {"b"}


@pytest.mark.parametrize(("name", "params"), CASES, ids=IDS)
def test_bad_arm_lists_are_refused(name: str, params: dict[str, Any]) -> None:
    s = make(name, params)
    rng = random.Random(0)
    for arms, words in [
        ([], "at least one arm"),
        ([binary("a", 0), binary("b", 0)], "paused"),
        ([binary("a", 50), binary("a", 50)], "twice"),
    ]:
        with pytest.raises(UsageError, match=words):
            s.probabilities(arms)
        with pytest.raises(UsageError, match=words):
            s.choose(arms, key="k", rng=rng)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_parameters_are_validated_against_the_declared_table(name: str) -> None:
    cls = STRATEGIES[name]
    base = REQUIRED.get(name, {})
    s = make_strategy(name, **base)
    assert s.get_params() == {k: base.get(k, spec.default) for k, spec in cls.params.items()}
    for key, value in s.get_params().items():
        assert getattr(s, key) == value
    assert repr(s).startswith(cls.__name__ + "(")

    def refused(**params: Any) -> str:
        with pytest.raises(UsageError) as err:
            make_strategy(name, **{**base, **params})
        assert "\n" not in err.value.message and name in err.value.message
        return err.value.message

    assert "no_such_parameter" in refused(no_such_parameter=1)
    for key, spec in cls.params.items():
        if spec.low is not None:
            assert key in refused(**{key: spec.low - 1})
        if spec.high is not None:
            assert key in refused(**{key: spec.high + 1})
        if spec.type in (int, float):
            assert key in refused(**{key: "not a number"})
            assert key in refused(**{key: math.nan})
            assert key in refused(**{key: True})
        if spec.choices is not None:
            assert key in refused(**{key: "no-such-choice"})


def test_numbers_given_as_text_or_int_are_converted() -> None:
    assert make_strategy("epsilon-greedy", epsilon="0.25").get_params()["epsilon"] == 0.25
    assert make_strategy("thompson", min_share=0).get_params()["min_share"] == 0.0


def test_arms_validate_their_state() -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        (dict(name="", weight=1), "name"),
        (dict(name="a", weight=-1), "weight"),
        (dict(name="a", weight=math.inf), "weight"),
        (dict(name="a", weight=1, trials=-1), "trials"),
        (dict(name="a", weight=1, trials=1.5), "trials"),
        (dict(name="a", weight=1, reward_sum=math.nan), "reward_sum"),
        (dict(name="a", weight=1, reward_sq_sum=-1.0), "reward_sq_sum"),
        (dict(name="a", weight=1, assigned=-3), "assigned"),
    ]
    for bad, words in cases:
        with pytest.raises(UsageError, match=words):
            Arm(**bad)
    assert Arm("a", 10, trials=4, reward_sum=3.0).mean == 0.75
    assert Arm("a", 10).mean is None and not Arm("a", 0).active


# ---------------------------------------------------------------------------------------------- weighted


def test_weighted_shares_are_the_weights_renormalised_over_active_arms() -> None:
    s = make_strategy("weighted")
    assert s.probabilities(ARMS) == pytest.approx([0.6, 0.0, 0.3, 0.1])
    assert s.probabilities([Arm("a", 1), Arm("b", 3)]) == [0.25, 0.75]


# ---------------------------------------------------------------------------------------------- sticky

CHAMP_CHALL = [Arm("champion", 90), Arm("challenger", 10)]
KEYS = [f"user-{i}" for i in range(N)]


def assign(s: Strategy, arms: list[Arm], keys: list[str]) -> list[str]:
    rng = random.Random(0)
    return [s.choose(arms, key=k, rng=rng) for k in keys]


def test_sticky_needs_a_salt() -> None:
    for params in ({}, {"salt": ""}, {"salt": "   "}):
        with pytest.raises(UsageError, match="salt"):
            make_strategy("sticky", **params)


def test_sticky_gives_a_key_the_same_variant_in_fresh_instances_whatever_the_rng() -> None:
    a = make_strategy("sticky", salt="exp-1")
    b = make_strategy("sticky", salt="exp-1")
    keys = KEYS[:2000]
    first = assign(a, CHAMP_CHALL, keys)
    rng = random.Random(12345)
    assert [b.choose(CHAMP_CHALL, key=k, rng=rng) for k in keys] == first
    assert [a.choose(CHAMP_CHALL, key=k, rng=rng) for k in keys] == first
    # the order of the variants does not matter, only their names
    assert assign(b, CHAMP_CHALL[::-1], keys) == first


def test_sticky_gives_the_same_variant_in_another_process() -> None:
    """Another interpreter with another hash seed: no per-process salt reaches the assignment."""
    keys = KEYS[:300]
    code = (
        "import json, random, sys\n"
        "from mlctl.serving.experiments.strategies import Arm, make_strategy\n"
        "s = make_strategy('sticky', salt='exp-1')\n"
        "arms = [Arm('champion', 50), Arm('challenger', 30), Arm('third', 20)]\n"
        "keys = json.load(sys.stdin)\n"
        "print(json.dumps([s.choose(arms, key=k, rng=random.Random()) for k in keys]))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], input=json.dumps(keys), capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=60, check=True)
    here = assign(make_strategy("sticky", salt="exp-1"),
                  [Arm("champion", 50), Arm("challenger", 30), Arm("third", 20)], keys)
    assert json.loads(out.stdout) == here
    assert len(set(here)) == 3


def test_sticky_shares_over_many_keys_match_the_weights() -> None:
    arms = [Arm("a", 50), Arm("b", 0), Arm("c", 30), Arm("d", 20)]
    got = shares(assign(make_strategy("sticky", salt="exp-1"), arms, KEYS), arms)
    assert got == pytest.approx([0.5, 0.0, 0.3, 0.2], abs=0.015)


def test_sticky_moving_weight_90_10_to_80_20_moves_only_the_changed_share() -> None:
    s = make_strategy("sticky", salt="exp-1")
    before = assign(s, CHAMP_CHALL, KEYS)
    after = assign(s, [Arm("champion", 80), Arm("challenger", 20)], KEYS)
    moved = [(b, a) for b, a in zip(before, after, strict=True) if b != a]
    assert set(moved) == {("champion", "challenger")}
    assert len(moved) / N == pytest.approx(0.10, abs=0.015)


def test_sticky_pausing_an_arm_moves_only_its_keys_and_resuming_brings_them_back() -> None:
    s = make_strategy("sticky", salt="exp-1")
    arms = [Arm("a", 40), Arm("b", 30), Arm("c", 30)]
    before = assign(s, arms, KEYS)
    paused = assign(s, [Arm("a", 40), Arm("b", 0), Arm("c", 30)], KEYS)
    assert all(p == b for b, p in zip(before, paused, strict=True) if b != "b")
    assert "b" not in paused
    assert assign(s, arms, KEYS) == before


def test_sticky_salts_give_independent_assignments() -> None:
    one = assign(make_strategy("sticky", salt="exp-1"), CHAMP_CHALL, KEYS)
    two = assign(make_strategy("sticky", salt="exp-2"), CHAMP_CHALL, KEYS)
    agree = sum(a == b for a, b in zip(one, two, strict=True)) / N
    assert agree == pytest.approx(0.9**2 + 0.1**2, abs=0.02)  # what two independent draws give
    both = sum(a == b == "challenger" for a, b in zip(one, two, strict=True)) / N
    assert both == pytest.approx(0.01, abs=0.005)


def test_sticky_without_a_key_draws_by_the_weights() -> None:
    s = make_strategy("sticky", salt="exp-1")
    rng = random.Random(5)
    got = shares([s.choose(CHAMP_CHALL, key=None, rng=rng) for _ in range(N)], CHAMP_CHALL)
    assert got == pytest.approx([0.9, 0.1], abs=0.015)


# ---------------------------------------------------------------------------------------------- bandits

A_WORSE_B_BETTER = [binary("a", 50, 2000, 200), binary("b", 50, 2000, 400)]


@pytest.mark.parametrize("name", ["thompson", "epsilon-greedy"])
def test_bandits_send_most_traffic_to_the_clearly_better_arm(name: str) -> None:
    s = make_strategy(name)
    p = s.probabilities(A_WORSE_B_BETTER)
    assert p[1] >= 0.94
    rng = random.Random(11)
    got = shares([s.choose(A_WORSE_B_BETTER, key=None, rng=rng) for _ in range(5000)], A_WORSE_B_BETTER)
    assert got[1] >= 0.92


@pytest.mark.parametrize("name", ["thompson", "epsilon-greedy"])
def test_bandits_learn_from_continuous_rewards(name: str) -> None:
    def arm(label: str, mean: float, n: int = 500, sd: float = 2.0) -> Arm:
        rng = random.Random(label)
        xs = [rng.gauss(mean, sd) for _ in range(n)]
        return Arm(label, 50, trials=n, reward_sum=math.fsum(xs), reward_sq_sum=math.fsum(x * x for x in xs))

    arms = [arm("slow", -120.0), arm("fast", -100.0)]  # e.g. minus the latency in ms
    assert make_strategy(name, reward_kind="continuous").probabilities(arms)[1] >= 0.94


def test_bandits_ignore_the_size_of_the_weights() -> None:
    for name in ("thompson", "epsilon-greedy"):
        s = make_strategy(name)
        assert s.probabilities([binary("a", 90), binary("b", 10)]) == s.probabilities([binary("a", 1), binary("b", 1)])


@pytest.mark.parametrize("name", ["thompson", "epsilon-greedy"])
def test_bandits_keep_the_minimum_share(name: str) -> None:
    p = make_strategy(name, min_share=0.1).probabilities(A_WORSE_B_BETTER)
    assert p[0] >= 0.1 - 1e-12 and p[1] > 0.85
    # a floor above an equal split is an equal split
    three = [binary("a", 1, 100, 10), binary("b", 1, 100, 50), binary("c", 1, 100, 20)]
    assert make_strategy(name, min_share=0.5).probabilities(three) == pytest.approx([1 / 3] * 3)


@pytest.mark.parametrize("name", ["thompson", "epsilon-greedy"])
def test_binary_rewards_must_be_successes_among_the_trials(name: str) -> None:
    s = make_strategy(name)
    for arm in (Arm("a", 50, trials=10, reward_sum=11.0), Arm("a", 50, trials=10, reward_sum=-1.0)):
        with pytest.raises(UsageError, match="reward_sum"):
            s.probabilities([arm, binary("b", 50)])
    # continuous rewards take any value
    make_strategy(name, reward_kind="continuous").probabilities([Arm("a", 50, 10, -11.0, 20.0), binary("b", 50)])


def test_thompson_splits_evenly_without_data() -> None:
    for kind in ("binary", "continuous"):
        s = make_strategy("thompson", reward_kind=kind)
        assert s.probabilities([Arm("a", 90), Arm("b", 10)]) == [0.5, 0.5]
        assert s.probabilities([Arm("a", 5), Arm("off", 0), Arm("b", 5), Arm("c", 5)]) == pytest.approx(
            [1 / 3, 0.0, 1 / 3, 1 / 3], abs=1e-15)


def test_thompson_probabilities_are_the_chance_of_being_best() -> None:
    # P(Beta(a, 1) > Beta(1, 1)) = a / (a + 1)
    for a in (2.0, 5.0, 30.0):
        assert probability_best([BetaPosterior(a, 1.0), BetaPosterior(1.0, 1.0)])[0] == pytest.approx(
            a / (a + 1.0), abs=1e-6)
    # two Normals: Phi((m1 - m2) / sqrt(s1^2 + s2^2)), also when one is much narrower than the other
    for (m1, s1), (m2, s2) in [((0.0, 1.0), (0.3, 1.0)), ((0.1, 0.01), (0.0, 1.0)), ((5.0, 2.0), (4.9, 0.001))]:
        want = NormalDist().cdf((m1 - m2) / math.hypot(s1, s2))
        got = probability_best([NormalPosterior(m1, s1), NormalPosterior(m2, s2)])[0]
        assert got == pytest.approx(want, abs=1e-6)
    # three arms: the shares are a distribution, ordered like the means
    p = probability_best([BetaPosterior(61, 441), BetaPosterior(76, 426), BetaPosterior(11, 91)])
    assert math.fsum(p) == pytest.approx(1.0) and p[1] > p[2] > p[0] > 0


def test_beta_cdf_matches_closed_forms() -> None:
    for x in (1e-9, 0.01, 0.3, 0.5, 0.77, 0.999):
        assert beta_cdf(x, 1.0, 7.0) == pytest.approx(1.0 - (1.0 - x) ** 7, abs=1e-12)
        assert beta_cdf(x, 4.0, 1.0) == pytest.approx(x**4, abs=1e-12)
        assert beta_cdf(x, 30.0, 50.0) + beta_cdf(1.0 - x, 50.0, 30.0) == pytest.approx(1.0, abs=1e-12)
    assert beta_cdf(0.0, 3.0, 4.0) == 0.0 and beta_cdf(1.0, 3.0, 4.0) == 1.0


def test_thompson_with_many_trials_stays_fast_and_sensible() -> None:
    arms = [binary("a", 50, 2_000_000, 200_000), binary("b", 50, 2_000_000, 200_900)]
    p = make_strategy("thompson").probabilities(arms)
    # the difference of the two rates has sd 0.0003; b is 0.00045 ahead: P(b best) = Phi(1.5) ~ 0.93
    assert p[1] == pytest.approx(NormalDist().cdf(0.00045 / math.sqrt(2 * 0.1 * 0.9 / 2_000_000)), abs=0.005)


def test_epsilon_greedy_explores_at_epsilon() -> None:
    for eps in (0.1, 0.3):
        s = make_strategy("epsilon-greedy", epsilon=eps)
        assert s.probabilities(A_WORSE_B_BETTER) == pytest.approx([eps / 2, 1 - eps / 2])
        rng = random.Random(21)
        got = shares([s.choose(A_WORSE_B_BETTER, key=None, rng=rng) for _ in range(N)], A_WORSE_B_BETTER)
        assert got[0] == pytest.approx(eps / 2, abs=0.01)


def test_epsilon_greedy_tries_untried_arms_first_and_breaks_ties_by_order() -> None:
    s = make_strategy("epsilon-greedy", epsilon=0.0)
    tried_and_new = [binary("a", 50, 100, 90), binary("b", 50), binary("c", 50)]
    assert s.probabilities(tried_and_new) == [0.0, 1.0, 0.0]
    tied = [binary("a", 50, 100, 10), binary("b", 50, 10, 5), binary("c", 50, 20, 10)]
    assert s.probabilities(tied) == [0.0, 1.0, 0.0]
    assert make_strategy("epsilon-greedy", epsilon=1.0).probabilities(tied) == pytest.approx([1 / 3] * 3)


def test_the_bandits_share_one_base() -> None:
    assert issubclass(Thompson, Bandit) and issubclass(EpsilonGreedy, Bandit)
    assert issubclass(Sticky, Weighted) and not issubclass(Weighted, Bandit)


# ---------------------------------------------------------------------------------------------- variants


def test_parse_variants_reads_names_and_weights() -> None:
    assert parse_variants("champion:90,challenger:10") == [("champion", 90.0), ("challenger", 10.0)]
    assert parse_variants(" champion : 90 % , challenger:10% ") == [("champion", 90.0), ("challenger", 10.0)]
    assert parse_variants("a:33.3333333,b:33.3333333,c:33.3333334") == [
        ("a", 33.3333333), ("b", 33.3333333), ("c", 33.3333334)]
    assert parse_variants("a:100,b:0") == [("a", 100.0), ("b", 0.0)]  # b is paused
    assert parse_variants("model:v2:50,model:v1:50") == [("model:v2", 50.0), ("model:v1", 50.0)]


@pytest.mark.parametrize(("spec", "words"), [
    ("champion:90,challenger:20", "sum to 110, not 100"),
    ("champion:60,challenger:30", "sum to 90, not 100"),
    ("champion:110,challenger:-10", "negative"),
    ("champion:50,champion:50", "listed twice"),
    (":50,challenger:50", "empty name"),
    ("champion:50, :50", "empty name"),
    ("champion90,challenger:10", "no ':'"),
    ("champion:ninety,challenger:10", "not a number"),
    ("champion:,challenger:100", "not a number"),
    ("champion:nan,challenger:10", "finite"),
    ("champion:100", "at least two variants"),
    ("", "no variants"),
    ("champion:90,,challenger:10", "empty"),
])
def test_parse_variants_names_the_problem(spec: str, words: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_variants(spec)
    assert words in err.value.message and "\n" not in err.value.message


def test_parse_shadow_reads_a_name_and_a_share() -> None:
    assert parse_shadow("candidate:5") == ("candidate", 5.0)
    assert parse_shadow(" candidate : 100% ") == ("candidate", 100.0)
    assert parse_shadow("candidate:0.5") == ("candidate", 0.5)


@pytest.mark.parametrize(("spec", "words"), [
    ("candidate:0", "above 0"),
    ("candidate:-5", "above 0"),
    ("candidate:101", "at most 100"),
    ("candidate", "no ':'"),
    (":5", "empty name"),
    ("candidate:five", "not a number"),
    ("candidate:inf", "finite"),
    ("a:5,b:5", "one variant"),
    ("", "no shadow"),
])
def test_parse_shadow_names_the_problem(spec: str, words: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_shadow(spec)
    assert words in err.value.message and "\n" not in err.value.message
