"The pieces of bench/gpu.sh that can be checked without a GPU: its syntax, and the pack that carries CIFAR-10 there."
import subprocess, sys
from pathlib import Path
import numpy as np
from PIL import Image

BENCH = Path(__file__).resolve().parents[1]/'bench'

def test_gpu_scripts_parse():
    for f in ('gpu.sh', 'gpu_prepare.sh'):
        r = subprocess.run(['bash', '-n', str(BENCH/f)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr

def test_pack_unpack_gives_the_same_bytes(tmp_path):
    src, rng = tmp_path/'src', np.random.default_rng(0)
    for split, n in (('train', 3), ('test', 2)):
        for c in ('cat', 'dog', 'frog'):
            (src/split/c).mkdir(parents=True)
            for i in range(n): Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(src/split/c/f'{i}.jpg')
    run = lambda *a: subprocess.run([sys.executable, str(BENCH/'pack_folder.py'), *map(str, a)], capture_output=True, text=True)
    assert run('pack', src, tmp_path/'p'/'c').returncode == 0
    r = run('unpack', tmp_path/'p'/'c', tmp_path/'dst')
    assert r.returncode == 0 and 'unpacked 15 files' in r.stdout, r.stdout + r.stderr
    files = sorted(p.relative_to(src) for p in src.rglob('*') if p.is_file())
    assert files == sorted(p.relative_to(tmp_path/'dst') for p in (tmp_path/'dst').rglob('*') if p.is_file())
    assert all((src/f).read_bytes() == (tmp_path/'dst'/f).read_bytes() for f in files)
    b = tmp_path/'p'/'c.bin'; b.write_bytes(b.read_bytes()[:-10])   # a pack cut short says so
    r = run('unpack', tmp_path/'p'/'c', tmp_path/'dst2')
    assert r.returncode != 0 and 'cut short' in r.stderr
