"Tests for `svd_bn.bias.init_bn_bias_`: exactly the affine batch-norm biases change, and bad values change nothing."
import math
import numpy as np, pytest, torch
from torch import nn
from hypothesis import given, settings, strategies as st
from svd_bn.bias import init_bn_bias_, bn_layers
from svd_bn.norms import BatchNorm, GroupNorm, LayerNorm, InstanceNorm, conv_net

def mixed_model() -> nn.ModuleDict:
    "Every kind of norm, affine and not, beside linear and conv layers; parameters and buffers made non-default."
    torch.manual_seed(0)
    m = nn.ModuleDict(dict(
        bn1=nn.BatchNorm1d(3), bn2=nn.BatchNorm2d(4), bn3=nn.BatchNorm3d(5), sync=nn.SyncBatchNorm(6),
        ours1=BatchNorm(7), ours2=BatchNorm(2, momentum=None),
        bn2_plain=nn.BatchNorm2d(4, affine=False), ours_plain=BatchNorm(3, affine=False),
        bn_untracked=nn.BatchNorm1d(3, track_running_stats=False),
        gn=nn.GroupNorm(2, 4), our_gn=GroupNorm(2, 4), ln=nn.LayerNorm(5), our_ln=LayerNorm(5),
        inorm=nn.InstanceNorm2d(3, affine=True), our_inorm=InstanceNorm(3, affine=True, track_running_stats=True),
        lin=nn.Linear(4, 3), conv=nn.Conv2d(2, 3, 3), conv1=nn.Conv1d(2, 3, 1),
        seq=nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(2, 2)),
    ))
    with torch.no_grad():  # random values everywhere, so "unchanged" cannot pass by accident
        for p in m.parameters(): p.copy_(torch.randn_like(p))
        for b in m.buffers():
            if b.is_floating_point(): b.copy_(torch.rand_like(b) + 0.5)
            else: b.fill_(3)
    return m

AFFINE_BN = {'bn1', 'bn2', 'bn3', 'sync', 'ours1', 'ours2', 'bn_untracked', 'seq.1'}

def snapshot(m): return {k: v.detach().clone() for k, v in m.state_dict().items()}

def is_bn_bias(key): return key.endswith('.bias') and key.rsplit('.', 1)[0] in AFFINE_BN

def test_finds_exactly_the_affine_batch_norms():
    m = mixed_model()
    found = {id(mod) for mod in bn_layers(m)}
    names = {n for n, mod in m.named_modules() if id(mod) in found}
    assert names == AFFINE_BN
    assert len(bn_layers(m)) == len(AFFINE_BN)

@pytest.mark.parametrize('value', [1.0, 0.0, -2.5, 3, np.float32(0.25), torch.tensor(0.5)])
def test_only_affine_bn_biases_change(value):
    m = mixed_model()
    before = snapshot(m)
    assert init_bn_bias_(m, value) is m
    after = m.state_dict()
    assert after.keys() == before.keys()
    changed = set()
    for k, v in after.items():
        if is_bn_bias(k):
            assert torch.equal(v, torch.full_like(v, float(value))), k
            changed.add(k.rsplit('.', 1)[0])
        else:
            assert v.dtype == before[k].dtype and torch.equal(v, before[k]), f'{k} changed'
    assert changed == AFFINE_BN
    assert all(p.requires_grad for p in m.parameters())

def test_default_value_is_one():
    m = init_bn_bias_(mixed_model())
    for mod in bn_layers(m): assert torch.equal(mod.bias, torch.ones_like(mod.bias))

@pytest.mark.parametrize('bad', [math.nan, math.inf, -math.inf, np.float64('nan'), torch.tensor(math.inf),
                                 'one', None, 1j, True, [1.0], torch.ones(2), torch.tensor(1j)])
def test_bad_value_raises_and_changes_nothing(bad):
    m = mixed_model()
    before = snapshot(m)
    with pytest.raises(ValueError, match='Expected .* Got'): init_bn_bias_(m, bad)
    for k, v in m.state_dict().items(): assert torch.equal(v, before[k]), k

def test_overflowing_value_raises_before_any_write():
    m = nn.Sequential(nn.BatchNorm1d(2), BatchNorm(2, dtype=torch.float16))
    with pytest.raises(ValueError, match='Expected a bias that is finite in torch.float16'): init_bn_bias_(m, 1e5)
    assert torch.equal(m[0].bias, torch.zeros(2))
    init_bn_bias_(m, 2.0)  # finite in both dtypes
    assert torch.equal(m[1].bias, torch.full((2,), 2.0, dtype=torch.float16))

def test_lazy_batch_norm_is_refused_then_works_once_materialized():
    m = nn.Sequential(nn.Linear(3, 4), nn.LazyBatchNorm1d())
    with pytest.raises(ValueError, match='Expected initialized'): init_bn_bias_(m)
    m(torch.randn(5, 3))
    init_bn_bias_(m, 1.5)
    assert torch.equal(m[1].bias, torch.full((4,), 1.5))

@pytest.mark.parametrize('make', [lambda: nn.BatchNorm1d(3), lambda: nn.BatchNorm2d(3), lambda: nn.BatchNorm3d(3),
                                  lambda: nn.SyncBatchNorm(3), lambda: BatchNorm(3)])
def test_single_module(make):
    bn = make()
    w = bn.weight.detach().clone()
    assert init_bn_bias_(bn, -1.0) is bn
    assert torch.equal(bn.bias, torch.full((3,), -1.0)) and torch.equal(bn.weight, w)

@pytest.mark.parametrize('make', [lambda: nn.BatchNorm2d(3, affine=False), lambda: BatchNorm(3, affine=False),
                                  lambda: nn.InstanceNorm2d(3, affine=True), lambda: InstanceNorm(3, affine=True),
                                  lambda: nn.GroupNorm(1, 3), lambda: nn.LayerNorm(3), lambda: nn.Linear(3, 3)])
def test_single_non_bn_module_is_untouched(make):
    m = make()
    before = snapshot(m)
    assert init_bn_bias_(m, 5.0) is m
    for k, v in m.state_dict().items(): assert torch.equal(v, before[k]), k

@settings(max_examples=30, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False, width=32))
def test_any_finite_float32_value_is_written_exactly(value):
    m = nn.Sequential(nn.Conv2d(1, 2, 3), BatchNorm(2), nn.BatchNorm2d(2))
    init_bn_bias_(m, value)
    for bn in (m[1], m[2]): assert torch.equal(bn.bias, torch.full((2,), value))

@pytest.mark.parametrize('norm', [BatchNorm, nn.BatchNorm2d])
def test_gradients_flow_and_training_moves_the_bias(norm):
    torch.manual_seed(0)
    net = init_bn_bias_(conv_net(norm), 1.0)
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    nn.functional.cross_entropy(net(x), y).backward()
    for bn in bn_layers(net):
        assert bn.bias.requires_grad and bn.bias.grad is not None and bn.bias.grad.abs().sum() > 0
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    opt.step()
    assert any(not torch.equal(bn.bias, torch.ones_like(bn.bias)) for bn in bn_layers(net))

def test_works_inside_autograd_context():
    "Called while gradients are on, it must not record the write in the graph."
    bn = nn.BatchNorm1d(3)
    with torch.enable_grad(): init_bn_bias_(bn, 2.0)
    assert bn.bias.is_leaf and bn.bias.grad_fn is None

def test_float64_and_meta_models():
    m = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3)).double()
    init_bn_bias_(m, 0.1)
    assert m[1].bias.dtype == torch.float64 and torch.equal(m[1].bias, torch.full((3,), 0.1, dtype=torch.float64))
    meta = nn.BatchNorm2d(4, device='meta')
    assert init_bn_bias_(meta, 1.0) is meta and meta.bias.device.type == 'meta'

# --- library inputs: no model, swapped arguments, values a low-precision bias cannot hold ------------------------

@pytest.mark.parametrize('bad', [None, 1.0, 'model', [nn.BatchNorm1d(2)], torch.zeros(2)])
def test_non_module_model_raises_type_error(bad):
    with pytest.raises(TypeError, match=f"^Expected an nn.Module for model. Got {type(bad).__name__}.$"): init_bn_bias_(bad)
    with pytest.raises(TypeError, match=f"^Expected an nn.Module for model. Got {type(bad).__name__}.$"): bn_layers(bad)

def test_swapped_arguments_raise_and_change_nothing():
    m = mixed_model()
    before = snapshot(m)
    with pytest.raises(TypeError, match='Got float'): init_bn_bias_(1.0, m)
    for k, v in m.state_dict().items(): assert torch.equal(v, before[k]), k

@pytest.mark.parametrize('dtype, value', [(torch.float16, 1e-8), (torch.float16, -1e-9), (torch.float32, 1e-50), (torch.bfloat16, 1e-50)])
def test_value_rounding_to_zero_raises_before_any_write(dtype, value):
    assert torch.tensor(value, dtype=dtype) == 0   # the premise: this dtype cannot hold it
    m = nn.Sequential(nn.BatchNorm1d(2).double(), BatchNorm(2, dtype=dtype))
    with pytest.raises(ValueError, match=f"^Expected a bias that does not round to 0 in {dtype}. Got {value}.$"): init_bn_bias_(m, value)
    assert torch.equal(m[0].bias, torch.zeros(2, dtype=torch.float64)) and torch.equal(m[1].bias, torch.zeros(2, dtype=dtype))

@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16, torch.float32])
def test_smallest_nonzero_values_and_numpy_floats_are_accepted(dtype):
    fi = torch.finfo(dtype)
    for value in (0.0, -0.0, fi.smallest_normal, fi.smallest_normal / 4, np.float32(0.25), np.float32(fi.smallest_normal), np.float64(-1.5)):
        bn = BatchNorm(3, dtype=dtype)
        init_bn_bias_(bn, value)
        assert torch.equal(bn.bias, torch.full((3,), float(value), dtype=dtype)), value
        assert bool(bn.bias[0] != 0) == (value != 0)

def test_value_that_only_float16_cannot_hold():
    "1e-8 is fine in bfloat16 and float32 (their exponent range), and refused only for the float16 layer."
    m = nn.Sequential(BatchNorm(2, dtype=torch.bfloat16), nn.BatchNorm1d(2))
    init_bn_bias_(m, 1e-8)
    assert (m[0].bias != 0).all() and (m[1].bias != 0).all()
    with pytest.raises(ValueError, match='round to 0 in torch.float16'): init_bn_bias_(m.append(nn.BatchNorm1d(2).half()), 1e-8)
