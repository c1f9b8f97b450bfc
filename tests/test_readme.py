"The README opens its results with the paired verdicts the committed results folders give, and its tables are theirs."
from pathlib import Path
import nbformat, pytest
from svd_bn.experiments import load_results, results_table, verdict_table

root = Path(__file__).resolve().parents[1]
blocks = [('digits', Path('results/digits'), 'orth'), ('CIFAR-10, 5k', Path('results/cifar10-5k'), 'orth'),
          ('CIFAR-10, 5k', Path('results/cifar10-5k-bias'), 'bn_bias'),
          ('digits', Path('results/digits-muon'), 'orth'), ('CIFAR-10, 5k', Path('results/cifar10-5k-muon'), 'orth')]

def _text(doc):
    if doc.endswith('.md'): return (root/doc).read_text()
    cells = nbformat.read(root/doc, as_version=4).cells
    return '\n'.join(c.source + ''.join(o.get('text', '') for o in c.get('outputs', [])) for c in cells)

@pytest.fixture(scope='module')
def cwd_root():
    import os
    old = os.getcwd(); os.chdir(root)
    yield
    os.chdir(old)

@pytest.mark.parametrize('doc', ['README.md', 'index.ipynb'])
def test_results_open_with_the_verdicts_the_files_give(doc, cwd_root):
    text, table = _text(doc), verdict_table(blocks)
    assert table in text
    results = text.index('## Results')
    assert results < text.index(table) < text.index("The write-up's table, for reference")   # before any other table or caveat
    assert text.index(table) - results < 1500

@pytest.mark.parametrize('doc', ['README.md', 'index.ipynb'])
def test_tables_are_the_saved_runs(doc, cwd_root):
    text = _text(doc)
    for _, out, _ in blocks: assert results_table(load_results(out)[0]) in text

def test_grids_are_the_promised_size(cwd_root):
    d, c, b, dm, cm = (load_results(out)[0] for _, out, _ in blocks)
    assert len(d) == 80 and d.groupby(['model', 'opt', 'orth']).size().eq(10).all()    # 10 seeds per configuration
    assert len(c) == 20 and c.groupby(['opt', 'orth']).size().eq(5).all()              # 5 seeds
    assert len(b) == 10 and b.groupby('bn_bias').size().eq(5).all()
    assert len(dm) == 20 and dm.groupby(['model', 'orth']).size().eq(5).all() and set(dm['opt']) == {'muon'}   # lesson 06: 5 seeds
    assert len(cm) == 6 and cm.groupby('orth').size().eq(3).all() and set(cm['opt']) == {'muon'}               # 3 seeds
    for _, out, _ in blocks:
        ms = load_results(out)[2].values()
        assert all(m and m['cpu'] and m['isa'] and m['commit'] and m['threads'] for m in ms)   # each run names its machine
