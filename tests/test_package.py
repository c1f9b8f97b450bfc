"The package a user installs: what its wheel requires, and what `from svd_bn import OrthCallback` loads."
import subprocess, sys, zipfile
from pathlib import Path

root = Path(__file__).resolve().parents[1]

def test_wheel_requires_neither_nbdev_nor_jupyter(tmp_path):
    r = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w', str(tmp_path), str(root)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    whl, = tmp_path.glob('svd_bn-*.whl')
    meta = next(zipfile.ZipFile(whl).read(n).decode() for n in zipfile.ZipFile(whl).namelist() if n.endswith('.dist-info/METADATA'))
    reqs = [l.split(':', 1)[1].strip() for l in meta.splitlines() if l.startswith('Requires-Dist:')]
    plain = [q for q in reqs if 'extra ==' not in q]
    assert any(q.startswith('fastai') for q in plain) and any(q.startswith('torch') for q in plain)
    assert not [q for q in plain if q.split()[0].split('>')[0].split('=')[0].lower() in ('nbdev', 'jupyter')], plain
    assert any(q.startswith('nbdev') and 'extra == "dev"' in q for q in reqs)   # the course's tools are an extra

def test_orthcallback_imports_no_course_tools():
    code = ("import sys\nfrom svd_bn import OrthCallback\nOrthCallback()\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'nbdev', 'jupyter', 'jupyter_core', 'IPython', 'ipykernel', 'nbformat', 'execnb'}))")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip().splitlines()[-1] == '[]', r.stdout[-500:] + r.stderr[-2000:]
