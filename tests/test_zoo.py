"Every weight of the torchvision and timm model zoos: projected (to ≤1e-5 of the constraint), or listed by `orth_report` with its reason."
import math, time
import pytest, torch
import torchvision
from torch import nn
from svd_bn.orth import orthogonalize_, orth_report, select_layers, skip_reason

@pytest.fixture(autouse=True, scope='module')
def threads():
    n = torch.get_num_threads(); torch.set_num_threads(2); yield; torch.set_num_threads(n)

def check_model(model, x):
    "Project every Linear and conv of `model` (exact polar factor), then check the report accounts for every weight."
    model.eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    orthogonalize_(model, 'all', normalize_rows=False)
    rep = orth_report(model, 'all', normalize_rows=False)
    done = rep[rep['skipped'] == '']
    assert len(done) > 0 and (done['error'] <= 1e-5).all(), done[done['error'] > 1e-5]
    projected = {f"{n}.weight" if n else 'weight' for n, m in select_layers(model, 'all') if not skip_reason(m)}
    listed = set(rep['name'][rep['matrix'] == ''])                       # weights of no Linear or conv
    skipped = [f"{n}." for n in rep['name'][(rep['matrix'] != '') & (rep['skipped'] != '')]]   # layers left whole, as parametrized
    for k, v in model.state_dict().items():        # biases, norms, embeddings, buffers: bitwise untouched
        if k not in projected: assert torch.equal(v, state[k]), k
    for n, p in model.named_parameters():          # every matrix (2+ dims above 1): projected or listed
        if sum(d > 1 for d in p.shape) >= 2: assert n in projected or n in listed or any(n.startswith(m) for m in skipped), n
    with torch.no_grad(): assert torch.isfinite(model(x)).all()
    return rep

TV = ['resnet18', 'resnext50_32x4d', 'mobilenet_v2', 'mobilenet_v3_small', 'shufflenet_v2_x0_5', 'regnet_x_400mf',
      'efficientnet_b0', 'squeezenet1_1']

@pytest.mark.parametrize('name', TV)
def test_torchvision_zoo(name):
    torch.manual_seed(0)
    rep = check_model(getattr(torchvision.models, name)(weights=None), torch.randn(2, 3, 32, 32))
    assert set(rep['skipped']) == {''}   # conv nets: nothing to skip

def test_torchvision_vit_and_convnext():
    "vit_b_16's code at a small size (zero head, MultiheadAttention, class token), and convnext's blocks (Linear MLPs, layer scale)."
    from torchvision.models import VisionTransformer
    from torchvision.models.convnext import ConvNeXt, CNBlockConfig
    torch.manual_seed(0)
    vit = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=10)
    assert vit.heads.head.weight.abs().max() == 0
    rep = check_model(vit, torch.randn(2, 3, 32, 32))
    assert set(rep['skipped']) == {'', 'attention in_proj', 'not Linear or conv'}
    assert (rep['skipped'] == 'attention in_proj').sum() == 2
    cnx = ConvNeXt([CNBlockConfig(16, 32, 1), CNBlockConfig(32, None, 1)], num_classes=10)
    rep = check_model(cnx, torch.randn(2, 3, 32, 32))
    assert set(rep['skipped']) == {''}

def test_transposed_rnn_and_parametrized_are_listed():
    from torch.nn.utils import parametrizations
    net = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ConvTranspose2d(8, 8, 2, stride=2), parametrizations.spectral_norm(nn.Conv2d(8, 8, 1)))
    rep = check_model(net, torch.randn(2, 3, 8, 8))
    assert list(rep['skipped']) == ['', 'parametrized', 'transposed conv']
    lstm = nn.LSTM(4, 8)
    rep = orth_report(lstm, 'all')
    assert list(rep['skipped']) == ['recurrent', 'recurrent']

TIMM = ['vit_tiny_patch16_224', 'convnext_atto', 'efficientnet_b0', 'resnet18d']

@pytest.mark.parametrize('name', TIMM)
def test_timm_zoo(name):
    timm = pytest.importorskip('timm')
    torch.manual_seed(0)
    kw = dict(img_size=32) if name.startswith('vit') else {}
    rep = check_model(timm.create_model(name, pretrained=False, num_classes=10, **kw), torch.randn(2, 3, 32, 32))
    if name.startswith('vit'):
        qkv = rep[rep['name'].str.endswith('attn.qkv')]
        assert len(qkv) > 0 and (qkv['skipped'] == '').all()   # timm's fused qkv is a Linear: projected as one matrix
        assert (qkv['matrix'] == '576×192').all()
