"Property and bad-input tests of `svd_bn.orth`: every layout against a float64 SVD reference, idempotence, dtypes, devices, errors."
import math, warnings
import pytest, torch
from torch import nn
from torch.nn.utils import parametrize
from hypothesis import given, settings, strategies as st, HealthCheck
import svd_bn.fast_polar as fp
from svd_bn.fast_polar import polar, run_steps
from svd_bn.orth import (Orthogonalizer, orthogonalize_, orth_error, orth_report, check_orth_options, select_layers,
                         matrix_view, polar_svd, _project, skip_reason)

@pytest.fixture(autouse=True, scope='module')
def one_thread():
    "Small matrices: one thread is faster and steadier on a shared 2-core machine; restored after this module."
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

def reference(w, groups=1, normalize_rows=True):
    "The corrected write-up rule in float64: U Vᵀ per group, unit rows for wide groups when `normalize_rows`."
    u, _, vh = torch.linalg.svd(matrix_view(w.detach().double(), groups), full_matrices=False)
    q = u @ vh
    if normalize_rows and q.shape[1] > q.shape[2]: q = q / torch.linalg.vector_norm(q, dim=-1, keepdim=True)
    return q.reshape(w.shape)

def groups_of(m): return getattr(m, 'groups', 1)
def weights(model, layers='all'): return [m.weight.detach().clone() for _, m in select_layers(model, layers)]
def max_dev(model, refs, layers='all'):
    return max((m.weight.double() - r).abs().max().item() for (_, m), r in zip(select_layers(model, layers), refs))

@st.composite
def layers(draw, wide=None):
    "A random Linear or Conv1d/2d/3d, with random groups; `wide` forces out/groups > fan_in (True) or ≤ (False)."
    kind = draw(st.sampled_from(['linear', 'conv1d', 'conv2d', 'conv3d']))
    g = 1 if kind == 'linear' else draw(st.integers(1, 4))
    ni, nf = draw(st.integers(1, 6)), draw(st.integers(1, 12))
    ks = 1 if kind == 'linear' else draw(st.integers(1, 3 if kind != 'conv3d' else 2))
    fan_in = ni * ks ** {'linear': 0, 'conv1d': 1, 'conv2d': 2, 'conv3d': 3}[kind]
    if wide is True: nf = max(nf, fan_in + 1)
    if wide is False: nf = min(nf, fan_in)
    if kind == 'linear': return nn.Linear(ni, nf)
    conv = {'conv1d': nn.Conv1d, 'conv2d': nn.Conv2d, 'conv3d': nn.Conv3d}[kind]
    return conv(ni * g, nf * g, ks, groups=g)

hyp = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- every layout, against the float64 reference -------------------------------------------------------------

@hyp
@given(layer=layers(), method=st.sampled_from(['svd', 'newton', 'auto']), rows=st.sampled_from([True, False]), seed=st.integers(0, 10**6))
def test_matches_reference_float64(layer, method, rows, seed):
    torch.manual_seed(seed)
    layer = layer.double()
    with torch.no_grad(): layer.weight.normal_()
    ref = reference(layer.weight, groups_of(layer), rows)
    orthogonalize_(layer, 'all', method, rows)
    assert (layer.weight - ref).abs().max() <= 1e-6

@hyp
@given(layer=layers(), method=st.sampled_from(['svd', 'newton', 'auto']), rows=st.sampled_from([True, False]),
       size=st.sampled_from([1e-4, 1e-3, 1e-2, 3e-2, 1e-1]), seed=st.integers(0, 10**6))
def test_matches_reference_after_a_step(layer, method, rows, size, seed):
    "float32, warm: projected, nudged like one optimizer step, projected again."
    torch.manual_seed(seed)
    orthogonalize_(layer, 'all', 'svd', rows)
    with torch.no_grad(): layer.weight.add_(size * torch.randn_like(layer.weight))
    ref = reference(layer.weight, groups_of(layer), rows)
    orthogonalize_(layer, 'all', method, rows)
    assert (layer.weight.double() - ref).abs().max() <= 1e-5

def test_every_layout_float32_svd_and_newton():
    torch.manual_seed(0)
    for method in ('svd', 'newton'):
        net = nn.Sequential(nn.Conv1d(3, 8, 3), nn.Conv2d(3, 16, 3), nn.Conv2d(16, 16, 3, groups=4), nn.Conv2d(16, 16, 3, groups=16),
                            nn.Conv2d(16, 24, 1), nn.Conv2d(16, 64, 1, groups=4), nn.Conv3d(4, 6, 2), nn.Conv3d(4, 8, 1, groups=2),
                            nn.Linear(32, 10), nn.Linear(10, 40))
        refs = [reference(m.weight, groups_of(m)) for _, m in select_layers(net, 'all')]
        orthogonalize_(net, 'all', method)
        assert max_dev(net, refs) <= 1e-5

@pytest.mark.parametrize('method', ['newton', 'auto'])
@pytest.mark.parametrize('rows', [True, False])
@pytest.mark.parametrize('size', [1e-3, 1e-2, 5e-2])
def test_large_batched_shapes_match_reference(method, rows, size):
    "Shapes large enough for the staircase of symmetric products (k ≥ 256), in batches of several matrices."
    torch.manual_seed(0)
    net = nn.Sequential(*[nn.Conv2d(288, 256, 1) for _ in range(3)], *[nn.Linear(256, 600) for _ in range(2)])
    orthogonalize_(net, 'all', 'svd', rows)
    with torch.no_grad():
        for _, m in select_layers(net, 'all'): m.weight.add_(size * m.weight.abs().mean() * torch.randn_like(m.weight))
    refs = [reference(m.weight, groups_of(m), rows) for _, m in select_layers(net, 'all')]
    o = Orthogonalizer(net, 'all', method, rows); o()
    assert [how for how, _ in o.log] == ['newton', 'newton'] and max_dev(net, refs) <= 1e-5

@pytest.mark.parametrize('rows', [True, False, 'tight'])
def test_classifier_sized_after_a_step(rows):
    "A classifier-sized Linear and a tall 1×1 conv, projected by Newton after a step: on the constraint, and the SVD's answer."
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(1280, 1000), nn.Conv2d(320, 1280, 1))
    orthogonalize_(net, 'all', 'svd', rows)
    with torch.no_grad():
        for _, m in select_layers(net, 'all'): m.weight.add_(0.01 * m.weight.abs().mean() * torch.randn_like(m.weight))
    stepped = [m.weight.detach().clone() for m in net]
    o = Orthogonalizer(net, 'all', 'auto', rows); o()
    assert all(how == 'newton' for how, _ in o.log)
    if rows is not True: assert o.error() <= 1e-5
    newton = [m.weight.detach().clone() for m in net]
    with torch.no_grad():
        for m, w in zip(net, stepped): m.weight.copy_(w)
    orthogonalize_(net, 'all', 'svd', rows)
    assert max((a - m.weight).abs().max().item() for a, m in zip(newton, net)) <= 1e-5

_PROJECT_SCRIPT = '''
import hashlib, torch
from torch import nn
from svd_bn import orthogonalize_
torch.set_num_threads(2); torch.manual_seed(0)
net = nn.Sequential(nn.Linear(1280, 1000), nn.Conv2d(320, 1280, 1), nn.Conv2d(256, 256, 3), nn.Conv2d(64, 64, 3, groups=4), nn.Linear(10, 40))
orthogonalize_(net, 'all')
with torch.no_grad():
    for p in net.parameters(): p.add_(0.01 * p.abs().mean() * torch.randn_like(p))
for method in ('auto', 'newton', 'svd'):
    for rows in (True, 'tight', False): orthogonalize_(net, 'all', method, rows)
print(hashlib.sha256(b''.join(p.detach().numpy().tobytes() for p in net.parameters())).hexdigest())
'''

def test_bitwise_identical_in_two_fresh_processes():
    "No timing decides the arithmetic: the same weights, torch and threads give the same bytes in two processes."
    import subprocess, sys
    run = lambda: subprocess.run([sys.executable, '-c', _PROJECT_SCRIPT], capture_output=True, text=True, check=True).stdout.strip()
    a, b = run(), run()
    assert len(a) == 64 and a == b

# --- idempotence and the constraint right after a projection -------------------------------------------------

@hyp
@given(layer=layers(), rows=st.sampled_from([False, 'tight']), seed=st.integers(0, 10**6))
def test_idempotent_and_on_the_constraint(layer, rows, seed):
    torch.manual_seed(seed)
    orthogonalize_(layer, 'all', normalize_rows=rows)
    assert orth_error(layer, 'all', normalize_rows=rows) <= 1e-5
    w = layer.weight.detach().clone()
    orthogonalize_(layer, 'all', normalize_rows=rows)
    assert (layer.weight - w).abs().max() <= 1e-5

@hyp
@given(layer=layers(wide=False), seed=st.integers(0, 10**6))
def test_default_is_idempotent_when_not_wide(layer, seed):
    torch.manual_seed(seed)
    orthogonalize_(layer, 'all')
    w = layer.weight.detach().clone()
    assert orth_error(layer, 'all') <= 1e-5
    orthogonalize_(layer, 'all')
    assert (layer.weight - w).abs().max() <= 1e-5

@hyp
@given(layer=layers(wide=True), seed=st.integers(0, 10**6))
def test_default_wide_gives_unit_rows(layer, seed):
    "The documented exception: one round of the alternation. Rows have unit norm; WᵀW need not be a multiple of I."
    torch.manual_seed(seed)
    orthogonalize_(layer, 'all')
    norms = torch.linalg.vector_norm(matrix_view(layer.weight.detach(), groups_of(layer)), dim=-1)
    assert (norms - 1).abs().max() <= 1e-5

def test_default_wide_is_not_idempotent():
    torch.manual_seed(0)
    lin = orthogonalize_(nn.Linear(16, 64))
    w = lin.weight.detach().clone()
    orthogonalize_(lin)
    assert (lin.weight - w).abs().max() > 1e-3

def test_tight_converges_from_random_wide():
    torch.manual_seed(0)
    for shape in [(64, 16), (40, 10), (9, 8), (100, 3)]:
        lin = nn.Linear(shape[1], shape[0])
        orthogonalize_(lin, normalize_rows='tight')
        assert orth_error(lin, normalize_rows='tight') <= 1e-5

# --- auto, newton and the host transfers ---------------------------------------------------------------------

def test_auto_uses_svd_far_and_newton_near():
    torch.manual_seed(0)
    x = torch.randn(4, 32, 200)
    log = []; q = _project([x], 'auto', log=log)[0]
    assert log == [('svd', ())]
    x2 = q + 1e-3 * torch.randn_like(q)
    log = []; _project([x2], 'auto', log=log)
    assert log[0][0] == 'newton' and len(log[0][1]) <= 2

@pytest.mark.parametrize('shape', [(1, 128, 1152), (2, 1152, 128), (1, 200, 256)])
@pytest.mark.parametrize('size', [0.02, 0.1])
def test_spectral_bound_saves_steps_and_stays_exact(shape, size):
    "After a step of 2% or 10% of the weights: ‖E²‖_F^½ bounds the residual, never costs a step over ‖E‖_F, can save one; exact."
    torch.manual_seed(0)
    q = polar_svd(torch.randn(shape))
    x = q + size * q.abs().mean() * torch.randn_like(q)
    k, kn = min(shape[1:]), min(shape[1:]) / max(shape[1:])
    xs = x * (k**0.5 / torch.linalg.matrix_norm(x))[:, None, None]
    e = fp.gram_residual(xs.double())
    r, rho = torch.linalg.matrix_norm(e).max().item(), torch.linalg.matrix_norm(e @ e).max().item()**0.5
    assert (torch.linalg.eigvalsh(e).abs().max() <= rho + 1e-9) and rho <= r
    log = []; out = run_steps([fp.polar_steps(x, 'newton', log)])[0]
    steps, (d_r, fin_r) = log[0][1], fp._next_degree(r, kn, 3e-6)
    if fin_r: assert len(steps) == 1 and steps[0] <= d_r                                  # never a higher degree …
    if fp._next_degree(rho, kn, 3e-6, e2=True)[1]: assert len(steps) == 1  # … and one step when ρ allows (E² is always read)
    assert log[0][0] == 'newton' and len(steps) <= 2
    assert (out.double() - polar_svd(x.double())).abs().max() <= 1e-5

def test_host_reads_are_shared_by_all_shapes(monkeypatch):
    "Far from orthogonal, every round reads all shapes at once; one small step later (the steady path), one read in all."
    calls = []
    real = fp._to_host
    monkeypatch.setattr(fp, '_to_host', lambda ts: calls.append(len(ts)) or real(ts))
    torch.manual_seed(0)
    net = nn.Sequential(*[nn.Linear(n, n) for n in (8, 16, 24, 32)], nn.Linear(32, 600))
    o = Orthogonalizer(net, method='newton')
    o()
    rounds = max(len(d) for _, d in o.log)   # Newton steps of the slowest shape
    assert 1 < len(calls) <= 2 * rounds + 1  # packed shapes that need more than one step are redone on their own: one more first read
    with torch.no_grad():
        for p in net.parameters(): p.add_(1e-3 * torch.randn_like(p))
    calls.clear(); o()
    assert len(calls) == 1 and calls[0] >= 2   # one transfer, for the pack of small shapes and the large one
    assert all(how == 'newton' and len(d) <= 1 for how, d in o.log)

@pytest.mark.parametrize('shape', [(2, 256, 300), (2, 300, 256), (1, 20, 30)])
def test_polar_is_differentiable(shape):
    "With autograd on, Newton–Schulz gives the SVD's gradient, at sizes that would take the staircase without autograd."
    torch.manual_seed(0)
    q = polar_svd(torch.randn(shape, dtype=torch.float64))
    x0, g, grads = q + 0.01 * torch.randn_like(q), torch.randn_like(q), {}
    for method in ('svd', 'newton'):
        x = x0.clone().requires_grad_()
        y = polar(x, method); (y * g).sum().backward(); grads[method] = x.grad
        assert (y.detach() - polar_svd(x0)).abs().max() <= 1e-12
    assert (grads['svd'] - grads['newton']).abs().max() <= 1e-9 * grads['svd'].abs().max()

def test_polar_batches():
    torch.manual_seed(0)
    x = torch.randn(5, 7, 3, dtype=torch.float64)
    for method in ('svd', 'newton', 'auto'):
        assert (polar(x, method) - polar_svd(x)).abs().max() <= 1e-10

# --- dtypes, devices, re-reading the weights -----------------------------------------------------------------

@pytest.mark.parametrize('dt', [torch.float16, torch.bfloat16])
def test_half_precision(dt):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(32, 16), nn.Conv2d(4, 8, 1)).to(dt)
    refs = [reference(m.weight.float(), groups_of(m)).to(dt) for _, m in select_layers(net, 'all')]
    orthogonalize_(net, 'all')
    for (_, m), r in zip(select_layers(net, 'all'), refs):
        assert m.weight.dtype == dt
        assert (m.weight.float() - r.float()).abs().max() <= torch.finfo(dt).eps

def test_rereads_weights_after_reload_and_dtype_change():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 4), nn.Linear(8, 4))
    o = Orthogonalizer(net, 'linear')
    net.load_state_dict(nn.Sequential(nn.Linear(8, 4), nn.Linear(8, 4)).state_dict())
    o()
    assert o.error() <= 1e-5
    net.double()
    with torch.no_grad(): net[0].weight.normal_()
    o()
    assert net[0].weight.dtype == torch.float64 and o.error() <= 1e-12

def test_mixed_dtypes_in_one_shape():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 4), nn.Linear(8, 4).double())
    refs = [reference(m.weight) for _, m in select_layers(net)]
    Orthogonalizer(net)()
    assert net[0].weight.dtype == torch.float32 and net[1].weight.dtype == torch.float64
    assert max_dev(net, refs, 'pointwise') <= 1e-5

def test_channels_last():
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 8, 3).to(memory_format=torch.channels_last)
    ref = reference(conv.weight)
    orthogonalize_(conv, 'all')
    assert (conv.weight.double() - ref).abs().max() <= 1e-5

@pytest.mark.skipif(not torch.cuda.is_available(), reason='no GPU')
def test_cuda_matches_cpu():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(16, 32, 3), nn.Conv2d(32, 32, 1), nn.Linear(32, 10))
    gpu = nn.Sequential(nn.Conv2d(16, 32, 3), nn.Conv2d(32, 32, 1), nn.Linear(32, 10)).cuda()
    gpu.load_state_dict(net.state_dict())
    orthogonalize_(net, 'all'); orthogonalize_(gpu, 'all')
    for a, b in zip(net.parameters(), gpu.parameters()): assert (a - b.cpu()).abs().max() <= 1e-5

# --- bad and degenerate input --------------------------------------------------------------------------------

@pytest.mark.parametrize('bad', [float('nan'), float('inf'), -float('inf')])
@pytest.mark.parametrize('method', ['svd', 'newton', 'auto'])
@pytest.mark.parametrize('rows', [True, 'tight'])
def test_non_finite_raises_and_changes_nothing(bad, method, rows):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 32), nn.Conv2d(8, 8, 1))
    with torch.no_grad(): net[1].weight[2, 3] = bad
    snap = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(ValueError, match=r"non-finite value in layer '1' \(Linear\)"):
        orthogonalize_(net, 'all', method, rows)
    for k, v in net.state_dict().items(): assert torch.equal(v, snap[k]) or torch.equal(v.isnan(), snap[k].isnan())

def test_non_finite_in_a_wide_layer_is_named():
    net = nn.Sequential(nn.Linear(8, 8), nn.Linear(4, 32))
    with torch.no_grad(): net[1].weight[31, 0] = float('nan')
    for rows in (True, False, 'tight'):
        with pytest.raises(ValueError, match="layer '1'"): orthogonalize_(net, 'all', normalize_rows=rows)

def test_huge_finite_weights_are_projected():
    torch.manual_seed(0)
    lin = nn.Linear(6, 4)
    with torch.no_grad(): lin.weight.mul_(1e30)            # squares overflow float32
    ref = reference(lin.weight)
    for method in ('svd', 'newton', 'auto'):
        l2 = nn.Linear(6, 4); l2.load_state_dict(lin.state_dict())
        orthogonalize_(l2, method=method)
        assert (l2.weight.double() - ref).abs().max() <= 1e-5

@pytest.mark.parametrize('method', ['svd', 'newton', 'auto'])
def test_zero_and_rank_deficient_give_no_nan(method):
    torch.manual_seed(0)
    for out, inp, rank in [(3, 5, 0), (5, 3, 0), (4, 4, 1), (6, 6, 3), (8, 3, 1)]:
        lin = nn.Linear(inp, out)
        with torch.no_grad(): lin.weight.copy_(torch.randn(out, rank) @ torch.randn(rank, inp) if rank else torch.zeros(out, inp))
        orthogonalize_(lin, method=method, normalize_rows=False)
        w = lin.weight.detach()
        assert torch.isfinite(w).all()
        g = w @ w.T if out <= inp else w.T @ w
        assert (g - torch.eye(min(out, inp))).abs().max() <= 1e-5   # a semi-orthogonal completion
        orthogonalize_(lin, method=method)                           # the default rule: no NaN either
        assert torch.isfinite(lin.weight).all()

def test_biases_norms_and_unselected_layers_untouched():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Conv2d(8, 8, 1), nn.GroupNorm(2, 8), nn.Flatten(),
                        nn.LayerNorm(8), nn.Linear(8, 4), nn.ConvTranspose2d(4, 4, 1))
    for layers, chosen in [('linear', {'6'}), ('pointwise', {'2', '6'}), ('all', {'0', '2', '6'}), (lambda n, m: n == '0', {'0'})]:
        snap = {k: v.clone() for k, v in net.state_dict().items()}
        orthogonalize_(net, layers)
        changed = {k for k, v in net.state_dict().items() if not torch.equal(v, snap[k])}
        assert changed == {f'{n}.weight' for n in chosen}

# --- options, selection, reports -----------------------------------------------------------------------------

@pytest.mark.parametrize('args, msg', [(('conv', 'auto', True), 'Expected layers'), (('all', 'qr', True), 'Expected method'),
                                       (('all', 'svd', 'yes'), 'Expected normalize_rows'), (('all', 'svd', 1), 'Expected normalize_rows'),
                                       ((['all'], 'svd', True), 'Expected layers'), (('all', None, True), 'Expected method')])
def test_bad_options(args, msg):
    with pytest.raises(ValueError, match=msg): check_orth_options(*args)
    with pytest.raises(ValueError, match=msg): Orthogonalizer(nn.Linear(2, 2), *args)
    with pytest.raises(ValueError, match=msg): orthogonalize_(nn.Linear(2, 2), *args)

def test_empty_selection():
    net = nn.Sequential(nn.ReLU(), nn.BatchNorm1d(3))
    o = Orthogonalizer(net)
    assert len(o) == 0 and o.error() == 0. and o() is net
    assert len(orth_report(net)) == 0

def test_report_and_error_agree():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(8, 16, 3, groups=2), nn.Conv2d(16, 32, 1), nn.Flatten(), nn.Linear(32, 10))
    df = orth_report(net, 'all')
    assert list(df.columns) == ['name', 'shape', 'groups', 'matrix', 'error', 'skipped']
    assert list(df['name']) == ['0', '1', '3'] and list(df['groups']) == [2, 1, 1] and df['matrix'][0] == '8×36'
    assert math.isclose(df['error'].max(), orth_error(net, 'all'), rel_tol=1e-9)
    orthogonalize_(net, 'all')
    assert (orth_report(net, 'all')['error'] <= 1e-5).sum() == 2   # the wide 1×1 conv (32 per 16) is near, not on, a UNTF


# --- what is skipped: frozen, parametrized, empty, meta, lazy; degenerate weights -----------------------------

def test_frozen_weights_are_never_projected():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(4, 8, 1), nn.Conv2d(8, 8, 1), nn.Flatten(), nn.Linear(8, 16), nn.Linear(16, 4))
    net[1].requires_grad_(False); net[3].weight.requires_grad_(False)   # a wide one too: the default rule would move it every time
    frozen = {k: net.state_dict()[k].clone() for k in ('1.weight', '3.weight')}
    for method in ('svd', 'newton', 'auto'):
        for rows in (True, 'tight', False): orthogonalize_(net, 'all', method, rows)
    for k, v in frozen.items(): assert torch.equal(net.state_dict()[k], v)
    assert list(orth_report(net, 'all')['skipped']) == ['', 'frozen', 'frozen', '']
    orthogonalize_(net, 'all', normalize_rows=False, include_frozen=True)
    assert orth_error(net, 'all', normalize_rows=False, include_frozen=True) <= 1e-5
    net[1].requires_grad_(True)                                             # unfrozen: projected from the next call
    o = Orthogonalizer(net, 'all')
    assert o.skipped() == ['', '', 'frozen', '']

@pytest.mark.parametrize('shape', [(1000, 768), (64, 64), (100, 50), (10, 768), (768, 1000)])
def test_zero_weight_same_for_every_method(shape):
    ws = {}
    for method in ('svd', 'newton', 'auto'):
        for rows in (True, False):
            lin = nn.Linear(shape[1], shape[0])
            with torch.no_grad(): lin.weight.zero_()
            ws[method, rows] = orthogonalize_(lin, method=method, normalize_rows=rows).weight.detach().clone()
            assert torch.isfinite(ws[method, rows]).all()
    for rows in (True, False):
        assert torch.equal(ws['svd', rows], ws['newton', rows]) and torch.equal(ws['svd', rows], ws['auto', rows])
        w = ws['svd', rows]
        g = w @ w.T if shape[0] <= shape[1] else w.T @ w
        assert (g - torch.eye(min(shape))).abs().max() <= 1e-5

def test_zero_wide_tight_stops():
    lin = nn.Linear(4, 12)
    with torch.no_grad(): lin.weight.zero_()
    orthogonalize_(lin, normalize_rows='tight')   # zero rows can never get unit norm: it must stop, not run 500 rounds
    assert torch.isfinite(lin.weight).all()

@pytest.mark.parametrize('rank', [1, 3, 7])
def test_rank_deficient_same_for_every_method(rank):
    torch.manual_seed(rank)
    w0 = torch.randn(8, rank) @ torch.randn(rank, 24)
    out = {}
    for method in ('svd', 'newton', 'auto'):
        lin = nn.Linear(24, 8)
        with torch.no_grad(): lin.weight.copy_(w0)
        out[method] = orthogonalize_(lin, method=method).weight.detach()
    assert (out['svd'] - out['newton']).abs().max() <= 1e-5 and (out['svd'] - out['auto']).abs().max() <= 1e-5
    assert (out['svd'] @ out['svd'].T - torch.eye(8)).abs().max() <= 1e-5

def test_non_finite_still_named_after_zero_fix():
    lin = nn.Linear(768, 1000)
    with torch.no_grad(): lin.weight.zero_(); lin.weight[3, 4] = float('inf')
    for method in ('svd', 'newton', 'auto'):
        with pytest.raises(ValueError, match='non-finite'): orthogonalize_(lin, method=method)

def test_parametrized_weights_are_refused_and_listed():
    from torch.nn.utils import parametrizations
    torch.manual_seed(0)
    for wrap in (parametrizations.weight_norm, parametrizations.spectral_norm, parametrizations.orthogonal):
        conv = wrap(nn.Conv2d(8, 16, 1))
        snap = {k: v.clone() for k, v in conv.state_dict().items()}
        orthogonalize_(conv, 'all')
        assert all(torch.equal(v, conv.state_dict()[k]) for k, v in snap.items())
        assert list(orth_report(conv, 'all')['skipped']) == ['parametrized']
    with pytest.warns(FutureWarning): old = torch.nn.utils.weight_norm(nn.Linear(4, 8))
    snap = {k: v.clone() for k, v in old.state_dict().items()}
    orthogonalize_(old)
    assert all(torch.equal(v, old.state_dict()[k]) for k, v in snap.items())
    assert list(orth_report(old)['skipped']) == ['parametrized']

def test_empty_layers_do_not_block_the_model():
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')   # torch: "Initializing zero-element tensors is a no-op"
        net = nn.Sequential(nn.Linear(5, 0), nn.Conv2d(4, 0, 1), nn.Linear(0, 5), nn.Conv2d(0, 4, 1), nn.Linear(6, 3))
    orthogonalize_(net, 'all')
    assert orth_error(net, 'all') <= 1e-5
    df = orth_report(net, 'all')
    assert list(df['skipped']) == ['empty'] * 4 + [''] and df['error'][:4].isna().all()

def test_meta_and_lazy():
    with torch.device('meta'): net = nn.Sequential(nn.Linear(4, 4), nn.Conv2d(3, 8, 1))
    orthogonalize_(net, 'all')
    assert list(orth_report(net, 'all')['skipped']) == ['meta', 'meta'] and orth_error(net, 'all') == 0.
    lazy = nn.Sequential(nn.LazyLinear(6), nn.Linear(6, 3))
    o = Orthogonalizer(lazy, 'all')
    o()                                            # before the first forward: its shape is unknown, skipped
    assert o.skipped() == ['uninitialized', '']
    lazy(torch.randn(2, 10)); o()                  # after it: projected by the same projector
    assert o.skipped() == ['', ''] and o.error() <= 1e-5

def test_other_kinds_are_listed_with_all():
    net = nn.Sequential(nn.ConvTranspose2d(4, 4, 1), nn.Embedding(10, 4), nn.LSTM(4, 4), nn.MultiheadAttention(8, 2), nn.Linear(8, 2))
    df = orth_report(net, 'all')
    assert list(df['name'][:2]) == ['3.out_proj', '4']   # the selected layers first: MHA's out_proj is a Linear
    assert list(df['skipped']) == ['', '', 'transposed conv', 'not Linear or conv', 'recurrent', 'recurrent', 'attention in_proj']
    assert len(orth_report(net, 'pointwise')) == 2    # only the selected kinds for the other choices

# --- library inputs: no model, swapped arguments, plain-tensor weights, a callable choosing what cannot be projected ---

@pytest.mark.parametrize('bad', [None, 'all', torch.randn(3, 3), [nn.Linear(2, 2)]])
@pytest.mark.parametrize('f', [orthogonalize_, orth_error, orth_report, Orthogonalizer, select_layers])
def test_non_module_model_raises_type_error(f, bad):
    with pytest.raises(TypeError, match=f"^Expected an nn.Module for model. Got {type(bad).__name__}.$"): f(bad)

def test_swapped_arguments_raise_type_error():
    net = nn.Sequential(nn.Linear(4, 4))
    w = net[0].weight.detach().clone()
    with pytest.raises(TypeError, match='Got str'): orthogonalize_('all', net)
    with pytest.raises(TypeError, match='Got SGD'): orthogonalize_(torch.optim.SGD(net.parameters(), lr=0.1))
    with pytest.raises(TypeError, match='Expected an nn.Module for m. Got NoneType'): skip_reason(None)
    assert torch.equal(net[0].weight, w)

def _plain_weight(lin:nn.Linear, buffer=False) -> nn.Linear:
    "`lin` with its weight turned into a plain tensor attribute, or a buffer."
    w = lin.weight.detach().clone()
    del lin.weight
    if buffer: lin.register_buffer('weight', w)
    else: lin.weight = w
    return lin

@pytest.mark.parametrize('buffer', [False, True])
def test_plain_tensor_weight_is_skipped_as_not_a_parameter(buffer):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 4), _plain_weight(nn.Linear(4, 4), buffer))
    assert not isinstance(net[1].weight, nn.Parameter)
    w = net[1].weight.clone()
    for method in ('svd', 'newton'): orthogonalize_(net, 'all', method)
    assert torch.equal(net[1].weight, w)
    assert skip_reason(net[1]) == 'not a parameter'
    rep = orth_report(net, 'all')
    assert list(rep['skipped']) == ['', 'not a parameter'] and math.isnan(rep['error'][1])
    assert orth_error(net, 'all') <= 1e-5

def test_hook_based_reparametrizations_stay_parametrized():
    with pytest.warns(FutureWarning): wn = torch.nn.utils.weight_norm(nn.Linear(4, 8))
    sn = torch.nn.utils.spectral_norm(nn.Linear(4, 8))
    assert not isinstance(sn.weight, nn.Parameter) and not isinstance(wn.weight, nn.Parameter)   # plain tensors, yet recomputed
    assert [skip_reason(m) for m in (wn, sn)] == ['parametrized', 'parametrized']

def test_callable_choosing_a_transposed_conv_lists_it():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(4, 4, 1), nn.ConvTranspose2d(4, 4, 2), nn.ConvTranspose1d(4, 4, 1), nn.Embedding(5, 4))
    snap = {k: v.clone() for k, v in net.state_dict().items()}
    pick = lambda n, m: isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))
    orthogonalize_(net, pick)
    assert {k for k, v in net.state_dict().items() if not torch.equal(v, snap[k])} == {'0.weight'}
    rep = orth_report(net, pick)
    assert list(zip(rep['name'], rep['skipped'])) == [('0', ''), ('1.weight', 'transposed conv')]
    assert rep['shape'][1] == tuple(net[1].weight.shape)
    rep = orth_report(net, lambda n, m: n in ('2', '3'))   # only the chosen ones, whatever kind
    assert list(zip(rep['name'], rep['skipped'])) == [('2.weight', 'transposed conv'), ('3.weight', 'not Linear or conv')]
    assert len(orth_report(net, lambda n, m: False)) == 0
    assert list(orth_report(net, 'all')['skipped']) == ['', 'transposed conv', 'transposed conv', 'not Linear or conv']

def test_kept_plan_follows_every_change():
    "A kept `Orthogonalizer` reuses its plan while nothing changed; freezing, unfreezing, a new weight or a parametrization take effect at the next call."
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 4))
    o = Orthogonalizer(net, 'all'); o()
    plan = o._plan()
    assert o._plan() is plan
    def moved(i): return (net[i].weight - polar_svd(net[i].weight.detach()[None])[0]).abs().max().item() > 1e-3
    def nudge():
        with torch.no_grad():
            for m in net: m.weight.add_(0.05 * torch.randn_like(m.weight))
    net[0].weight.requires_grad_(False); nudge(); o()
    assert moved(0) and not moved(1) and o._plan() is not plan          # frozen: left alone
    net[0].weight.requires_grad_(True); nudge(); o()
    assert not moved(0)                                                 # unfrozen: projected again
    net[1].weight = nn.Parameter(torch.randn(8, 8)); o()
    assert not moved(1)                                                 # a new parameter, far from orthogonal: projected
    parametrize.register_parametrization(net[2], 'weight', nn.Identity()); nudge(); o()
    assert o.skipped() == ['', '', 'parametrized'] and o.error() < 1e-5

def test_non_finite_on_the_steady_path_raises_before_any_write():
    "After a first projection the small shapes go in one pack; a NaN in one of them is still named, and no weight moves."
    torch.manual_seed(0)
    net = orthogonalize_(nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 16), nn.Linear(16, 12), nn.Linear(12, 300)), 'all')
    with torch.no_grad(): assert fp._packs([x for x, _ in Orthogonalizer(net, 'all')._batches()])   # the small ones are packed
    with torch.no_grad(): net[2].weight[1, 1] = float('nan')
    snap = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(ValueError, match=r"non-finite value in layer '2' \(Linear\)"): orthogonalize_(net, 'all')
    for k, v in net.state_dict().items(): assert torch.equal(v.nan_to_num(), snap[k].nan_to_num())

def test_packs_are_real_and_exact():
    "Small real batches of one dtype are packed and match the SVD; complex ones and a second dtype are not mixed in."
    torch.manual_seed(0)
    near = lambda *s, dt=torch.float32: (lambda q: q + 1e-3 * torch.randn_like(q))(polar_svd(torch.randn(*s, dtype=dt)))
    xs = [near(2, 6, 10), near(1, 12, 5), near(3, 8, 8, dt=torch.float64), near(2, 6, 10, dt=torch.complex128), near(1, 7, 9)]
    packs = fp._packs(xs)
    assert [sorted(p) for p in packs] == [[0, 1, 4]]
    for q, x in zip(fp.polar_batches(xs), xs): assert (q - polar_svd(x.to(q.dtype))).abs().max() <= 1e-5
