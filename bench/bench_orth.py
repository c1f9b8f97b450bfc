"""What does the projection cost, against the least it could cost? The two-product floor, measured beside it.

An exact projection of a matrix X that is already near orthogonal costs at least two matrix products, X Xᵀ then
(X Xᵀ) X, on its smaller side: one classic Newton–Schulz step. That is the floor. For each model below, every eligible
layer (`layers='all'`) is projected once, then moved by one real SGD step (random images and labels), and then, in turns
within each repetition, on the same stepped weights:
  - the floor: the two products for every batch of equal-shaped matrices, as `Orthogonalizer` batches them;
  - the kept `Orthogonalizer` (what `OrthCallback` and `register_orth_hook` call every step);
  - a fresh `orthogonalize_` (a new `Orthogonalizer` per call);
  - the bare products: every matrix product the kept call makes, recorded once and run again on fresh tensors of the
    same shapes and strides, with nothing between them: what any implementation of the same plans costs on this machine;
  - the per-layer SVD loop (what the write-up and torchogonal do), unless --no-svd.
Printed: each one's time over the floor, the median over the repetitions with its spread (min to max), a warning when
the spread is too wide to read, the products the plans ask for over the floor (`planned_products`: the arithmetic alone,
counted, the same on any machine) and the kept call's rest over the bare products (kept − bare: calls, copies,
elementwise work), the host
reads (GPU → CPU transfers of residual norms) per kept call, the Newton degrees taken, and the largest deviation from a
float64 SVD reference of the rule (the bar: 1e-5).
With --hook, also: what `register_orth_hook(layers='all')` adds to a real SGD step of resnet18, over the floor.

Models: torchvision's resnet18 and mobilenet_v2 (weights=None, 64×64 images, 1000 classes) and the course's `small` and
`large` (3×32×32 images, 10 classes). Runs on CUDA when there is one.
Not a test: the numbers depend on the machine and its load; what it compares runs in turns, so slow drift hits all alike.

Run: python bench/bench_orth.py [--threads 1] [--reps 5] [--models small large resnet18 mobilenet_v2] [--lr 0.01] [--no-svd] [--hook]
The default (4 models, 5 repetitions) takes about a minute on a 2-core CPU.
"""
import argparse, os, statistics, time, warnings
import torch, torchvision
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
import torch.nn.functional as F
warnings.filterwarnings('ignore')
import svd_bn.fast_polar as fp
from svd_bn.fast_polar import two_products   # the floor
from svd_bn.orth import Orthogonalizer, orthogonalize_, select_layers, matrix_view, polar_svd
from svd_bn.callback import register_orth_hook
from svd_bn.models import small, large

dev = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
def sync():
    "Wait for the GPU, when there is one, so that a timing covers the work and not just its launch."
    if dev.type == 'cuda': torch.cuda.synchronize()

def build(name):
    "`(model, input size, classes)` for `name`."
    if name in ('small', 'large'): return {'small': small, 'large': large}[name](c_in=3), 32, 10
    return getattr(torchvision.models, name)(weights=None), 64, 1000

def rule(w, groups, dtype):
    "The rule for one weight, computed in `dtype` by SVD: `U Vᵀ` per group, unit rows for wide groups."
    q = polar_svd(matrix_view(w.detach().to(dtype), groups))
    return (F.normalize(q, dim=-1) if q.shape[1] > q.shape[2] else q).reshape(w.shape)

@torch.no_grad()
def svd_loop_(model):
    "The write-up's loop: one float32 SVD per layer, written back."
    for _, m in select_layers(model, 'all'): m.weight.copy_(rule(m.weight, getattr(m, 'groups', 1), torch.float32))

def batch(size, classes, bs=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(bs, 3, size, size, generator=g).to(dev), torch.randint(0, classes, (bs,), generator=g).to(dev)

def sgd_step_(model, lr, x, y):
    "One real SGD step of `model` on the batch `x, y`."
    model.train()
    F.cross_entropy(model(x), y).backward()
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None: p.sub_(lr * p.grad); p.grad = None

class HostReads:
    "Counts the transfers of residual norms to the host that the projection makes."
    def __enter__(self):
        self.n, self.old = 0, fp._to_host
        def counted(ts): self.n += 1; return self.old(ts)
        fp._to_host = counted; return self
    def __exit__(self, *a): fp._to_host = self.old

class Products(TorchDispatchMode):
    "Records the matrix products run inside it: `(op, args, kwargs)`, each tensor kept as its `(shape, stride, dtype)`."
    ops = {torch.ops.aten.mm, torch.ops.aten.bmm, torch.ops.aten.addmm, torch.ops.aten.baddbmm}
    def __enter__(self): self.calls = []; return super().__enter__()
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func.overloadpacket in self.ops:
            spec = lambda a: ('tensor', tuple(a.shape), a.stride(), a.dtype) if isinstance(a, torch.Tensor) else a
            self.calls.append((func, [spec(a) for a in args], {k: spec(v) for k, v in kwargs.items()}))
        return func(*args, **kwargs)

def bare(calls):
    "A function that runs the products `calls` (from `Products`) again, on fresh tensors of the same shapes and strides, with nothing between them."
    fresh = lambda a: torch.empty_strided(a[1], a[2], dtype=a[3], device=dev).normal_() if isinstance(a, tuple) and a[:1] == ('tensor',) else a
    ops = [(f, [fresh(a) for a in args], {k: fresh(v) for k, v in kw.items()}) for f, args, kw in calls]
    def run():
        for f, args, kw in ops: f(*args, **kw)
    return run

def spread(rs):
    "median (min–max) of the ratios `rs`, with a warning when the spread is too wide to read."
    med, lo, hi = statistics.median(rs), min(rs), max(rs)
    wide = (hi - lo) > 0.25 * med
    return f"{med:5.2f}x ({lo:.2f}–{hi:.2f}){'  [spread too wide to read: rerun on an idle machine]' if wide else ''}", wide

def stepped_model(name, lr):
    "`(model, proj, projected)`: `name` built with seed 0 on `dev`, projected by the kept `Orthogonalizer(model, 'all')` `proj`, its state then, and one real SGD step at `lr` after."
    torch.manual_seed(0)
    model, size, classes = build(name)
    model = model.to(dev)
    proj = Orthogonalizer(model, 'all'); proj()
    projected = {k: v.clone() for k, v in model.state_dict().items()}
    sgd_step_(model, lr, *batch(size, classes))
    return model, proj, projected

def bench(name, reps, lr, svd):
    model, proj, projected = stepped_model(name, lr)
    layers = select_layers(model, 'all')
    stepped = {k: v.clone() for k, v in model.state_dict().items()}
    rel = torch.tensor([((m.weight - projected[f'{n}.weight']).norm() / projected[f'{n}.weight'].norm()).item() for n, m in layers])
    refs = [rule(m.weight, getattr(m, 'groups', 1), torch.float64) for _, m in layers]
    restore = lambda: model.load_state_dict(stepped)
    with Products() as rec: proj()
    restore()
    fs = {'floor': None, 'Orthogonalizer (kept)': proj, 'orthogonalize_ (fresh)': lambda: orthogonalize_(model, 'all'),
          'bare products': bare(rec.calls)}
    if svd: fs['per-layer SVD loop'] = lambda: svd_loop_(model)
    times = {k: [] for k in fs}
    for _ in range(reps + 1):   # the first round warms up and is dropped
        for k, f in fs.items():
            restore()
            if f is None: xs = [b.clone() for b, _ in proj._batches()]; f = lambda: two_products(xs)
            sync(); t = time.perf_counter(); f(); sync(); times[k].append(time.perf_counter() - t)
    times = {k: v[1:] for k, v in times.items()}
    restore()
    with HostReads() as h: proj()
    dev_ours = max((m.weight.double() - r).abs().max().item() for (_, m), r in zip(layers, refs))
    degs = [d for how, d in proj.log if how == 'newton']
    planned = fp.planned_products([b for b, _ in proj._batches()], proj.log)
    floor = statistics.median(times['floor'])
    print(f"\n{name}: {len(layers)} layers in {len(proj.log)} batches; one SGD step at lr {lr:g} moved the weights by {rel.median():.2%} "
          f"median, {rel.max():.2%} max; floor {floor*1e3:.1f} ms (median of {reps})")
    out = {}
    for k in fs:
        if k == 'floor': continue
        s, wide = spread([t / f for t, f in zip(times[k], times['floor'])])
        print(f"  {k:24s} {statistics.median(times[k])*1e3:8.1f} ms  {s}")
        out[k] = statistics.median([t / f for t, f in zip(times[k], times['floor'])])
    print(f"  products the plans ask for: {planned:.2f}x the floor (counted: the same on any machine); the {len(rec.calls)} products "
          f"run bare: {out['bare products']:.2f}x (measured here); the kept call's rest over them: "
          f"{out['Orthogonalizer (kept)'] - out['bare products']:+.2f}x (calls, copies, elementwise work)")
    print(f"  kept call: {h.n} host read{'s' * (h.n != 1)}; {sum(how == 'svd' for how, _ in proj.log)} batches by SVD; Newton steps per batch "
          f"{min(map(len, degs), default=0)}-{max(map(len, degs), default=0)}, degrees {sorted(set(d for ds in degs for d in ds))}; "
          f"max deviation from the float64 rule {dev_ours:.1e} ({'within' if dev_ours <= 1e-5 else 'ABOVE'} 1e-5)")
    return out

def bench_hook(reps, lr):
    "What `register_orth_hook(model, layers='all')` adds to a real SGD step of resnet18, over the floor."
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).to(dev)
    x, y = batch(64, 1000)
    plain = torch.optim.SGD(model.parameters(), lr=lr)
    hooked = torch.optim.SGD(model.parameters(), lr=lr)
    h = register_orth_hook(hooked, model, layers='all')
    proj = Orthogonalizer(model, 'all')
    def step(opt):
        F.cross_entropy(model(x), y).backward()
        sync(); t = time.perf_counter(); opt.step(); sync(); dt = time.perf_counter() - t
        opt.zero_grad(); return dt
    rows = []
    for i in range(reps + 1):
        a, b = step(plain), step(hooked)
        xs = [b_.clone() for b_, _ in proj._batches()]
        sync(); t = time.perf_counter(); two_products(xs); sync(); f = time.perf_counter() - t
        if i: rows.append(((b - a) / f, a, b, f))
    h.remove()
    s, _ = spread([r[0] for r in rows])
    print(f"\nresnet18, register_orth_hook(layers='all') in a real SGD step at lr {lr:g}: the step {statistics.median(r[1] for r in rows)*1e3:.1f} ms "
          f"without the hook, {statistics.median(r[2] for r in rows)*1e3:.1f} ms with it; what it adds, over the floor "
          f"({statistics.median(r[3] for r in rows)*1e3:.1f} ms): {s}")

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--threads', type=int, default=1, help='torch CPU threads (default 1, as svd-bn ablate)')
    p.add_argument('--reps', type=int, default=5, help='timed repetitions after one warm-up round (default 5)')
    p.add_argument('--models', nargs='+', default=['small', 'large', 'resnet18', 'mobilenet_v2'])
    p.add_argument('--lr', type=float, default=0.01, help='learning rate of the SGD step (default 0.01)')
    p.add_argument('--no-svd', action='store_true', help='skip the per-layer SVD loop (the slowest part)')
    p.add_argument('--hook', action='store_true', help="also time register_orth_hook(layers='all') in resnet18's SGD step")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    where = torch.cuda.get_device_name() if dev.type == 'cuda' else f"CPU, {torch.get_num_threads()} thread{'s' * (torch.get_num_threads() != 1)}"
    print(f"torch {torch.__version__}, {where}, load average {os.getloadavg()[0]:.1f} (other processes make timings noisy); "
          f"times over the two-product floor, median (min–max) of {a.reps}")
    for name in a.models: bench(name, a.reps, a.lr, not a.no_svd)
    if a.hook: bench_hook(a.reps, a.lr)
