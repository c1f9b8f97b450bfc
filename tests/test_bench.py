"The benchmarks run and print what they promise (ratios over the floor, the callback's share, the least products of any plan); their timings are not tested, the lower bound's arithmetic is."
import subprocess, sys
import numpy as np
from pathlib import Path
root = Path(__file__).resolve().parents[1]

def run(*args):
    r = subprocess.run([sys.executable, *args], cwd=root, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout

def test_bench_orth_prints_ratios_over_the_floor():
    out = run('bench/bench_orth.py', '--models', 'small', '--reps', '1')
    assert 'floor' in out and 'Orthogonalizer (kept)' in out and 'per-layer SVD loop' in out
    assert 'host read' in out and 'within 1e-5' in out and 'products the plans ask for' in out and 'bare products' in out and "the kept call's rest over them" in out

def test_bench_callback_prints_what_the_callback_adds():
    out = run('bench/bench_callback.py', '--reps', '1', '--epochs', '1', '--layers', 'pointwise')
    assert "OrthCallback(layers='pointwise')" in out and 'adds' in out and 'CPU time' in out and 'inside' in out

def test_least_products_is_a_lower_bound():
    sys.path.insert(0, str(root / 'bench'))
    from least_products import best_error, least_degree
    from svd_bn.fast_polar import _step_error, _finish_radius
    r = _finish_radius(2, 3e-6)                             # where the library's degree-2 Taylor step just finishes
    g = np.linspace(1 - r, 1 + r, 2001)                     # σ² spread over the whole interval
    errs = [best_error(g, d) for d in range(5)]
    assert all(a > b for a, b in zip(errs, errs[1:]))       # each degree does better than the one below
    eta = errs[2]
    assert eta * (2 - eta) < _step_error(2, r) / 2          # the best degree-2 polynomial beats Taylor's by far, as it must
    assert least_degree(g, 3e-6) == 2 and least_degree(np.linspace(0.95, 1.05, 2001), 3e-6) == 3
    assert best_error(np.array([0.5, 2.]), 1) == 0          # two points: a line through both
    out = run('bench/least_products.py', '--models', 'small')
    assert 'least products of any plan' in out and 'symmetric products at half' in out and "the library's plans ask for" in out
