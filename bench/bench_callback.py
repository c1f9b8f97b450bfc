"""What does OrthCallback add to a fit? The same fastai fit with and without it, in interleaved pairs, in one process.

For each model, pairs of fits on digits (1×8×8, batch size 64, one-cycle at lr 1e-2, seed 0, the same batches): one
without the callback, one with `OrthCallback(layers=...)` for each `--layers` value, one after the other, `--reps` times,
the plain fit first in every other pair and last in the rest.
Each pair gives a ratio (with / without, whole fit, validation included), in wall-clock time and in this process's CPU time
(with one thread, the work itself: a wait for a busy core does not count); printed: the median ratio as the percentage
the callback adds, its spread (min to max over the pairs), and a warning when the spread is too wide to read. A third
figure, 'inside', does not compare two fits: it is the time spent inside the projection calls of the fit with the
callback, over the rest of that same fit, so a machine whose speed drifts between fits disturbs it least.
Not a test: the numbers depend on the machine and its load; the pairs alternate, so slow drift hits both sides alike.

Run: python bench/bench_callback.py [--threads 1] [--reps 5] [--models small] [--epochs 4] [--layers pointwise all]
The default (small, 4 epochs, 5 pairs, pointwise and all) takes about 2 minutes on a 2-core CPU; `--models small large`
adds the large model (several times longer at 4 epochs; `--large-epochs 1` shortens it).
"""
import argparse, os, statistics, time, warnings
import torch
from torch import nn
warnings.filterwarnings('ignore')
from fastai.learner import Learner
from fastai.callback.schedule import fit_one_cycle   # patches Learner.fit_one_cycle
from fastai.torch_core import set_seed
from svd_bn import OrthCallback
from svd_bn.orth import Orthogonalizer
from svd_bn.data import get_dls
from svd_bn.models import small, large

class Inside:
    "Adds up the wall-clock seconds spent inside `Orthogonalizer.__call__` (the projection after each step) while active."
    def __enter__(self):
        self.s, self.old = 0., Orthogonalizer.__call__
        def timed(o):
            t = time.perf_counter()
            try: return self.old(o)
            finally: self.s += time.perf_counter() - t
        Orthogonalizer.__call__ = timed; return self
    def __exit__(self, *a): Orthogonalizer.__call__ = self.old

def fit_time(dls, mk, cbs, epochs):
    "Wall-clock and CPU seconds of one fit of `mk(c_in=1)` on `dls` (CPU seconds of this process: the work itself, not the wait for a core), and the seconds inside the projection."
    set_seed(0, reproducible=True)
    learn = Learner(dls, mk(c_in=1), loss_func=nn.CrossEntropyLoss(), cbs=cbs)
    t, c = time.perf_counter(), time.process_time()
    with learn.no_bar(), learn.no_logging(), Inside() as inside: learn.fit_one_cycle(epochs, 1e-2)
    return time.perf_counter() - t, time.process_time() - c, inside.s

def bench(dls, name, reps, epochs, layers):
    mk = dict(small=small, large=large)[name]
    fit_time(dls, mk, [], 1)   # warm-up
    res = {l: ([], [], []) for l in layers}
    base = []
    for r in range(reps):
        first = r % 2 == 0   # the plain fit first in even pairs, last in odd ones: a machine that slows (or speeds up) within a pair biases neither side
        if first: b = fit_time(dls, mk, [], epochs)
        ts = {l: fit_time(dls, mk, [OrthCallback(layers=l)], epochs) for l in layers}
        if not first: b = fit_time(dls, mk, [], epochs)
        base.append(b)
        for l, t in ts.items():
            for i in (0, 1): res[l][i].append(t[i] / b[i])
            res[l][2].append(1 + t[2] / (t[0] - t[2]))   # the projection's own time over the rest of the same fit
    print(f"\n{name}, digits, {epochs} epoch{'s' * (epochs != 1)}: without the callback {statistics.median(b[0] for b in base):.1f} s per fit "
          f"({statistics.median(b[1] for b in base):.1f} CPU s), median of {reps} pairs")
    for l, rss in res.items():
        for what, rs in zip(('wall-clock', 'CPU time', 'inside'), rss):
            med, lo, hi = statistics.median(rs), min(rs), max(rs)
            warn = '  [spread too wide to read: rerun on an idle machine]' if hi - lo > 0.1 else ''
            print(f"  {f'OrthCallback(layers={l!r})':34s} adds {100*(med-1):+5.1f}% {what:10s} ({'fits' if what == 'inside' else 'pairs'} from {100*(lo-1):+.1f}% to {100*(hi-1):+.1f}%){warn}")

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--threads', type=int, default=1, help='torch CPU threads (default 1, as svd-bn ablate)')
    p.add_argument('--reps', type=int, default=5, help='pairs of fits per configuration (default 5)')
    p.add_argument('--models', nargs='+', default=['small'], choices=['small', 'large'])
    p.add_argument('--epochs', type=int, default=4)
    p.add_argument('--large-epochs', type=int, default=None, help='epochs for the large model (default: --epochs)')
    p.add_argument('--layers', nargs='+', default=['pointwise', 'all'])
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, CPU, {torch.get_num_threads()} thread{'s' * (torch.get_num_threads() != 1)}, "
          f"load average {os.getloadavg()[0]:.1f} (other processes make timings noisy)")
    dls = get_dls('digits', bs=64)
    for m in a.models: bench(dls, m, a.reps, a.large_epochs or a.epochs if m == 'large' else a.epochs, a.layers)
