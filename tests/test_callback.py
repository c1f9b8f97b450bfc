"Tests of OrthCallback and register_orth_hook with real Learners on digits, and of the hook under DDP."
import math, os, socket
import numpy as np, pytest, torch
from torch import nn
from functools import partial
from fastai.learner import Learner, load_learner
from fastai.metrics import accuracy
from fastai.optimizer import OptimWrapper
from fastai.callback.core import Callback, CancelStepException
from fastai.callback.fp16 import MixedPrecision
from fastai.torch_core import set_seed
from fastai.callback.schedule import fit_one_cycle  # patches Learner.fit_one_cycle
from svd_bn import OrthCallback, register_orth_hook, orth_error, orth_report, orthogonalize_
from svd_bn.data import get_dls
from svd_bn.models import small

@pytest.fixture(scope='module')
def dls(): return get_dls('digits', bs=64)

def plain(t): return t.as_subclass(torch.Tensor)  # fastai's typed batches, as a plain PyTorch loop sees them

def learner(dls, cbs=(), seed=0, **kw):
    set_seed(seed, reproducible=True)
    return Learner(dls, small(c_in=1), metrics=accuracy, cbs=list(cbs), **kw)

def fit(learn, n=1, lr=1e-2, one_cycle=True):
    with learn.no_bar(), learn.no_logging():
        (learn.fit_one_cycle if one_cycle else learn.fit)(n, lr)

class LossLog(Callback):
    def __init__(self): self.losses = []
    def after_batch(self):
        if self.training: self.losses.append(self.loss.item())

class CheckAfter(Callback):
    "Runs after OrthCallback: the invariant holds after every step."
    order = OrthCallback.order + 1
    def __init__(self, **kw): self.kw, self.errs = kw, []
    def after_step(self): self.errs.append(orth_error(self.model, **self.kw))

class CaptureBefore(Callback):
    "Runs before OrthCallback (after the optimizer step): keeps the stepped, unprojected weights."
    order = OrthCallback.order - 1
    def after_step(self): self.stepped = [p.detach().clone() for p in self.model.parameters()]

class CompareAfter(Callback):
    "Runs after OrthCallback: its weights equal the reference projection of what CaptureBefore kept."
    order = OrthCallback.order + 1
    def __init__(self, cap): self.cap, self.diffs = cap, []
    def after_step(self):
        ref = small(c_in=1)
        with torch.no_grad():
            for p, s in zip(ref.parameters(), self.cap.stepped): p.copy_(s)
        orthogonalize_(ref, method='svd')
        self.diffs.append(max((a - b).abs().max().item() for a, b in zip(ref.parameters(), self.model.parameters())))

def test_tight_all_layers_every_step(dls):
    chk, log = CheckAfter(layers='all', normalize_rows='tight'), LossLog()
    learn = learner(dls, [OrthCallback(layers='all', normalize_rows='tight'), chk, log])
    fit(learn, 3)
    assert len(chk.errs) == 3 * len(dls.train)
    assert max(chk.errs) <= 1e-5
    assert all(math.isfinite(l) for l in log.losses)
    assert learn.validate()[1] > 0.5  # chance is 0.1

def test_defaults_match_reference_projection(dls):
    cap, log = CaptureBefore(), LossLog()
    cmp = CompareAfter(cap)
    learn = learner(dls, [OrthCallback(), cap, cmp, log])
    fit(learn, 3)
    assert len(cmp.diffs) == 3 * len(dls.train)
    assert max(cmp.diffs) <= 1e-5
    assert all(math.isfinite(l) for l in log.losses)
    assert learn.validate()[1] > 0.5

def test_before_fit_projects_and_sets_bias_once(dls):
    learn = learner(dls, [OrthCallback(bn_bias=1.)])
    bns = [m for m in learn.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    fit(learn, 1)
    trained = [m.bias.detach().clone() for m in bns]
    assert not all(torch.equal(t, torch.ones_like(t)) for t in trained)  # training moved them from 1
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 0.)  # second fit, lr 0: biases must stay as trained
    for m, t in zip(bns, trained): assert torch.equal(m.bias, t)

def test_bias_set_at_start(dls):
    learn = learner(dls, [OrthCallback(bn_bias=1.)])
    fit(learn, 1, lr=0., one_cycle=False)
    for m in learn.model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm): assert torch.equal(m.bias, torch.ones_like(m.bias))

def test_every(dls):
    chk = CheckAfter(normalize_rows=False)
    learn = learner(dls, [OrthCallback(normalize_rows=False, every=3), chk])
    fit(learn, 1)
    errs = torch.tensor(chk.errs)
    assert (errs[2::3] <= 1e-5).all()
    assert (errs[0::3] > 1e-5).all()

class SkipOddSteps(Callback):
    "Cancels every other step, as MixedPrecision does on an fp16 overflow."
    order = MixedPrecision.order
    def __init__(self): self.i = 0
    def before_step(self):
        self.i += 1
        if self.i % 2: raise CancelStepException()

def test_cancelled_steps_are_not_projected(dls):
    assert OrthCallback.order > MixedPrecision.order
    chk = CheckAfter(normalize_rows=False)
    learn = learner(dls, [OrthCallback(normalize_rows=False), SkipOddSteps(), chk])
    fit(learn, 1)
    assert learn.orth.n_steps == len(dls.train) // 2  # only the steps that happened
    assert max(chk.errs) <= 1e-5
    assert math.isfinite(learn.validate()[0])

def test_no_projection_in_validation(dls):
    "validate and get_preds send before_fit too: the weights must not move."
    learn = learner(dls, [OrthCallback(bn_bias=1.)])
    w = [p.detach().clone() for p in learn.model.parameters()]
    learn.validate(); learn.get_preds()
    for a, b in zip(w, learn.model.parameters()): assert torch.equal(a, b)
    fit(learn, 1)
    n, hist = learn.orth.n_steps, list(learn.orth.hist)
    w = [p.detach().clone() for p in learn.model.parameters()]
    learn.validate()
    for a, b in zip(w, learn.model.parameters()): assert torch.equal(a, b)
    assert learn.orth.n_steps == n == len(dls.train)
    assert learn.orth.hist == hist

def test_history_and_plot(dls):
    learn = learner(dls, [OrthCallback()])
    fit(learn, 2)
    assert len(learn.orth.hist) == 3  # the start, then one per epoch
    assert [s for s, _ in learn.orth.hist] == [0, len(dls.train), 2 * len(dls.train)]
    ax = learn.orth.plot()
    assert len(ax.lines) == 1

@pytest.mark.parametrize('kw', [dict(layers='conv'), dict(method='qr'), dict(every=0), dict(every=1.5),
                                dict(bn_bias=float('inf')), dict(bn_bias='1'), dict(normalize_rows='yes')])
def test_bad_options_fail_at_construction(kw):
    with pytest.raises(ValueError, match='Expected'): OrthCallback(**kw)

def test_save_load_roundtrip(dls, tmp_path):
    learn = learner(dls, [OrthCallback()], path=tmp_path)
    fit(learn, 1)
    learn.save('m')
    w = [p.detach().clone() for p in learn.model.parameters()]
    learn2 = learner(dls, [OrthCallback()], path=tmp_path, seed=1)
    learn2.load('m')
    for a, b in zip(w, learn2.model.parameters()): assert torch.equal(a, b)
    fit(learn2, 1)  # and it trains on with the callback
    assert learn2.orth.n_steps == len(dls.train)

def test_export_load_learner(dls, tmp_path):
    learn = learner(dls, [OrthCallback()], path=tmp_path)
    fit(learn, 1)
    learn.export('export.pkl')
    learn2 = load_learner(tmp_path/'export.pkl')
    assert isinstance(learn2.orth, OrthCallback)
    xb = dls.one_batch()[0]
    learn.model.eval(); learn2.model.eval()
    assert torch.allclose(learn.model(xb), learn2.model(xb))
    learn2.dls = dls
    fit(learn2, 1)
    assert orth_error(learn2.model) < 1e-2
    assert learn2.orth.n_steps == 2 * len(dls.train)   # the exported callback goes on counting real steps

def test_bf16_autocast_cpu(dls):
    "A bfloat16 autocast loop on the CPU, with the hook; and bfloat16 weights."
    set_seed(0, reproducible=True)
    model = small(c_in=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    register_orth_hook(opt, model, layers='all', normalize_rows=False)
    losses = []
    for i, (xb, yb) in zip(range(10), dls.train):
        xb, yb = plain(xb), plain(yb)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            loss = nn.functional.cross_entropy(model(xb), yb)
        loss.backward(); opt.step(); opt.zero_grad(); losses.append(loss.item())
    assert all(math.isfinite(l) for l in losses)
    assert orth_error(model, layers='all', normalize_rows=False) <= 1e-5
    mb = small(c_in=1).to(torch.bfloat16)
    orthogonalize_(mb, layers='all', normalize_rows=False)
    assert all(p.dtype == torch.bfloat16 for p in mb.parameters())
    assert orth_error(mb, layers='all', normalize_rows=False) < 2e-2  # bfloat16 has 8 bits of mantissa

def test_bf16_learner_cpu(dls):
    learn = learner(dls, [OrthCallback()]).to_bf16()
    fit(learn, 1)
    assert math.isfinite(learn.validate()[0])

@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_fp16_cuda(dls):
    learn = learner(dls, [OrthCallback(layers='all', normalize_rows='tight')]).to_fp16()
    fit(learn, 1)
    assert next(learn.model.parameters()).is_cuda
    assert orth_error(learn.model, layers='all', normalize_rows='tight') < 1e-4

def test_hook_equals_callback(dls):
    "Same seed, same batches, same torch SGD: the hook and the callback give the same weights."
    train = dls.train.new(shuffle=False)
    sgd = partial(OptimWrapper, opt=torch.optim.SGD, momentum=0.9)
    learn = learner(dls, [OrthCallback(layers='all')], opt_func=sgd)
    learn.dls.train = train
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 0.05)
    set_seed(0, reproducible=True)
    model = small(c_in=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    h = register_orth_hook(opt, model, layers='all')
    model.train()
    for xb, yb in train:
        nn.functional.cross_entropy(model(plain(xb)), plain(yb)).backward(); opt.step(); opt.zero_grad()
    h.remove()
    for a, b in zip(learn.model.parameters(), model.parameters()): assert torch.allclose(a, b, atol=1e-6)
    assert orth_error(model) == pytest.approx(orth_error(learn.model), abs=1e-6)

def test_hook_remove(dls):
    model = small(c_in=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    h = register_orth_hook(opt, model, normalize_rows=False)
    xb, yb = map(plain, dls.one_batch())
    nn.functional.cross_entropy(model(xb), yb).backward(); opt.step()
    assert orth_error(model, normalize_rows=False) <= 1e-5
    h.remove(); opt.zero_grad()
    nn.functional.cross_entropy(model(xb), yb).backward(); opt.step()
    assert orth_error(model, normalize_rows=False) > 1e-4

def _free_port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def _ddp_worker(rank, world, port, q):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=world)
    try:
        torch.manual_seed(rank)  # different on purpose: DDP broadcasts rank 0's weights
        model = small(c_in=1)
        ddp = DDP(model)
        opt = torch.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9)
        register_orth_hook(opt, model, layers='all')
        g = torch.Generator().manual_seed(100 + rank)  # each rank its own data
        same, errs = [], []
        for step in range(4):
            x, y = torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g)
            nn.functional.cross_entropy(ddp(x), y).backward(); opt.step(); opt.zero_grad()
            flat = torch.cat([p.detach().flatten() for p in model.parameters()])
            gathered = [torch.empty_like(flat) for _ in range(world)]
            dist.all_gather(gathered, flat)
            same.append(all(torch.equal(gathered[0], t) for t in gathered))
            errs.append(orth_error(model, layers='all'))
        q.put((rank, same, errs))
    finally: dist.destroy_process_group()

def test_ddp_gloo_bit_identical():
    import torch.multiprocessing as mp
    ctx = mp.get_context('spawn')
    q, port = ctx.Queue(), _free_port()
    procs = [ctx.Process(target=_ddp_worker, args=(r, 2, port, q)) for r in range(2)]
    for p in procs: p.start()
    res = [q.get(timeout=120) for _ in procs]
    for p in procs: p.join(timeout=60)
    assert all(p.exitcode == 0 for p in procs)
    for rank, same, errs in res:
        assert same == [True] * 4
        assert max(errs) < 0.1

# --- fastai's workflows: lr_find, freezing, fine_tune, nested validate, GradientAccumulation, between fits --------

class BiasAtStart(Callback):
    order = OrthCallback.order + 1
    def before_fit(self): self.seen = None
    def before_train(self):
        if self.seen is None: self.seen = [m.bias.detach().clone() for m in self.model.modules() if isinstance(m, nn.BatchNorm2d)]

def test_lr_find_then_fit_starts_like_a_fit(dls, tmp_path):
    learn = learner(dls, [OrthCallback(bn_bias=1.)], path=tmp_path)
    before = {k: v.clone() for k, v in learn.model.state_dict().items()}
    with learn.no_bar(), learn.no_logging(): learn.lr_find(show_plot=False)
    assert all(torch.equal(v, learn.model.state_dict()[k]) for k, v in before.items())   # lr_find leaves the model as it found it
    rec = BiasAtStart()
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-2, cbs=rec)
    assert rec.seen and all(torch.equal(b, torch.ones_like(b)) for b in rec.seen)
    assert learn.orth.n_steps == len(dls.train) and learn.orth.hist[0][0] == 0
    ref = learner(dls, [OrthCallback(bn_bias=1.)])                                       # the same fit without lr_find
    with ref.no_bar(), ref.no_logging(): ref.fit(1, 1e-2)
    assert [s for s, _ in ref.orth.hist] == [s for s, _ in learn.orth.hist]

def test_frozen_weight_unchanged_by_fit(dls):
    learn = learner(dls, [OrthCallback(layers='all')])
    frozen = [learn.model[0][0].weight, [m for m in learn.model.modules() if isinstance(m, nn.Linear)][-1].weight]
    for w in frozen: w.requires_grad_(False)
    snap = [w.detach().clone() for w in frozen]
    fit(learn, 1)
    for w, s in zip(frozen, snap): assert torch.equal(w, s)
    assert list(orth_report(learn.model, 'all')['skipped']).count('frozen') == 2
    for w in frozen: w.requires_grad_(True)                  # unfrozen: projected from the next fit on
    fit(learn, 1)
    assert not any(torch.equal(w, s) for w, s in zip(frozen, snap))
    assert (orth_report(learn.model, 'all')['skipped'] == '').all()

def test_register_hook_skips_frozen(dls):
    set_seed(0, reproducible=True)
    model = small(c_in=1)
    w = model[0][0].weight.requires_grad_(False)
    snap = w.detach().clone()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05)
    h = register_orth_hook(opt, model, layers='all')
    xb, yb = (plain(t) for t in dls.one_batch())
    for _ in range(2): nn.functional.cross_entropy(model(xb), yb).backward(); opt.step(); opt.zero_grad()
    assert torch.equal(w, snap)
    h.remove()

def test_fine_tune_vision_learner_keeps_frozen_body():
    from fastai.data.core import DataLoaders
    from fastai.vision.learner import vision_learner
    from torchvision.models import resnet18
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(160, 3, 16, 16, generator=g), torch.randint(0, 4, (160,), generator=g)
    ds = list(zip(x, y))
    dls3 = DataLoaders.from_dsets(ds[:128], ds[128:], bs=32, device='cpu')
    class Check(Callback):
        order = OrthCallback.order + 1
        def __init__(self): self.res = []
        def before_fit(self): self.snap = {n: p.detach().clone() for n, p in self.model.named_parameters() if not p.requires_grad}
        def after_fit(self): self.res.append((len(self.snap), all(torch.equal(p, self.snap[n]) for n, p in self.model.named_parameters() if n in self.snap)))
    set_seed(0, reproducible=True)
    chk = Check()
    learn = vision_learner(dls3, resnet18, pretrained=False, n_out=4, normalize=False, loss_func=nn.CrossEntropyLoss(),
                           cbs=[OrthCallback(normalize_rows=False), chk])
    with learn.no_bar(), learn.no_logging(): learn.fine_tune(1, 1e-3)
    (n1, kept), (n2, _) = chk.res
    assert n1 > 0 and kept and n2 == 0
    assert orth_error(learn.model, normalize_rows=False) <= 1e-5

class ValidateMidEpoch(Callback):
    order = OrthCallback.order + 1
    def __init__(self): self.steps = 0
    def after_step(self): self.steps += 1
    def after_batch(self):
        if self.training and self.iter == 3: self.learn.validate()

def test_validate_mid_epoch(dls):
    mid = ValidateMidEpoch()
    learn = learner(dls, [OrthCallback(normalize_rows=False), mid])
    with learn.no_bar(), learn.no_logging(): learn.fit(2, 1e-2)
    assert learn.orth.n_steps == mid.steps > 0
    assert orth_error(learn.model, normalize_rows=False) <= 1e-5
    assert learn.orth.proj is None   # released at the end of the fit

def test_gradient_accumulation_projects_real_steps(dls):
    from fastai.callback.training import GradientAccumulation
    chk = CheckAfter(normalize_rows=False)
    learn = learner(dls, [OrthCallback(normalize_rows=False), GradientAccumulation(n_acc=128), chk])
    fit(learn, 1)
    assert learn.orth.n_steps == len(chk.errs) == len(dls.train) * dls.bs // 128
    assert max(chk.errs) <= 1e-5

def test_validate_get_preds_between_fits_keep_count(dls):
    learn = learner(dls, [OrthCallback()])
    fit(learn, 1)
    learn.validate(); learn.get_preds(); learn.get_preds(ds_idx=0)
    fit(learn, 1)
    assert learn.orth.n_steps == 2 * len(dls.train)
    assert [s for s, _ in learn.orth.hist] == [0, len(dls.train), len(dls.train), 2 * len(dls.train)]

def test_bf16_learner_counts_every_step(dls):
    learn = learner(dls, [OrthCallback(normalize_rows=False)]).to_bf16()
    fit(learn, 1)
    assert learn.orth.n_steps == len(dls.train)
    assert orth_error(learn.model, normalize_rows=False) <= 1e-5

def test_zero_head_with_all_layers(dls):
    "A head that starts at zero, as torchvision's vit_b_16 has: the fit starts and projects it."
    learn = learner(dls, [OrthCallback(layers='all', normalize_rows=False)])
    lin = [m for m in learn.model.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad(): lin.weight.zero_()
    fit(learn, 1)
    assert orth_error(learn.model, layers='all', normalize_rows=False) <= 1e-5

# --- library inputs: no model, swapped arguments, NumPy and low-precision biases ---------------------------------

def _state(model): return {k: v.clone() for k, v in model.state_dict().items()}
def _same(model, state): return all(torch.equal(v, state[k]) for k, v in model.state_dict().items())

def test_register_hook_refuses_bad_arguments_before_changing_anything():
    model = small(c_in=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    state = _state(model)
    for args, msg in [((model, opt), 'Expected a torch.optim.Optimizer for opt. Got OrthNet.'),   # swapped
                      ((None, model), 'Expected a torch.optim.Optimizer for opt. Got NoneType.'),
                      ((model, model), 'Expected a torch.optim.Optimizer for opt. Got OrthNet.'),
                      ((opt, None), 'Expected an nn.Module for model. Got NoneType.'),
                      ((opt, opt), 'Expected an nn.Module for model. Got SGD.')]:
        with pytest.raises(TypeError, match=f"^{msg}$"): register_orth_hook(*args, layers='all', bn_bias=1.)
    assert _same(model, state) and not opt._optimizer_step_post_hooks

def test_callback_start_refuses_a_non_module():
    cb = OrthCallback(bn_bias=1.)
    with pytest.raises(TypeError, match='^Expected an nn.Module for model. Got NoneType.$'): cb.start_(None)
    assert cb.proj is None and not cb.bias_done

def test_numpy_bn_bias_is_accepted():
    assert OrthCallback(bn_bias=np.float32(0.5)).bn_bias == 0.5
    model = small(c_in=1)
    h = register_orth_hook(torch.optim.SGD(model.parameters(), lr=0.1), model, bn_bias=np.float32(0.25))
    bns = [m for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    assert bns and all(torch.equal(m.bias, torch.full_like(m.bias, 0.25)) for m in bns)
    h.remove()

def test_bn_bias_that_rounds_to_zero_in_half_is_refused_before_projecting():
    model = small(c_in=1).half()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    state = _state(model)
    with pytest.raises(ValueError, match='does not round to 0 in torch.float16. Got 1e-08'): register_orth_hook(opt, model, bn_bias=1e-8)
    assert _same(model, state)
