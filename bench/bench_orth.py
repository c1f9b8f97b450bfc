"""How much faster is `Orthogonalizer(method='auto')` than one `torch.linalg.svd` per layer (what the write-up and torchogonal do)?

The case: every eligible layer (`layers='all'`) of torchvision's resnet18 and mobilenet_v2 (weights=None), projected once,
then moved by one real SGD step (lr 0.01 and 0.1, random 64×64 images and labels), then projected again. Both methods are timed side by
side in this process on the same stepped weights, and both are compared with a float64 SVD reference of the rule.
Prints ratios; asserts nothing about time.

Run: `python bench/bench_orth.py [--reps 3] [--lrs 0.01 0.1] [--threads 1] [--models resnet18 mobilenet_v2] [--by-shape 3]`
(`--by-shape K` also times the K costliest shapes one by one, to show where the time goes.) Runs on CUDA when it is there.
"""
import argparse, os, time
import torch, torchvision
from torch import nn
import torch.nn.functional as F
from svd_bn.orth import Orthogonalizer, select_layers, matrix_view, polar_svd, _project

def rule(w, groups, dtype):
    "The corrected write-up rule for one weight, computed in `dtype`: `U Vᵀ` per group, unit rows for wide groups."
    q = polar_svd(matrix_view(w.detach().to(dtype), groups))
    return (F.normalize(q, dim=-1) if q.shape[1] > q.shape[2] else q).reshape(w.shape)

@torch.no_grad()
def per_layer_svd_(model):
    "The baseline: one float32 SVD per layer, written back."
    for _, m in select_layers(model, 'all'): m.weight.copy_(rule(m.weight, getattr(m, 'groups', 1), torch.float32))

def sgd_step_(model, lr, bs=8, size=64, seed=0):
    "One SGD step of `model` on random images and labels."
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(bs, 3, size, size, generator=g), torch.randint(0, 1000, (bs,), generator=g)
    dev = next(model.parameters()).device
    x, y = x.to(dev), y.to(dev)
    model.train()
    nn.functional.cross_entropy(model(x), y).backward()
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None: p.sub_(lr * p.grad); p.grad = None

def deviation(model, refs):
    "Largest absolute difference between the selected weights of `model` and `refs`."
    return max((m.weight.double() - r).abs().max().item() for (_, m), r in zip(select_layers(model, 'all'), refs))

def best_times(fs, restore, reps):
    "Fastest of `reps` timed calls of each of `fs`, each call after `restore()`, taken in turns so that all see the machine in the same state."
    # Not `torch.utils.benchmark`: every timed call must start from the stepped weights, which its Timer cannot restore between calls.
    ts = [[] for _ in fs]
    for _ in range(reps):
        for f, t in zip(fs, ts):
            restore(); sync(); t0 = time.perf_counter(); f(); sync(); t.append(time.perf_counter() - t0)
    return [min(t) for t in ts]

def sync():
    "Wait for the GPU, when there is one, so that a timing covers the work and not just its launch."
    if torch.cuda.is_available(): torch.cuda.synchronize()

@torch.no_grad()
def by_shape(proj, restore, reps, k):
    "Print the `k` shapes of `proj` that cost the per-layer SVD loop most, each timed alone both ways."
    restore(); rows = []
    for x, ents in proj._batches():
        def svd_loop():
            for _, _, m, g in ents: rule(m.weight, g, torch.float32)
        log = []
        t_svd, t_ours = best_times([svd_loop, lambda: (log.clear(), _project([x], 'auto', proj.normalize_rows, log))],
                                   lambda: None, reps)
        rows.append((t_svd, t_ours, f"{len(ents)} layer{'s' * (len(ents) > 1)} of {x.shape[1]}×{x.shape[2]}" + (f", {x.shape[0]} matrices" if x.shape[0] > len(ents) else ""), log[0]))
    tot = sum(r[0] for r in rows), sum(r[1] for r in rows)
    for t_svd, t_ours, what, (how, degs) in sorted(rows, key=lambda r: -r[0])[:k]:
        print(f"      {what:40s} SVD loop {t_svd*1e3:7.1f} ms ({t_svd/tot[0]:4.0%})   ours {t_ours*1e3:6.1f} ms ({t_ours/tot[1]:4.0%}, "
              f"{how} {' '.join(map(str, degs))})   {t_svd/t_ours:4.1f}x")

def bench(name, lrs, reps, k=0):
    "Print the cold first-call time, then per-layer SVD against `Orthogonalizer(auto)` after one SGD step of each lr in `lrs`."
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None).to('cuda' if torch.cuda.is_available() else 'cpu')
    layers = select_layers(model, 'all')
    t = time.perf_counter(); proj = Orthogonalizer(model, 'all'); proj(); cold = time.perf_counter() - t
    n_svd = sum(how == 'svd' for how, _ in proj.log)
    print(f"{name}: {len(layers)} layers in {len(proj.log)} batches of one shape. Cold first call (plan, then projection of the random init): "
          f"{cold*1e3:.0f} ms, {n_svd} of {len(proj.log)} shapes by SVD")
    projected = {k: v.clone() for k, v in model.state_dict().items()}
    out = []
    for lr in lrs:
        model.load_state_dict(projected)
        before = [m.weight.detach().clone() for _, m in layers]
        sgd_step_(model, lr)
        rel = torch.tensor([((m.weight - b).norm() / b.norm()).item() for (_, m), b in zip(layers, before)])
        stepped = {k: v.clone() for k, v in model.state_dict().items()}
        refs = [rule(m.weight, getattr(m, 'groups', 1), torch.float64) for _, m in layers]
        restore = lambda: model.load_state_dict(stepped)
        t_base, t_ours = best_times([lambda: per_layer_svd_(model), proj], restore, reps)
        restore(); per_layer_svd_(model); d_base = deviation(model, refs)
        restore(); proj(); d_ours = deviation(model, refs)
        steps = [len(d) for how, d in proj.log if how == 'newton']
        degs = [max(d) for how, d in proj.log if how == 'newton' and d]
        print(f"  SGD step lr {lr:g} (moves weights by {rel.median():.1%} median, {rel.max():.1%} max):")
        print(f"    per-layer SVD loop    {t_base*1e3:8.1f} ms   max deviation from float64 reference {d_base:.1e}")
        print(f"    Orthogonalizer(auto)  {t_ours*1e3:8.1f} ms   max deviation from float64 reference {d_ours:.1e}   "
              f"[{sum(how == 'svd' for how, _ in proj.log)} shapes by SVD; Newton: {min(steps, default=0)}-{max(steps, default=0)} "
              f"steps per shape, degree up to {max(degs, default=0)}]")
        print(f"    ratio {t_base/t_ours:.1f}x faster, deviation {'within' if d_ours <= 1e-5 else 'ABOVE'} 1e-5")
        if k: by_shape(proj, restore, reps, k)
        out.append((t_base / t_ours, d_ours))
    return out

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--reps', type=int, default=3, help='timed repetitions; the fastest counts')
    p.add_argument('--lrs', type=float, nargs='+', default=[0.01, 0.1], help='learning rates of the SGD step')
    p.add_argument('--models', nargs='+', default=['resnet18', 'mobilenet_v2'])
    p.add_argument('--threads', type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument('--by-shape', type=int, default=0, metavar='K', help='also time the K costliest shapes one by one')
    a = p.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    dev = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {dev}, load average {os.getloadavg()[0]:.1f} "
          f"(other processes on this machine make timings noisy), fastest of {a.reps}")
    for name in a.models: bench(name, a.lrs, a.reps, a.by_shape)
