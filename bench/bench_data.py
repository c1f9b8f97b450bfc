"""Does the data path cost anything? One CIFAR-10 epoch through `svd-bn ablate`'s runner against a bare PyTorch loop.

Run: python bench/bench_data.py [--path ../shared/data/cifar10] [--reps 2] [--device cuda]
Both sides train the same model (small, SGD, no projection) for one epoch on 5,000 training images, then score the 10,000
test images. The runner's side is `train_one` on `get_dls('cifar10', ...)`, exactly as `svd-bn ablate` calls it: fastai's
Learner, its callbacks, and the tensor data path (batches sliced from uint8 tensors on the device, converted and
normalized there). The bare side is a plain PyTorch loop over random tensors already on the device, with torch.optim.SGD.
It prints both times and their ratio, in wall-clock seconds and, on the CPU, in CPU seconds of this process (with one
thread, the work itself: waiting for a core on a busy machine does not count). The bar is 1.15.
Not a test: the numbers depend on the machine and its load. The two sides alternate, so slow drift hits both alike.
"""
import argparse, statistics, time, warnings
from pathlib import Path
import torch
from torch import nn
import torch.nn.functional as F
warnings.filterwarnings('ignore')
from svd_bn.data import get_dls
from svd_bn.experiments import Config, train_one, recipes
from svd_bn.models import small

def sync(device):
    if device.type == 'cuda': torch.cuda.synchronize(device)

def bare(n_train, n_test, device, bs=64) -> tuple:
    "Wall and CPU seconds for one epoch of plain PyTorch on random tensors (drop_last, as fastai's training loader), then scoring `n_test`."
    torch.manual_seed(0)
    x, y = torch.randn(n_train, 3, 32, 32, device=device), torch.randint(0, 10, (n_train,), device=device)
    xt, yt = torch.randn(n_test, 3, 32, 32, device=device), torch.randint(0, 10, (n_test,), device=device)
    model = small(c_in=3, n_out=10).to(device)
    r = recipes['sgd']
    opt = torch.optim.SGD(model.parameters(), lr=r['lr'], momentum=r['mom'], weight_decay=r['wd'])
    sync(device); t, c = time.perf_counter(), time.process_time()
    model.train()
    for i in torch.randperm(n_train, device=device)[:n_train // bs * bs].split(bs):
        loss = F.cross_entropy(model(x[i]), y[i])
        loss.backward(); opt.step(); opt.zero_grad()
    model.eval()
    with torch.no_grad():
        correct = sum((model(xt[i:i + bs]).argmax(1) == yt[i:i + bs]).sum() for i in range(0, n_test, bs))
    float(correct); sync(device)
    return time.perf_counter() - t, time.process_time() - c

def runner(dls, n_train, device) -> tuple:
    "Wall and CPU seconds for `train_one` of one SGD epoch without the projection: what `svd-bn ablate` does per run."
    sync(device); t, c = time.perf_counter(), time.process_time()
    train_one(Config('cifar10', 'small', 'sgd', orth=False, epochs=1, train_size=n_train), dls)
    sync(device)
    return time.perf_counter() - t, time.process_time() - c

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--path', default=str(Path(__file__).resolve().parents[2]/'shared'/'data'/'cifar10'), help='CIFAR-10 in fastai layout')
    p.add_argument('--train-size', type=int, default=5000)
    p.add_argument('--reps', type=int, default=2)
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--threads', type=int, default=1, help="torch threads (svd-bn ablate's default on the CPU)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    t = time.perf_counter()
    dls = get_dls('cifar10', path=a.path, train_size=a.train_size, device=device)   # decodes into the cache on a first run
    n_test = len(dls.valid_ds)
    print(f"data: {a.train_size:,} training and {n_test:,} test images, ready in {time.perf_counter() - t:.1f} s; "
          f"{device}{'' if device.type == 'cuda' else f', {a.threads} thread(s)'}", flush=True)
    runner(dls, a.train_size, device); bare(a.train_size, n_test, device)   # warm-up: first allocations, kernels, caches
    rs, bs_ = [], []
    for i in range(a.reps):
        bs_.append(bare(a.train_size, n_test, device)); rs.append(runner(dls, a.train_size, device))
        print(f"rep {i + 1}: bare loop {bs_[-1][0]:.2f} s, svd-bn ablate's runner {rs[-1][0]:.2f} s, ratio {rs[-1][0] / bs_[-1][0]:.3f}"
              + ('' if device.type == 'cuda' else f"; CPU seconds {bs_[-1][1]:.2f} and {rs[-1][1]:.2f}, ratio {rs[-1][1] / bs_[-1][1]:.3f}"), flush=True)
    med = lambda xs, k: statistics.median(x[k] for x in xs)
    print(f"ratio of medians, runner / bare loop (the bar is 1.15): wall clock {med(rs, 0) / med(bs_, 0):.3f}"
          + ('' if device.type == 'cuda' else f", CPU time {med(rs, 1) / med(bs_, 1):.3f}"))
