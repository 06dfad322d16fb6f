#!/usr/bin/env python3
"""Golden vectors for vexil-stats from the reference implementations.

Runs GrowthBook's gbstats (t-tests, confidence sequences, Bayesian effect test, CUPED,
SRM), scipy and statsmodels (multiple-testing corrections, power) on a fixed set of
inputs and writes golden/vectors.json next to this script. The Rust test
tests/golden.rs compares the crate against it to 1e-6 relative.

Usage: python3 crates/vexil-stats/golden/generate.py
The first run creates a virtual environment in golden/.venv (gitignored) and installs
the pinned reference packages into it, then re-runs itself there.
"""

import json
import math
import os
import subprocess
import sys
import venv

HERE = os.path.dirname(os.path.abspath(__file__))
VENV = os.path.join(HERE, ".venv")
PACKAGES = ["gbstats==0.8.0", "scipy==1.17.1", "statsmodels==0.15.0"]


def ensure_venv():
    python = os.path.join(VENV, "bin", "python")
    if os.path.abspath(sys.prefix) == os.path.abspath(VENV):
        return
    if not os.path.exists(python):
        venv.create(VENV, with_pip=True)
        subprocess.check_call([python, "-m", "pip", "install", "-q", *PACKAGES])
    os.execv(python, [python, os.path.abspath(__file__), *sys.argv[1:]])


ensure_venv()

import numpy as np  # noqa: E402
from scipy.optimize import brentq  # noqa: E402
from scipy.stats import chisquare  # noqa: E402
from statsmodels.stats.multitest import multipletests  # noqa: E402
from statsmodels.stats.power import NormalIndPower  # noqa: E402
from statsmodels.stats.proportion import power_proportions_2indep  # noqa: E402

from gbstats.bayesian.tests import (  # noqa: E402
    EffectBayesianABTest,
    EffectBayesianConfig,
    GaussianPrior,
)
from gbstats.frequentist.tests import (  # noqa: E402
    FrequentistConfig,
    SequentialConfig,
    SequentialTwoSidedTTest,
    TwoSidedTTest,
)
from gbstats.models.statistics import (  # noqa: E402
    ProportionStatistic,
    RatioStatistic,
    RegressionAdjustedStatistic,
    SampleMeanStatistic,
)
from gbstats.utils import check_srm  # noqa: E402

rng = np.random.default_rng(20261121)


# ---------------------------------------------------------------- inputs (sums)
def proportion(n, conversions, covariate=None):
    return {"kind": "proportion", "n": n, "sum": float(conversions), "covariate": covariate}


def mean_from(values, covariate=None):
    v = np.asarray(values, dtype=float)
    out = {"kind": "mean", "n": int(v.size), "sum": float(v.sum()),
           "sum_squares": float((v * v).sum()), "covariate": None}
    if covariate is not None:
        c = np.asarray(covariate, dtype=float)
        out["covariate"] = {"sum": float(c.sum()), "sum_squares": float((c * c).sum()),
                            "sum_products": float((v * c).sum())}
    return out


def ratio_from(x, y):
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    return {"kind": "ratio", "n": int(x.size),
            "numerator": {"sum": float(x.sum()), "sum_squares": float((x * x).sum())},
            "denominator": {"sum": float(y.sum()), "sum_squares": float((y * y).sum())},
            "sum_products": float((x * y).sum())}


def binary_cuped(n, p_pre, p_post_given, lift):
    pre = rng.random(n) < p_pre
    post = rng.random(n) < np.where(pre, p_post_given[1], p_post_given[0]) * lift
    return {"kind": "proportion", "n": n, "sum": float(post.sum()),
            "covariate": {"sum": float(pre.sum()), "sum_squares": float(pre.sum()),
                          "sum_products": float((post & pre).sum())}}


def cuped_means(n, lift):
    pre = rng.gamma(2.0, 10.0, n)
    post = 0.8 * pre + rng.normal(5.0 * lift, 6.0, n)
    return mean_from(post, covariate=pre)


def gb_statistic(s):
    """The gbstats statistic for one variant's sums (a fresh object per test, since
    gbstats writes the pooled theta into it)."""
    if s["kind"] == "proportion":
        post = ProportionStatistic(n=s["n"], sum=s["sum"])
        pre = None if s["covariate"] is None else ProportionStatistic(
            n=s["n"], sum=s["covariate"]["sum"])
    elif s["kind"] == "mean":
        post = SampleMeanStatistic(n=s["n"], sum=s["sum"], sum_squares=s["sum_squares"])
        pre = None if s["covariate"] is None else SampleMeanStatistic(
            n=s["n"], sum=s["covariate"]["sum"], sum_squares=s["covariate"]["sum_squares"])
    else:
        return RatioStatistic(
            n=s["n"],
            m_statistic=SampleMeanStatistic(n=s["n"], sum=s["numerator"]["sum"],
                                            sum_squares=s["numerator"]["sum_squares"]),
            d_statistic=SampleMeanStatistic(n=s["n"], sum=s["denominator"]["sum"],
                                            sum_squares=s["denominator"]["sum_squares"]),
            m_d_sum_of_products=s["sum_products"])
    if pre is None:
        return post
    return RegressionAdjustedStatistic(n=s["n"], post_statistic=post, pre_statistic=pre,
                                       post_pre_sum_of_products=s["covariate"]["sum_products"],
                                       theta=0)


# ---------------------------------------------------------------- two-arm tests
def run_test(method, control, treatment, difference_type, alpha, tuning, inverse, prior):
    a, b = gb_statistic(control), gb_statistic(treatment)
    if method == "frequentist":
        test = TwoSidedTTest(a, b, FrequentistConfig(alpha=alpha, difference_type=difference_type))
    elif method == "sequential":
        test = SequentialTwoSidedTTest(a, b, SequentialConfig(
            alpha=alpha, difference_type=difference_type, sequential_tuning_parameter=tuning))
    else:
        test = EffectBayesianABTest(a, b, EffectBayesianConfig(
            alpha=alpha, difference_type=difference_type, inverse=inverse,
            prior_type=prior["scale"],
            prior_effect=GaussianPrior(mean=prior["mean"], variance=prior["variance"],
                                       proper=prior["proper"])))
    r = test.compute_result()
    if r.error_message:
        return None
    out = {"effect": float(r.expected), "ci": [float(r.ci[0]), float(r.ci[1])]}
    if method == "bayesian":
        out["chance_to_win"] = float(r.chance_to_win)
        out["risk"] = {"control": float(r.risk[0]), "treatment": float(r.risk[1])}
    else:
        out["p_value"] = float(r.p_value)
    return out


def unadjusted(s):
    stat = gb_statistic(s)
    if isinstance(stat, RegressionAdjustedStatistic):
        stat = stat.post_statistic
    return {"mean": float(stat.mean), "variance": float(stat.variance)}


FLAT = {"mean": 0.0, "variance": 1.0, "proper": False, "scale": "relative"}


def two_arm(name, method, control, treatment, alpha=0.05, tuning=5000.0,
            direction="increase", prior=FLAT):
    inverse = direction == "decrease"
    return {
        "name": name, "kind": "two_arm", "method": method, "alpha": alpha,
        "sequential_tuning": tuning, "direction": direction, "prior": prior,
        "control": control, "treatment": treatment,
        "expected": {
            "control": unadjusted(control), "treatment": unadjusted(treatment),
            "absolute": run_test(method, control, treatment, "absolute", alpha, tuning,
                                 inverse, prior),
            "relative": run_test(method, control, treatment, "relative", alpha, tuning,
                                 inverse, prior),
        },
    }


def arm_inputs():
    revenue_a = rng.lognormal(2.0, 1.0, 800) * (rng.random(800) < 0.3)
    revenue_b = rng.lognormal(2.05, 1.0, 900) * (rng.random(900) < 0.32)
    orders_a = rng.poisson(1.2, 600)
    orders_b = rng.poisson(1.3, 650)
    y_a = rng.poisson(3.0, 700) + 1
    y_b = rng.poisson(3.1, 720) + 1
    x_a = y_a * rng.gamma(2.0, 1.5, 700)
    x_b = y_b * rng.gamma(2.0, 1.58, 720)
    return {
        "proportion": (proportion(1000, 100), proportion(1000, 130)),
        "proportion_unequal": (proportion(5012, 611), proportion(4890, 560)),
        "mean_revenue": (mean_from(revenue_a), mean_from(revenue_b)),
        "mean_orders": (mean_from(orders_a), mean_from(orders_b)),
        "ratio": (ratio_from(x_a, y_a), ratio_from(x_b, y_b)),
        "cuped_mean": (cuped_means(1500, 1.0), cuped_means(1450, 1.08)),
        "cuped_proportion": (binary_cuped(3000, 0.3, (0.05, 0.25), 1.0),
                             binary_cuped(3100, 0.3, (0.05, 0.25), 1.12)),
    }


def degenerate_inputs():
    return {
        "zero_control_mean": (proportion(500, 0), proportion(500, 12)),
        "zero_variance": (mean_from([3.0] * 40), mean_from([3.0] * 40)),
        "single_user": (mean_from([1.0]), mean_from([2.0, 4.0])),
    }


def two_arm_cases():
    cases = []
    inputs = arm_inputs()
    for kind, (a, b) in inputs.items():
        cases.append(two_arm(f"frequentist_{kind}", "frequentist", a, b))
        cases.append(two_arm(f"sequential_{kind}", "sequential", a, b))
        cases.append(two_arm(f"bayesian_{kind}", "bayesian", a, b))
    a, b = inputs["mean_revenue"]
    cases.append(two_arm("frequentist_alpha_0.1", "frequentist", a, b, alpha=0.1))
    cases.append(two_arm("frequentist_bonferroni_alpha", "frequentist", a, b, alpha=0.05 / 6))
    cases.append(two_arm("sequential_tuning_20000", "sequential", a, b, tuning=20000.0))
    cases.append(two_arm("sequential_alpha_0.1", "sequential", a, b, alpha=0.1))
    cases.append(two_arm("bayesian_decrease", "bayesian", a, b, direction="decrease"))
    cases.append(two_arm("bayesian_relative_prior", "bayesian", a, b,
                         prior={"mean": 0.0, "variance": 0.3 ** 2, "proper": True,
                                "scale": "relative"}))
    cases.append(two_arm("bayesian_absolute_prior", "bayesian", a, b,
                         prior={"mean": 0.2, "variance": 0.5, "proper": True,
                                "scale": "absolute"}))
    a, b = inputs["proportion"]
    cases.append(two_arm("bayesian_proportion_decrease_prior", "bayesian", a, b,
                         direction="decrease",
                         prior={"mean": 0.05, "variance": 0.1 ** 2, "proper": True,
                                "scale": "relative"}))
    for kind, (a, b) in degenerate_inputs().items():
        for method in ("frequentist", "sequential", "bayesian"):
            cases.append(two_arm(f"{method}_{kind}", method, a, b))
    return cases


# ---------------------------------------------------------------- SRM
def srm_cases():
    out = []
    for name, users, weights in [
        ("srm_balanced", [1012, 988], [50, 50]),
        ("srm_mismatch", [5300, 4700], [50, 50]),
        ("srm_three_way", [3310, 3402, 3288], [1, 1, 1]),
        ("srm_unequal_weights", [2051, 7949], [20, 80]),
        ("srm_zero_weight_arm", [500, 530, 0], [50, 50, 0]),
        ("srm_no_users", [0, 0], [50, 50]),
    ]:
        p = float(check_srm(users, weights))
        positive = [i for i, w in enumerate(weights) if w > 0]
        if sum(users) and len(positive) == len(weights):
            total_w = sum(weights)
            expected = [w / total_w * sum(users) for w in weights]
            assert math.isclose(p, chisquare(users, expected).pvalue, rel_tol=1e-12)
        out.append({"name": name, "kind": "srm", "observed": users,
                    "weights": [float(w) for w in weights], "expected": p})
    return out


# ---------------------------------------------------------------- corrections
def correction_cases():
    out = []
    families = {
        "small": [0.01, 0.04, 0.03, 0.005],
        "ties": [0.02, 0.02, 0.5, 0.001, 0.049],
        "random": [float(p) for p in rng.uniform(0, 0.2, 30)],
        "with_ones": [1.0, 0.9, 0.0001, 0.3],
    }
    for fam, p in families.items():
        for method, sm in (("holm", "holm"), ("bh", "fdr_bh")):
            adjusted = multipletests(p, method=sm)[1]
            out.append({"name": f"{method}_{fam}", "kind": "correction", "method": method,
                        "p_values": p, "expected": [float(x) for x in adjusted]})
    return out


# ---------------------------------------------------------------- power
def power_function(baseline, alpha):
    if baseline["kind"] == "proportion":
        p = baseline["rate"]
        return lambda mde, n: power_proportions_2indep(
            diff=p * mde, prop2=p, nobs1=n, alpha=alpha, return_results=False)
    sd = math.sqrt(baseline["variance"])
    return lambda mde, n: NormalIndPower().power(
        effect_size=baseline["mean"] * mde / sd, nobs1=n, alpha=alpha)


def power_cases():
    out = []
    baselines = [
        {"kind": "proportion", "rate": 0.1},
        {"kind": "proportion", "rate": 0.02},
        {"kind": "mean", "mean": 25.0, "variance": 400.0},
    ]
    for baseline in baselines:
        for mde, alpha, power in [(0.05, 0.05, 0.8), (0.10, 0.01, 0.9), (0.2, 0.1, 0.8)]:
            f = power_function(baseline, alpha)
            n = brentq(lambda n: f(mde, n) - power, 1e-6, 1e9, xtol=1e-12, rtol=1e-15)
            out.append({"name": f"sample_size_{baseline['kind']}_{mde}_{alpha}_{power}",
                        "kind": "sample_size", "baseline": baseline, "mde": mde,
                        "alpha": alpha, "power": power, "expected": n})
        for n, alpha, power in [(1000.0, 0.05, 0.8), (25000.0, 0.05, 0.9)]:
            f = power_function(baseline, alpha)
            hi = 1 / baseline["rate"] - 1 - 1e-12 if baseline["kind"] == "proportion" else 1e3
            mde = brentq(lambda m: f(m, n) - power, 1e-9, hi, xtol=1e-15, rtol=1e-15)
            out.append({"name": f"mde_{baseline['kind']}_{n}_{alpha}_{power}", "kind": "mde",
                        "baseline": baseline, "n": n, "alpha": alpha, "power": power,
                        "expected": mde})
    return out


def main():
    vectors = {
        "generated_by": "crates/vexil-stats/golden/generate.py",
        "references": PACKAGES,
        "cases": two_arm_cases() + srm_cases() + correction_cases() + power_cases(),
    }
    path = os.path.join(HERE, "vectors.json")
    with open(path, "w") as f:
        json.dump(vectors, f, indent=1)
        f.write("\n")
    print(f"wrote {len(vectors['cases'])} cases to {os.path.relpath(path)}")


if __name__ == "__main__":
    main()
