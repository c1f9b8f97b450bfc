"""What does OrthCallback add to a training step? The same fit with and without it, timed side by side in one process.

Run: python bench/bench_callback.py [--reps 5]
Prints the median time per step of each configuration, over the first epoch (where weights move most, so the warm-started
projection needs the most work) and over the whole fit, and how much it adds to the fit without the callback.
Not a test: the numbers depend on the machine and its load. Configurations are interleaved, so slow drift hits all alike.
"""
import argparse, statistics, time, warnings
import torch
from torch import nn
from fastai.data.core import DataLoaders
from fastai.learner import Learner
from fastai.callback.core import Callback
from fastai.torch_core import set_seed
warnings.filterwarnings('ignore')
from svd_bn import OrthCallback
from svd_bn.data import get_dls
from svd_bn.models import small

def random_dls(n=64*24, c=3, size=32, bs=64):
    "CIFAR-sized random images, so the step costs what it costs on CIFAR-10."
    x, y = torch.randn(n, c, size, size), torch.randint(0, 10, (n,))
    ds = list(zip(x, y))
    return DataLoaders.from_dsets(ds, ds[:bs], bs=bs, drop_last=True)

def time_fit(dls, cbs, c_in, epochs):
    "Seconds per optimizer step (validation excluded): the median over the first epoch, and over the whole fit."
    set_seed(0)
    learn = Learner(dls, small(c_in=c_in), loss_func=nn.CrossEntropyLoss(), cbs=cbs)
    times = []
    class Timer(Callback):
        order = 100
        def before_batch(self): self.t = time.perf_counter()
        def after_batch(self):
            if self.training: times.append((self.epoch, time.perf_counter() - self.t))
    learn.add_cb(Timer())
    with learn.no_bar(), learn.no_logging(): learn.fit(epochs, 1e-2)
    times = times[2:]  # skip the first steps (cold caches, first projection)
    return statistics.median(t for e, t in times if e == 0), statistics.median(t for _, t in times)

def bench(name, dls, c_in, reps, epochs):
    cfgs = {'no callback': lambda: [], "layers='pointwise'": lambda: [OrthCallback()], "layers='all'": lambda: [OrthCallback(layers='all')]}
    res = {k: [] for k in cfgs}
    for _ in range(reps):
        for k, mk in cfgs.items(): res[k].append(time_fit(dls, mk(), c_in, epochs))
    med = {k: [statistics.median(r[i] for r in v) for i in (0, 1)] for k, v in res.items()}
    base = med['no callback']
    print(f"\n{name}: small net, batch size 64, {torch.get_num_threads()} threads, median of {reps} interleaved fits of {epochs} epochs")
    print(f"  {'':20s} {'first epoch':>26s}   {'whole fit':>26s}")
    for k, (first, whole) in med.items():
        print(f"  {k:20s} {1000*first:7.2f} ms/step ({100*(first/base[0]-1):+5.1f}%)   {1000*whole:7.2f} ms/step ({100*(whole/base[1]-1):+5.1f}%)")

if __name__ == '__main__':
    p = argparse.ArgumentParser(); p.add_argument('--reps', type=int, default=5); p.add_argument('--epochs', type=int, default=3)
    a = p.parse_args()
    bench('digits (1×8×8)', get_dls('digits', bs=64), 1, a.reps, a.epochs)
    bench('CIFAR-sized random images (3×32×32)', random_dls(), 3, a.reps, a.epochs)
    if torch.cuda.is_available():
        bench('CUDA, CIFAR-sized', random_dls().to('cuda'), 3, a.reps, a.epochs)
