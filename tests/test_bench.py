"The benchmarks run and print what they promise (ratios over the floor, the callback's share); their numbers are not tested."
import subprocess, sys
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
