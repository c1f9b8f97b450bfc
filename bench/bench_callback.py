"""What does OrthCallback add to a training step? The same fit with and without it, timed side by side in one process.

Run: python bench/bench_callback.py [--reps 5]
Prints the median time per step of each configuration and its ratio to the fit without the callback.
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

def time_fit(dls, cbs, c_in):
    "Seconds per optimizer step of one epoch (validation excluded)."
    set_seed(0)
    learn = Learner(dls, small(c_in=c_in), loss_func=nn.CrossEntropyLoss(), cbs=cbs)
    times = []
    class Timer(Callback):
        order = 100
        def before_batch(self): self.t = time.perf_counter()
        def after_batch(self):
            if self.training: times.append(time.perf_counter() - self.t)
    learn.add_cb(Timer())
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-2)
    return statistics.median(times[2:])  # skip the first steps (cold caches, first projection)

def bench(name, dls, c_in, reps):
    cfgs = {'no callback': lambda: [], "layers='pointwise'": lambda: [OrthCallback()], "layers='all'": lambda: [OrthCallback(layers='all')]}
    res = {k: [] for k in cfgs}
    for _ in range(reps):
        for k, mk in cfgs.items(): res[k].append(time_fit(dls, mk(), c_in))
    base = statistics.median(res['no callback'])
    print(f"\n{name}: small net, batch size 64, {torch.get_num_threads()} threads, median of {reps} interleaved fits")
    for k, v in res.items():
        m = statistics.median(v)
        print(f"  {k:20s} {1000*m:7.2f} ms/step   x{m/base:5.3f}   ({100*(m/base-1):+5.1f}% per step)")

if __name__ == '__main__':
    p = argparse.ArgumentParser(); p.add_argument('--reps', type=int, default=5); a = p.parse_args()
    bench('digits (1×8×8)', get_dls('digits', bs=64), 1, a.reps)
    bench('CIFAR-sized random images (3×32×32)', random_dls(), 3, a.reps)
    if torch.cuda.is_available():
        bench('CUDA, CIFAR-sized', random_dls().to('cuda'), 3, a.reps)
