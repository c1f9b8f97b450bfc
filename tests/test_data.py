"Data loading with no network: fake files in the cache layouts the loaders read, and fast, clear failures."
import time, gzip
from pathlib import Path
import numpy as np, pytest, torch
from svd_bn.data import get_dls, write_fake_cifar, DownloadError, TensorDL

def test_digits_shapes():
    dls = get_dls('digits', bs=32)
    xb, yb = dls.one_batch()
    assert xb.shape == (32, 1, 8, 8) and yb.shape == (32,)
    assert dls.c == 10 and len(dls.train_ds) + len(dls.valid_ds) == 1797

def test_digits_normalized_with_train_stats():
    dls = get_dls('digits', bs=64)
    x = torch.cat([b[0] for b in dls.train.new(shuffle=False, drop_last=False)])
    assert abs(x.mean().item()) < 1e-3 and abs(x.std().item() - 1) < 1e-2
    xv = torch.cat([b[0] for b in dls.valid])
    assert abs(xv.mean().item()) > 1e-4  # the validation set was not used for the statistics

def _idx(path, arr):
    "Write `arr` (uint8) in the IDX format torchvision's MNIST readers parse."
    arr = np.asarray(arr, dtype=np.uint8)
    header = bytes([0, 0, 8, arr.ndim]) + b''.join(int(d).to_bytes(4, 'big') for d in arr.shape)
    path.write_bytes(header + arr.tobytes())

def test_fashion_mnist_from_cache(tmp_path):
    raw = tmp_path/'FashionMNIST'/'raw'; raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (('train', 30), ('t10k', 10)):
        _idx(raw/f'{split}-images-idx3-ubyte', rng.integers(0, 256, (n, 28, 28)))
        _idx(raw/f'{split}-labels-idx1-ubyte', np.arange(n) % 10)
    dls = get_dls('fashion_mnist', bs=8, root=tmp_path)
    xb, yb = dls.one_batch()
    assert xb.shape == (8, 1, 28, 28)
    assert (len(dls.train_ds), len(dls.valid_ds)) == (30, 10)
    assert dls.vocab[0] == 'T-shirt/top'

@pytest.mark.parametrize('ext', ['png', 'jpg'])
def test_cifar10_from_cache(tmp_path, ext):
    write_fake_cifar(tmp_path/'cifar10', ext=ext)
    dls = get_dls('cifar10', bs=4, root=tmp_path)
    assert dls.one_batch()[0].shape == (4, 3, 32, 32)
    assert dls.vocab == ['cat', 'dog', 'frog']

def test_cifar10_local_folder_and_subset(tmp_path):
    write_fake_cifar(tmp_path/'c', n_train=10)
    dls = get_dls('cifar10', path=tmp_path/'c', train_size=9, bs=3, root=tmp_path)
    assert len(dls.train_ds) == 9 and len(dls.valid_ds) == 6
    labels = [dls.vocab[int(y)] for _, y in dls.train_ds]
    assert sorted(labels.count(c) for c in dls.vocab) == [3, 3, 3]

def test_tensor_path_keeps_fastai_workflows(tmp_path):
    "show_batch, export and load_learner, a test set: the tensor data path is still fastai's DataLoaders."
    import matplotlib; matplotlib.use('Agg')
    from fastai.learner import Learner, load_learner
    from svd_bn.models import small
    write_fake_cifar(tmp_path/'c', n_train=5, n_test=2)
    dls = get_dls('cifar10', path=tmp_path/'c', bs=4, root=tmp_path)
    assert type(dls.train) is TensorDL and type(dls.valid) is TensorDL
    assert dls.one_batch()[0].dtype == torch.float32 and dls.train.tensors[0].dtype == torch.uint8   # converted per batch
    dls.show_batch(max_n=4)
    import matplotlib.pyplot as plt
    assert len(plt.gcf().axes) == 4   # fastai's image grid, not one figure per image
    learn = Learner(dls, small(c_in=3, n_out=dls.c))
    preds, _ = learn.get_preds()
    learn.export(tmp_path/'m.pkl')
    assert (tmp_path/'m.pkl').stat().st_size < 2 * sum(p.numel() * 4 for p in learn.model.parameters()) + 100_000   # no images inside
    l2 = load_learner(tmp_path/'m.pkl')
    assert l2.dls.train.tensors is None
    files = list(dls.valid_ds.items)                       # the items of a folder dataset are its files, as with fastai's ImageBlock
    p2, _ = l2.get_preds(dl=l2.dls.test_dl(files))
    torch.testing.assert_close(p2, preds)
    label, idx, probs = l2.predict(files[0])
    assert label == l2.dls.vocab[int(idx)] and torch.allclose(probs, preds[0])

@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_tensor_path_on_cuda(tmp_path):
    "On a GPU the images sit there whole, as uint8, and every batch is sliced, converted and normalized there: as on the CPU."
    write_fake_cifar(tmp_path/'c', n_train=20, n_test=4)
    cpu, gpu = (get_dls('cifar10', path=tmp_path/'c', bs=8, root=tmp_path, device=d) for d in ('cpu', 'cuda'))
    xg, yg = next(iter(gpu.valid))
    assert xg.device.type == 'cuda' and gpu.valid._held[0].device.type == 'cuda' and gpu.valid._held[0].dtype == torch.uint8
    xc, yc = next(iter(cpu.valid))
    torch.testing.assert_close(xg.cpu(), xc); assert torch.equal(yg.cpu(), yc)

def test_bad_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match='Expected a folder with train/<class>/ and test/<class>/'):
        get_dls('cifar10', path=tmp_path)

@pytest.mark.parametrize('name', ['cifar10', 'fashion_mnist'])
def test_offline_download_fails_fast(tmp_path, name):
    t = time.perf_counter()
    with pytest.raises(DownloadError, match=f"Could not download '{name}'.*name='digits'"):
        get_dls(name, root=tmp_path)
    assert time.perf_counter() - t < 30

def test_bad_name_and_bs():
    with pytest.raises(ValueError, match="Expected name to be one of digits, fashion_mnist, cifar10. Got 'mnist'"): get_dls('mnist')
    with pytest.raises(ValueError, match='Expected a batch size of at least 1'): get_dls('digits', bs=0)

LOCAL = Path(__file__).resolve().parents[2]/'shared'/'data'/'cifar10'

@pytest.mark.skipif(not LOCAL.is_dir(), reason=f'no local CIFAR-10 at {LOCAL}')
def test_real_cifar10_local():
    dls = get_dls('cifar10', path=LOCAL, train_size=200, bs=50)   # the first run decodes all 60,000 images into the cache (about 15 s)
    xb, yb = dls.one_batch()
    assert xb.shape == (50, 3, 32, 32) and len(dls.vocab) == 10 and len(dls.valid_ds) == 10_000
