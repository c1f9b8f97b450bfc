"Tests of svd_bn.muon: parity with torch.optim.Muon, one matrix per conv group, the plan, the other rule, and fastai's workflows."
import math, tempfile
from functools import partial
from pathlib import Path
import pytest, torch
from torch import nn
from fastai.learner import Learner
from fastai.metrics import accuracy
from fastai.torch_core import set_seed
from fastai.optimizer import Adam, SGD
from fastai.callback.schedule import fit_one_cycle  # patches Learner.fit_one_cycle
from svd_bn import OrthCallback, orth_error
from svd_bn.muon import Muon, muon_plan, muon_report, ns_orth, lr_scale, muon_abc, classic_abc
from svd_bn.orth import matrix_view, polar_svd
from svd_bn.data import get_dls
from svd_bn.models import small, large

def mlp(seed=0, bias=False):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, 24, bias=bias), nn.ReLU(), nn.Linear(24, 24, bias=bias), nn.ReLU(), nn.Linear(24, 5, bias=bias))

def run(net, opt, steps=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        net(torch.randn(8, 12, generator=g)).pow(2).mean().backward(); opt.step(); opt.zero_grad()

@pytest.mark.parametrize('adjust', [None, 'original', 'match_rms_adamw', 'spectral_unclamped'])
@pytest.mark.parametrize('nesterov', [True, False])
@pytest.mark.parametrize('wd', [0., 0.1])
def test_same_weights_as_torch_muon(adjust, nesterov, wd):
    a, b = mlp(), mlp()
    run(a, torch.optim.Muon(a.parameters(), lr=0.03, weight_decay=wd, momentum=0.9, nesterov=nesterov, adjust_lr_fn=adjust, ns_steps=4))
    run(b, Muon(list(b.parameters()), lr=0.03, wd=wd, muon_mom=0.9, nesterov=nesterov, adjust=adjust, ns_steps=4))
    ref = mlp()
    assert max((p - r).abs().max().item() for p, r in zip(a.parameters(), ref.parameters())) > 1e-3   # they moved
    assert max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters())) <= 1e-6

def test_same_weights_as_torch_muon_with_adamw_for_the_rest():
    "The setup torch's docs give (Muon for matrices, AdamW for biases) is one fastai optimizer here."
    a, b = mlp(bias=True), mlp(bias=True)
    mats = [p for p in a.parameters() if p.ndim == 2]; rest = [p for p in a.parameters() if p.ndim != 2]
    ta = torch.optim.Muon(mats, lr=0.01, weight_decay=0.01, adjust_lr_fn='match_rms_adamw')
    tb = torch.optim.AdamW(rest, lr=0.01, betas=(0.9, 0.99), eps=1e-5, weight_decay=0.01)
    g = torch.Generator().manual_seed(1)
    ours = Muon(list(b.parameters()), lr=0.01, wd=0.01, mom=0.9, sqr_mom=0.99, eps=1e-5)
    for _ in range(5):
        x = torch.randn(8, 12, generator=g)
        for net, opts in ((a, (ta, tb)), (b, (ours,))):
            net(x).pow(2).mean().backward()
            for o in opts: o.step(); o.zero_grad()
    assert max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters())) <= 1e-6

def test_one_matrix_per_group():
    torch.manual_seed(0)
    conv = nn.Conv2d(12, 6, 3, groups=3, bias=False)   # 3 groups of 2 filters over 4 channels: 3 matrices of 2×36
    w0 = conv.weight.detach().clone()
    opt = Muon([conv.weight], lr=0.05, wd=0., nesterov=False, plan={conv.weight: 3})
    conv(torch.randn(2, 12, 5, 5)).pow(2).mean().backward()   # not .sum(): its gradient is the same for every filter, rank 1
    g = conv.weight.grad.clone()
    opt.step()
    upd = matrix_view((w0 - conv.weight.detach()) / (0.05 * lr_scale(2, 36)), 3)
    want = torch.stack([ns_orth(m).float() for m in matrix_view(0.05 * g, 3)])   # the momentum after one step: (1 − μ)G
    assert (upd - want).abs().max() <= 1e-5
    for m in upd: s = torch.linalg.svdvals(m); assert ((s > 0.5) & (s < 1.25)).all()

def test_ns_orth():
    torch.manual_seed(0)
    x = torch.randn(3, 10, 30)
    assert torch.equal(ns_orth(x), torch.stack([ns_orth(m) for m in x]))   # batched = one by one, bit for bit
    assert torch.equal(ns_orth(x.mT), ns_orth(x).mT)                       # tall: the transposed problem
    assert ns_orth(x).dtype == torch.bfloat16 and ns_orth(x, dtype=torch.float32).dtype == torch.float32
    assert (ns_orth(x.double(), 60, classic_abc, dtype=torch.float64) - polar_svd(x.double())).abs().max() < 1e-8
    assert ns_orth(torch.zeros(4, 6)).abs().max() == 0                     # a zero update stays zero (the eps floor)
    with pytest.raises(ValueError, match=r'Got shape \(5,\)'): ns_orth(torch.randn(5))

def test_plan_and_report():
    net = small(c_in=1)
    plan = muon_plan(net)
    names = {id(p): n for n, p in net.named_parameters()}
    assert names[id(next(iter(plan)))] != '0.0.weight'                          # the stem conv is left out
    assert all(p.ndim >= 2 for p in plan)                                       # never a bias or a norm parameter
    assert len(muon_plan(net, ends=True)) == len(plan) + 2
    rep = muon_report(net, plan)
    assert (rep.rule == 'Muon').sum() == len(plan) and rep.rule.iloc[0] == 'other' and rep.rule.iloc[-2] == 'other'
    frozen = small(c_in=1); frozen[1].convs[0][0].weight.requires_grad_(False)
    assert len(muon_plan(frozen)) == len(plan)                                  # frozen weights keep their place: unfreeze() brings them back
    with pytest.raises(TypeError, match='Expected an nn.Module'): muon_plan([1, 2])

def test_errors():
    w = nn.Parameter(torch.randn(6, 4, 3, 3))
    with pytest.raises(ValueError, match='divides by groups=4'): Muon([w], plan={w: 4})
    with pytest.raises(ValueError, match='Got True'): Muon([w], plan={w: True})
    with pytest.raises(ValueError, match="Got 'rms'"): Muon([w], adjust='rms')
    with pytest.raises(ValueError, match="Got 'lamb'"): Muon([w], other='lamb')

def test_no_plan_flattens_like_muons_authors():
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 8, 3, bias=False)
    opt = Muon([conv.weight]); assert opt.state[conv.weight]['ns_groups'] == 1
    b = nn.Parameter(torch.randn(8)); opt = Muon([conv.weight, b]); assert 'ns_groups' not in opt.state[b]

def test_sgd_for_the_rest_matches_fastai_sgd():
    torch.manual_seed(0)
    a, b = nn.Parameter(torch.randn(7)), nn.Parameter(torch.randn(7))
    b.data.copy_(a.data)
    oa, ob = Muon([a], lr=0.1, mom=0.9, wd=0.01, other='sgd'), SGD([b], lr=0.1, mom=0.9, wd=0.01, decouple_wd=True)
    for _ in range(4):
        for p, o in ((a, oa), (b, ob)): p.pow(3).sum().backward(); o.step(); o.zero_grad()
    assert torch.equal(a, b)

@pytest.fixture(scope='module')
def dls(): return get_dls('digits', bs=64)

def test_in_a_learner_with_the_projection_and_one_cycle(dls):
    set_seed(0, reproducible=True)
    model = small(c_in=1)
    learn = Learner(dls, model, opt_func=partial(Muon, plan=muon_plan(model)), metrics=accuracy, cbs=OrthCallback())
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(1, 1e-2)
    assert orth_error(model) < 1e-4 and learn.recorder.values[-1][2] > 0.5
    hp = learn.opt.hypers[0]
    assert hp['muon_mom'] == 0.95 and 0.85 <= hp['mom'] <= 0.95   # one-cycle drives Adam's momentum, not Muon's
    with tempfile.TemporaryDirectory() as d:   # the optimizer state round-trips with learn.save/load
        learn.path = Path(d); learn.save('m')
        state = {id(p): dict(s) for p, s in learn.opt.state.items()}
        learn.opt.clear_state(); learn.load('m')
        assert all(learn.opt.state[p].get('ns_groups') == state[id(p)].get('ns_groups') for p in model.parameters())
        with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3)
