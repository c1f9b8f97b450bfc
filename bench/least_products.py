"""How few products can any exact Newton–Schulz-type projection use? A lower bound per model, over the two-product floor.

A step of this family multiplies X by a polynomial in its Gram matrix G = X Xᵀ (on the smaller side, k×k against X's k×n):
it pays G (one product with X), the k×k products that build the polynomial, and the update (one more product with X).
The floor counts the first and the last. What decides the middle is the degree the polynomial needs, and that follows
from the spectrum of G: after the step, every σ of X must satisfy |σ² − 1| ≤ the target (the library's float32 target,
3e-6, unless --target). For each matrix, after a real SGD step (the same models, seed and step as bench/bench_orth.py):
  - its Gram's eigenvalues g, in float64;
  - for d = 0, 1, 2 …, the least max |√g·p(g) − 1| over the eigenvalues, for any polynomial p of degree d (a linear
    program over those very points, so the bound holds even for a polynomial fitted to this matrix alone); the step then
    leaves some |σ² − 1| ≥ η(2 − η), or flips a direction (√g·p(g) < 0: no longer U Vᵀ), so the smallest d with
    η(2 − η) ≤ target is the least degree one step can use;
  - a degree d needs at least ⌈log2 d⌉ k×k products (each product at most doubles the degree), each k/n of a product
    with X; a plan of two or more steps pays at least two Grams and two updates, twice the floor.
So no plan of this family costs less than min(2 + ⌈log2 d⌉·k/n, 4) products with X per matrix, against the floor's 2.
Every product but the update is symmetric (G, and polynomials in G), so a kernel that computes only half of each
(BLAS's syrk; torch has none, and `_sym_mm`'s staircase of four blocks saves at best an eighth here) would pay half
for them: min(1.5 + ⌈log2 d⌉·k/n/2, 3). Printed per model: both least costs over the floor, beside what the
library's plans ask for (`planned_products`), and the batches that cost most over their floor. Counts, not times:
the same on any machine. bench/bench_orth.py measures what the products take here (its 'bare products').

Run: python bench/least_products.py [--models small large resnet18 mobilenet_v2] [--target 3e-6] [--lr 0.01] [--top 3]
Under a minute on a 2-core CPU.
"""
import argparse, math
import numpy as np, torch
from scipy.optimize import linprog
from bench_orth import stepped_model   # the same models, seed and step as the benchmark
import svd_bn.fast_polar as fp

def best_error(g, d):
    "The least max |√g·p(g) − 1| over the points `g` (eigenvalues of a Gram matrix, all > 0), for any polynomial `p` of degree `d`."
    if len(g) <= d + 1 or g.max() - g.min() <= 1e-15 * g.max(): return 0.   # d + 1 points or fewer: p interpolates 1/√g exactly
    x = (2 * g - g.max() - g.min()) / (g.max() - g.min())                 # onto [-1, 1], for a well-conditioned Chebyshev basis
    a = np.sqrt(g)[:, None] * np.polynomial.chebyshev.chebvander(x, d)
    r0 = a @ np.linalg.lstsq(a, np.ones_like(g), rcond=None)[0] - 1       # the least-squares fit's error, accurate in float64
    s = np.abs(r0).max()
    if s == 0: return 0.
    # the best fit is the least-squares one plus a correction c: minimise t with |r0/s + a c| ≤ t (all of order 1 for the LP)
    n, m = a.shape
    obj = np.r_[np.zeros(m), 1.]
    ub = np.block([[a, -np.ones((n, 1))], [-a, -np.ones((n, 1))]])
    res = linprog(obj, A_ub=ub, b_ub=np.r_[-r0 / s, r0 / s], bounds=[(None, None)] * m + [(0, None)], method='highs')
    return s * min(res.x[-1], 1.) if res.status == 0 else s

def least_degree(g, target, max_degree=16):
    "The least degree `d` of one step that can bring every |σ² − 1| of a matrix with Gram eigenvalues `g` under `target`."
    for d in range(max_degree + 1):
        eta = best_error(g, d)
        if eta * (2 - eta) <= target: return d
    return math.inf

def least_cost(x, target):
    "Per matrix of the batch `x`: (least products with X of any plan, the same with symmetric products at half, least degree of one step); the floor is 2."
    k, n = sorted(x.shape[-2:])
    if k == 1: return [(2., 2., 0)] * x.shape[0]   # a row over its norm: a product's worth to read it, one to write it
    out = []
    for m in x.double():
        g = torch.linalg.eigvalsh(m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m).numpy()
        if g.min() <= 0: out.append((2., 2., math.nan)); continue   # rank-deficient: no Newton step completes it; count the floor
        d = least_degree(g, target)
        kk = math.ceil(math.log2(d)) * k / n if d >= 1 else 0.   # k×k products, in products with X
        out.append((min(2 + kk, 4.), min(1.5 + kk / 2, 3.), d) if d >= 1 else (1., .5, d))   # degree 0: G, then X scaled
    return out

def report(name, lr, target, top):
    _, proj, _ = stepped_model(name, lr)
    with torch.no_grad():
        xs = [b.cpu().clone() for b, _ in proj._batches()]   # the stepped weights, before the call below projects them
        proj()   # the library's plans for the same weights, for `planned_products`
    planned = fp.planned_products(xs, proj.log)
    rows = []   # per batch: shape, floor, least, least with symmetric products at half (in multiply-adds), least degrees, the library's degrees
    for xb, (how, degs) in zip(xs, proj.log):
        k, n = sorted(xb.shape[-2:])
        unit = k * k * n   # one product with X, in multiply-adds
        least, half, ds = zip(*least_cost(xb, target))
        rows.append((tuple(xb.shape), unit * 2 * len(ds), unit * sum(least), unit * sum(half), ds, degs))
    floor, least, half = (sum(r[i] for r in rows) for i in (1, 2, 3))
    print(f"\n{name}: {len(xs)} batches; least products of any plan {least / floor:.2f}x the floor "
          f"({half / floor:.2f}x with symmetric products at half); the library's plans ask for {planned:.2f}x")
    for shape, f, c, _, ds, degs in sorted(rows, key=lambda r: r[1] - r[2])[:top]:   # most over their floor, in products
        print(f"  {str(shape):16s} {f / floor:6.1%} of the floor; least {c / f:.2f}x its floor (least degree of one step "
              f"{min(ds)}–{max(ds)}); the library: degrees {degs}")

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--models', nargs='+', default=['small', 'large', 'resnet18', 'mobilenet_v2'])
    p.add_argument('--target', type=float, default=fp._target(torch.float32), help='every |σ² − 1| after the step at most this (default: the library’s float32 target)')
    p.add_argument('--lr', type=float, default=0.01, help='learning rate of the SGD step (default 0.01, as bench_orth)')
    p.add_argument('--top', type=int, default=3, help='batches listed per model (default 3)')
    a = p.parse_args()
    print(f"torch {torch.__version__}; every |σ² − 1| ≤ {a.target:g} after the step; products with X (k²n multiply-adds each), over the floor's two per matrix")
    for name in a.models: report(name, a.lr, a.target, a.top)
