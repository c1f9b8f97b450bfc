"svd-bn ablate: the command, its files, its errors, and resuming."
import csv, json, subprocess, sys
from pathlib import Path
import pytest
import svd_bn.experiments as E

def run(*args, timeout=300):
    return subprocess.run([sys.executable, '-m', 'svd_bn', *args], capture_output=True, text=True, timeout=timeout)

@pytest.fixture(scope='module')
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp('quick')
    r = run('ablate', '--quick', '--no-bar', '--out', str(out))
    return out, r

def test_quick_exits_0_and_writes_three_files(quick):
    out, r = quick
    assert r.returncode == 0, r.stderr[-2000:]
    assert {p.name for p in out.iterdir()} == {'results.csv', 'results.json', 'results.png'}
    head = next(l for l in r.stdout.splitlines() if l.startswith('|'))
    assert [c.strip() for c in head.strip('|').split('|')] == ['model', 'orth', 'optimizer', 'seed 0', 'mean ± std']

def test_csv_one_row_per_config_and_seed(quick):
    out, _ = quick
    rows = list(csv.DictReader(open(out/'results.csv')))
    cfgs = E.grid(models=E.quick['models'], seeds=E.quick['seeds'], epochs=E.quick['epochs'])
    assert len(rows) == len(cfgs)
    assert sorted((r['model'], r['opt'], r['orth'], r['seed']) for r in rows) == sorted((c.model, c.opt, str(c.orth), str(c.seed)) for c in cfgs)
    assert all(0.5 < float(r['accuracy']) <= 1 for r in rows)  # chance is 0.1
    runs = json.loads((out/'results.json').read_text())['runs']
    assert len(runs) == len(rows) and all(len(r['history']) == E.quick['epochs'] + 1 for r in runs)

@pytest.mark.parametrize('args,msg', [(['--data', 'mnist'], "argument --data: invalid choice: 'mnist'"),
                                      (['--models', 'small,huge'], 'argument --models'),
                                      (['--seeds', '0'], 'argument --seeds'),
                                      (['--bn-bias', 'nan'], 'argument --bn-bias'),
                                      (['--device', 'tpu'], 'argument --device'),
                                      (['--path', '.'], 'argument --path: expected only with --data cifar10')])
def test_bad_arguments_exit_2_one_line(args, msg, tmp_path):
    r = run('ablate', '--out', str(tmp_path), *args, timeout=120)
    assert r.returncode == 2
    assert msg in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and 'Traceback' not in r.stderr

def test_console_script_is_installed():
    exe = Path(sys.executable).parent/'svd-bn'
    r = subprocess.run([str(exe), 'ablate', '--data', 'x'], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and 'invalid choice' in r.stderr

def test_offline_dataset_is_one_line_not_a_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv('FASTAI_HOME', str(tmp_path/'fastai'))
    r = run('ablate', '--data', 'cifar10', '--quick', '--no-bar', '--out', str(tmp_path/'o'), timeout=120)
    assert r.returncode == 1 and "Could not download 'cifar10'" in r.stderr and 'Traceback' not in r.stderr

def test_interrupted_run_keeps_rows_and_resume_skips_them(tmp_path, monkeypatch):
    calls, real, interrupted = [], E.train_one, []
    def flaky(cfg, dls, progress=False):
        calls.append(cfg)
        if len(calls) == 2 and not interrupted: interrupted.append(cfg); raise KeyboardInterrupt  # Ctrl-C in the second run
        return real(cfg, dls, progress)
    monkeypatch.setattr(E, 'train_one', flaky)
    args = ['ablate', '--models', 'small', '--opts', 'sgd', '--epochs', '1', '--no-bar', '--out', str(tmp_path)]
    assert E.main(args) == 130
    assert len(list(csv.DictReader(open(tmp_path/'results.csv')))) == 1
    first = calls[0]
    calls.clear()
    assert E.main(args) == 0
    rows = list(csv.DictReader(open(tmp_path/'results.csv')))
    assert len(rows) == 4  # orth yes/no × 2 seeds
    assert first not in calls and len(calls) == 3  # the finished run was skipped
    calls.clear()
    assert E.main(args) == 0 and calls == []

def test_same_config_and_seed_give_the_same_row():
    "The seed fixes the data order as well as the weights: run twice, the same numbers (same threads, same process)."
    import torch
    from svd_bn.data import get_dls
    n = torch.get_num_threads(); torch.set_num_threads(1)
    try:
        dls = get_dls('digits', train_size=256)
        cfg = E.Config(epochs=2, model='small', opt='sgd', seed=3)
        a, b = E.train_one(cfg, dls), E.train_one(cfg, dls)
        other = E.train_one(E.Config(epochs=2, model='small', opt='sgd', seed=4), dls)
    finally: torch.set_num_threads(n)
    assert (a['accuracy'], a['valid_loss'], a['history']) == (b['accuracy'], b['valid_loss'], b['history'])
    assert a['valid_loss'] != other['valid_loss']

def test_sgd_recipe_lr_and_bn_momentum_by_epoch():
    "The write-up's schedule in a 30-epoch run: lr 0.107, 0.0107 from epoch 10, 0.0017 from epoch 24; BN momentum 0.1, then 0.05 from epoch 10."
    import torch
    from fastai.callback.core import Callback
    from svd_bn.data import get_dls
    class Seen(Callback):
        order = 61
        def __init__(self): self.seen = {}
        def before_batch(self):
            if self.training and self.iter == 0: self.seen[self.epoch] = (self.opt.hypers[0]['lr'], [m.momentum for m in self.model.modules() if isinstance(m, torch.nn.BatchNorm2d)])
    seen, orig = Seen(), E.Learner
    class L(orig):   # the runner's own Learner, with the recorder added
        def __init__(self, *a, cbs=(), **kw): super().__init__(*a, cbs=list(cbs) + [seen], **kw)
    E.Learner = L
    try: E.train_one(E.Config(epochs=30, model='small', opt='sgd'), get_dls('digits', train_size=64))
    finally: E.Learner = orig
    for epoch, lr, mom in [(0, 0.107, 0.1), (9, 0.107, 0.1), (10, 0.0107, 0.05), (23, 0.0107, 0.05), (24, 0.0017, 0.05), (29, 0.0017, 0.05)]:
        assert abs(seen.seen[epoch][0] - lr) < 1e-12 and set(seen.seen[epoch][1]) == {mom}
