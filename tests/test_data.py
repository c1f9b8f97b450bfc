"Data loading with no network: fake files in the cache layouts the loaders read, and fast, clear failures."
import time, gzip, os, re, subprocess, sys, warnings
from pathlib import Path
import numpy as np, pytest, torch
import svd_bn.data
from svd_bn.data import get_dls, write_fake_cifar, DownloadError, TensorDL, list_images, decode_folder

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

def _warns(f):
    "The result of `f()` and the messages of the warnings it raised."
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always'); r = f()
    return r, [str(o.message) for o in w]

def _add(p, kind):
    "Add to the fake folder `p` one entry of `kind` that is not at <split>/<class>/<image>; return its path relative to `p`."
    img = (p/'train/cat/0000.png').read_bytes()
    if kind == 'nested': (p/'test/cat/more').mkdir(); (p/'test/cat/more/x.png').write_bytes(img); return 'test/cat/more'
    if kind == 'stray': (p/'test/x.png').write_bytes(img); return 'test/x.png'
    if kind == 'loop': (p/'train/cat/loop').symlink_to('.'); return 'train/cat/loop'
    if kind == 'escape': (p/'train/cat/up').symlink_to('../..'); return 'train/cat/up'
    if kind == 'linked_file': (p/'train/dog/x.png').symlink_to(p/'train/cat/0000.png'); return 'train/dog/x.png'
    if kind == 'linked_class': (p/'train/bird').symlink_to(p/'test/cat'); return 'train/bird'

@pytest.mark.parametrize('kind', ['nested', 'stray', 'loop', 'escape', 'linked_file', 'linked_class'])
def test_layout_skips_what_is_not_split_class_image(tmp_path, kind):
    p = write_fake_cifar(tmp_path/'c', n_train=2, n_test=1)
    clean = list_images(p)
    skipped = _add(p, kind)
    files, msgs = _warns(lambda: list_images(p))
    assert files == clean
    assert msgs == [f'Skipped 1 entry of {p} not at train|test/<class>/<image> (symlinks, folders inside a class, images outside one): {skipped}.']
    with pytest.warns(UserWarning, match='Skipped 1 entry'): dls = get_dls('cifar10', path=p, bs=2, root=tmp_path)
    assert dls.vocab == ['cat', 'dog', 'frog'] and (len(dls.train_ds), len(dls.valid_ds)) == (6, 3)

def test_layout_counts_all_it_skips(tmp_path):
    p = write_fake_cifar(tmp_path/'c', n_train=2, n_test=1)
    for k in ('nested', 'stray', 'loop', 'escape', 'linked_file'): _add(p, k)
    (p/'train/cat/notes.txt').write_text('not an image'); (p/'train/.DS_Store').write_text('')   # ignored, as fastai ignores them
    files, msgs = _warns(lambda: list_images(p))
    assert len(files) == 9 and len(msgs) == 1 and '\n' not in msgs[0]
    assert msgs[0].startswith(f'Skipped 5 entries of {p}') and msgs[0].endswith('test/cat/more, test/x.png, train/cat/loop and 2 more.')

def test_layout_classes_must_match(tmp_path):
    p = write_fake_cifar(tmp_path/'c', n_train=2, n_test=1)
    (p/'test/dog').rename(p/'test/dgo')
    with pytest.raises(ValueError, match=re.escape("Expected the same classes in train/ and test/. Got ['dog'] only in train/ and ['dgo'] only in test/.")):
        get_dls('cifar10', path=p, bs=2, root=tmp_path)
    q = write_fake_cifar(tmp_path/'d', n_train=2, n_test=1, classes=('cat', 'bird'))
    (q/'train/bird').rename(q/'bird'); (q/'train/bird').symlink_to(q/'bird')   # a class whose train/ folder is a symlink: skipped
    with pytest.raises(ValueError, match=re.escape("Got [] only in train/ and ['bird'] only in test/.")), pytest.warns(UserWarning):
        list_images(q)

def test_layout_valid_folder(tmp_path):
    p = write_fake_cifar(tmp_path/'c', n_train=2, n_test=1)
    (p/'test').rename(p/'valid')
    dls = get_dls('cifar10', path=p, bs=2, root=tmp_path)
    assert (len(dls.train_ds), len(dls.valid_ds)) == (6, 3) and all(f.parent.parent.name == 'valid' for f in dls.valid_ds.items)
    (p/'test').mkdir()
    with pytest.raises(FileNotFoundError, match=re.escape(f'Got {p}, with train/, test/, valid/.')): list_images(p)   # which one?

@pytest.mark.parametrize('damage', ['truncated', 'garbage'])
def test_bad_image_named(tmp_path, damage):
    p = write_fake_cifar(tmp_path/'c', n_train=2, n_test=1, ext='jpg')
    f = p/'train/dog/0001.jpg'
    f.write_bytes(f.read_bytes()[:len(f.read_bytes()) // 2] if damage == 'truncated' else b'garbage' * 20)
    with pytest.raises(ValueError, match=re.escape(f'Expected an image file. Got {f}: ') + ('OSError: image file is truncated' if damage == 'truncated' else 'UnidentifiedImageError')) as e:
        get_dls('cifar10', path=p, bs=2, root=tmp_path)
    assert '\n' not in str(e.value)

def _cache(root):
    "The one cache file under `root`."
    c, = (root/'svd_bn').glob('*.pt')
    return c

def test_garbled_cache_detected_and_rebuilt(tmp_path):
    p, root = write_fake_cifar(tmp_path/'c', n_train=4, n_test=2), tmp_path/'cache'
    decode_folder(p, root=root)
    c = _cache(root)
    with open(c, 'r+b') as fh: fh.seek(c.stat().st_size // 2); fh.write(os.urandom(4096))
    d, msgs = _warns(lambda: decode_folder(p, root=root))
    assert msgs == [msgs[0]] and msgs[0].startswith(f'Decoding afresh: the cache {c} is damaged or unreadable (ValueError: bad CRC-32 in ')
    fresh = decode_folder(p, root=tmp_path/'fresh')
    assert torch.equal(d['x'], fresh['x']) and all(d[k] == fresh[k] for k in ('labels', 'split', 'files'))
    d2, msgs = _warns(lambda: decode_folder(p, root=root))   # rewritten: read back whole
    assert msgs == [] and torch.equal(d2['x'], fresh['x'])

class _Sneaky:
    "Unpickled, it would make the folder `path`: proof that the cache's pickle ran code."
    def __init__(self, path): self.path = path
    def __reduce__(self): return (os.mkdir, (str(self.path),))

def test_cache_loaded_weights_only(tmp_path):
    p, root = write_fake_cifar(tmp_path/'c', n_train=2, n_test=1), tmp_path/'cache'
    a = decode_folder(p, root=root)
    torch.save(dict(a, x=_Sneaky(tmp_path/'ran')), _cache(root))
    d, msgs = _warns(lambda: decode_folder(p, root=root))
    assert not (tmp_path/'ran').exists()                      # refused, not run
    assert len(msgs) == 1 and 'damaged or unreadable (UnpicklingError: ' in msgs[0]
    assert torch.equal(d['x'], a['x'])

def test_stale_tmp_removed(tmp_path):
    p, root = write_fake_cifar(tmp_path/'c', n_train=2, n_test=1), tmp_path/'cache'
    decode_folder(p, root=root)
    ended = subprocess.Popen([sys.executable, '-c', 'pass']); ended.wait()
    stale, live = (root/'svd_bn'/f'{_cache(root).name}.{pid}.tmp' for pid in (ended.pid, os.getpid()))
    for t in (stale, live): t.write_bytes(b'half a cache')
    decode_folder(p, root=root)
    assert not stale.exists() and live.exists()               # a running writer's file is left alone

def test_failed_write_removes_its_tmp(tmp_path, monkeypatch):
    p, root = write_fake_cifar(tmp_path/'c', n_train=2, n_test=1), tmp_path/'cache'
    def disk_full(obj, f): Path(f).write_bytes(b'half'); raise OSError('No space left on device')
    monkeypatch.setattr(svd_bn.data.torch, 'save', disk_full)
    with pytest.raises(OSError, match='No space left'): decode_folder(p, root=root)
    assert list((root/'svd_bn').iterdir()) == []              # neither a cache nor a temporary file

def test_train_size_errors(tmp_path):
    with pytest.raises(ValueError, match=re.escape('Expected train_size >= the number of classes (10), so every class is trained on. Got 7.')):
        get_dls('digits', train_size=7)
    with pytest.raises(ValueError, match=re.escape('number of classes (10)')): get_dls('digits', bs=7, train_size=7)
    with pytest.raises(ValueError, match=re.escape('Expected at least bs=64 training images, since the training loader drops a partial batch. Got 20 (train_size=20).')):
        get_dls('digits', train_size=20)
    assert len(get_dls('digits', bs=10, train_size=10).train) == 1   # the fewest that work: one batch holding every class
    p = write_fake_cifar(tmp_path/'c', n_train=2, n_test=1)
    with pytest.raises(ValueError, match=re.escape('Expected at least bs=4 training images')): get_dls('cifar10', path=p, bs=4, train_size=3, root=tmp_path)
    with pytest.raises(ValueError, match=re.escape('Got 6.')): get_dls('cifar10', path=p, bs=8, root=tmp_path)

LOCAL = Path(__file__).resolve().parents[2]/'shared'/'data'/'cifar10'

@pytest.mark.skipif(not LOCAL.is_dir(), reason=f'no local CIFAR-10 at {LOCAL}')
def test_real_cifar10_local():
    dls = get_dls('cifar10', path=LOCAL, train_size=200, bs=50)   # the first run decodes all 60,000 images into the cache (about 15 s)
    xb, yb = dls.one_batch()
    assert xb.shape == (50, 3, 32, 32) and len(dls.vocab) == 10 and len(dls.valid_ds) == 10_000
