"svd-bn ablate: the command, its files, its errors, and resuming."
import csv, json, os, signal, subprocess, sys, time
from pathlib import Path
import pytest
import svd_bn.experiments as E
import svd_bn.cli as C

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
    assert {p.name for p in out.iterdir()} == {'.lock', 'results.csv', 'results.json', 'results.png'}
    head = next(l for l in r.stdout.splitlines() if l.startswith('|'))
    assert [c.strip() for c in head.strip('|').split('|')] == ['model', 'orth', 'optimizer', 'seed 0', 'mean ± std']

def test_csv_one_row_per_config_and_seed(quick):
    out, _ = quick
    rows = list(csv.DictReader(open(out/'results.csv')))
    cfgs = E.grid(models=C.quick['models'], seeds=C.quick['seeds'], epochs=C.quick['epochs'])
    assert len(rows) == len(cfgs)
    assert sorted((r['model'], r['opt'], r['orth'], r['seed']) for r in rows) == sorted((c.model, c.opt, str(c.orth), str(c.seed)) for c in cfgs)
    assert all(0.5 < float(r['accuracy']) <= 1 for r in rows)  # chance is 0.1
    runs = json.loads((out/'results.json').read_text())['runs']
    assert len(runs) == len(rows) and all(len(r['history']) == C.quick['epochs'] + 1 for r in runs)

@pytest.mark.parametrize('args,msg', [(['--data', 'mnist'], "argument --data: invalid choice: 'mnist'"),
                                      (['--models', 'small,huge'], 'argument --models'),
                                      (['--seeds', '0'], 'argument --seeds'),
                                      (['--bn-bias', 'nan'], 'argument --bn-bias'),
                                      (['--device', 'tpu'], 'argument --device'),
                                      (['--path', '.'], 'argument --path: expected only with --data cifar10')])
def test_bad_arguments_exit_2_one_line(args, msg, tmp_path):
    r = run('ablate', '--out', str(tmp_path), *args, timeout=120)
    assert r.returncode == 2
    assert msg in r.stderr and r.stderr.startswith('svd-bn ablate: error: ')   # one prefix for every argument error
    assert len(r.stderr.strip().splitlines()) == 1 and 'Traceback' not in r.stderr

def test_console_script_is_installed():
    exe = Path(sys.executable).parent/'svd-bn'
    r = subprocess.run([str(exe), 'ablate', '--data', 'x'], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and 'invalid choice' in r.stderr

def test_offline_dataset_is_one_line_not_a_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv('FASTAI_HOME', str(tmp_path/'fastai'))
    r = run('ablate', '--data', 'cifar10', '--quick', '--no-bar', '--out', str(tmp_path/'o'), timeout=120)
    assert r.returncode == 1 and 'Traceback' not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.startswith("svd-bn ablate: error: could not download 'cifar10'") and '--data digits' in r.stderr and '--path' in r.stderr

def test_help_and_bad_arguments_need_no_torch():
    "`svd-bn --help` answers before torch and fastai load (they take seconds to import)."
    code = ("import sys\nfrom svd_bn.cli import main\n"
            "for a in (['--help'], ['ablate', '--help'], ['ablate', '--seeds', '0']):\n"
            "    try: main(a)\n    except SystemExit: pass\n"
            "print('loaded:', 'torch' in sys.modules, 'fastai' in sys.modules)")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip().splitlines()[-1] == 'loaded: False False', r.stdout[-500:] + r.stderr[-500:]
    assert 'int(0.35·epochs)' in r.stdout and 'BatchNorm momentum 0.1' in r.stdout   # the recipe is in the help

def test_default_out_is_named_by_the_grid_and_other_grids_are_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ['ablate', '--models', 'small', '--opts', 'sgd', '--orth', 'yes', '--seeds', '1', '--epochs', '1', '--train-size', '64', '--no-bar']
    assert C.main(args) == 0
    assert (tmp_path/'ablate'/'digits-small-sgd-orth-yes-1seeds-1ep-n64'/'results.csv').exists()
    r = run(*args[:-1], '--epochs', '2', '--no-bar', '--out', str(tmp_path/'ablate'/'digits-small-sgd-orth-yes-1seeds-1ep-n64'), timeout=120)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and 'holds 1 of another' in r.stderr

def test_interrupted_run_keeps_rows_and_resume_skips_them(tmp_path, monkeypatch):
    calls, real, interrupted = [], E.train_one, []
    def flaky(cfg, dls, progress=False):
        calls.append(cfg)
        if len(calls) == 2 and not interrupted: interrupted.append(cfg); raise KeyboardInterrupt  # Ctrl-C in the second run
        return real(cfg, dls, progress)
    monkeypatch.setattr(E, 'train_one', flaky)
    args = ['ablate', '--models', 'small', '--opts', 'sgd', '--epochs', '1', '--no-bar', '--out', str(tmp_path)]
    assert C.main(args) == 130
    assert len(list(csv.DictReader(open(tmp_path/'results.csv')))) == 1
    first = calls[0]
    calls.clear()
    assert C.main(args) == 0
    rows = list(csv.DictReader(open(tmp_path/'results.csv')))
    assert len(rows) == 4  # orth yes/no × 2 seeds
    assert first not in calls and len(calls) == 3  # the finished run was skipped
    calls.clear()
    assert C.main(args) == 0 and calls == []

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

def _rows(out):
    return {E.config_key(r): (r['accuracy'], r['valid_loss'], r['orth_error']) for _, r in E.load_results(out)[0].iterrows()}

def _ctrl_c_on():
    "In the child before it starts: Ctrl-C (SIGINT) acts, as at a terminal, even when this test runs where it is ignored (a background job)."
    signal.signal(signal.SIGINT, signal.SIG_DFL)

def _workers(pid):
    "The pool's worker processes of `pid` (not multiprocessing's resource tracker)."
    kids = [int(k) for t in Path(f'/proc/{pid}/task').iterdir() for k in (t/'children').read_text().split()]
    return [k for k in kids if b'spawn_main' in Path(f'/proc/{k}/cmdline').read_bytes()]

def _alive(pid):
    try: return Path(f'/proc/{pid}/stat').read_text().split(') ')[1][0] not in 'ZX'
    except FileNotFoundError: return False

def test_jobs_crash_and_ctrl_c_lose_no_row_and_rows_equal_serial(tmp_path):
    "--jobs 2: a killed worker, then Ctrl-C, each keep every finished row; the rerun resumes; the rows are the serial run's, bit for bit."
    out = tmp_path/'par'
    args = ['-m', 'svd_bn', 'ablate', '--models', 'small', '--seeds', '4', '--epochs', '2', '--train-size', '256', '--jobs', '2', '--no-bar', '--out', str(out)]
    n_rows = lambda: len(E.load_results(out)[0])
    def start_and_wait(n):
        p = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_ctrl_c_on)
        t = time.time()
        while n_rows() < n and p.poll() is None and time.time() - t < 240: time.sleep(0.05)
        assert p.poll() is None, p.communicate()[1][-2000:]   # still training the rest
        return p
    p = start_and_wait(1)
    os.kill(_workers(p.pid)[0], signal.SIGKILL)                   # a worker crashes
    err = p.communicate(timeout=120)[1]
    assert p.returncode == 1 and 'a worker process died' in err and len(err.strip().splitlines()) == 1, err[-2000:]
    n1 = n_rows()
    assert 1 <= n1 < 12   # far from the 16 runs, so the Ctrl-C below lands mid-grid, not in the last clean-up
    p = start_and_wait(n1 + 1)
    ws = _workers(p.pid)
    p.send_signal(signal.SIGINT)                                  # Ctrl-C
    err = p.communicate(timeout=60)[1]
    assert p.returncode == 130 and 'kept in' in err and 'Traceback' not in err, err[-2000:]
    time.sleep(0.5)
    assert ws and not any(map(_alive, ws))                        # no worker left running
    assert n_rows() > n1
    r = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and n_rows() == 16, r.stderr[-2000:]
    import torch
    n = torch.get_num_threads(); torch.set_num_threads(1)         # the workers' thread count (the CLI's default on the CPU)
    try: E.ablate(E.grid(models=['small'], seeds=4, epochs=2, train_size=256), tmp_path/'serial', progress=False)
    finally: torch.set_num_threads(n)
    assert _rows(out) == _rows(tmp_path/'serial')

def test_row_is_the_last_validation():
    "train_one reads loss and accuracy from the last epoch's validation, which a fresh validate() repeats exactly."
    from svd_bn.data import get_dls
    seen, orig = [], E.Learner
    class L(orig):
        def __init__(self, *a, **kw): super().__init__(*a, **kw); seen.append(self)
    E.Learner = L
    try: r = E.train_one(E.Config(epochs=1, model='small', opt='adamw'), get_dls('digits', train_size=128))
    finally: E.Learner = orig
    with seen[0].no_bar(): loss, acc = seen[0].validate()
    assert (r['valid_loss'], r['accuracy']) == (float(loss), float(acc))

def test_workers_take_the_gpus_in_turn(monkeypatch):
    "With several GPUs visible, `cuda` means all of them, and worker k takes GPU k mod their number (no GPU needed to check)."
    import multiprocessing as mp, signal, torch
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 3)
    monkeypatch.setattr(torch.cuda, 'set_device', lambda d: None)
    devs = E._devices()
    assert devs == [torch.device('cuda', i) for i in range(3)] and E._devices('cuda:1') == [torch.device('cuda', 1)]
    counter, n, old = mp.Value('i', 0), torch.get_num_threads(), signal.getsignal(signal.SIGINT)
    try:
        got = []
        for _ in range(4): E._init_worker(devs, counter, 1); got.append(E._worker['device'].index)
    finally: torch.set_num_threads(n); signal.signal(signal.SIGINT, old); E._worker.clear()
    assert got == [0, 1, 2, 0]

# --- The results folder: one writer, one record per run, checked on load and before training ---

def _descendants(pid):
    "Every process below `pid`: workers and multiprocessing's resource tracker."
    try: kids = [int(k) for t in Path(f'/proc/{pid}/task').iterdir() for k in (t/'children').read_text().split()]
    except FileNotFoundError: return []
    return kids + [d for k in kids for d in _descendants(k)]

def _fake_train(calls):
    "A stand-in for `train_one` that records its calls and returns a valid result at once."
    def f(cfg, dls, progress=False):
        calls.append(cfg)
        return dict(accuracy=0.5 + cfg.seed / 100, valid_loss=1., orth_error=0., seconds=0., params=1, history=[0.] * (cfg.epochs + 1), machine=None)
    return f

SMALL = ['ablate', '--models', 'small', '--opts', 'sgd', '--epochs', '1', '--train-size', '64', '--no-bar']

@pytest.fixture
def finished(tmp_path, monkeypatch):
    "A folder holding a finished 4-run grid (fake runs), and a function that reruns the grid in it, counting what it trains."
    calls = []
    monkeypatch.setattr(E, 'train_one', _fake_train(calls))
    out = tmp_path/'r'
    assert C.main(SMALL + ['--out', str(out)]) == 0 and len(calls) == 4
    def rerun(): calls.clear(); return C.main(SMALL + ['--out', str(out)]), list(calls)
    return out, rerun

def test_two_concurrent_runs_one_trains_the_other_refuses(tmp_path):
    out = tmp_path/'r'
    args = ['-m', 'svd_bn', 'ablate', '--models', 'small', '--seeds', '2', '--epochs', '2', '--no-bar', '--out', str(out)]
    a = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t = time.time()
    while not ((out/'.lock').exists() and (out/'.lock').read_text().strip()) and time.time() - t < 120: time.sleep(0.05)
    b = run(*args[2:], '--opts', 'sgd', timeout=120)   # an overlapping grid on the same folder
    assert b.returncode == 1 and len(b.stderr.strip().splitlines()) == 1, b.stderr[-2000:]
    assert f'in use by another svd-bn ablate (pid {a.pid})' in b.stderr
    assert a.wait(timeout=600) == 0, a.communicate()[1][-2000:]
    assert len(E.load_results(out)[0]) == 8   # the first grid's rows, all of them

def test_every_truncation_of_the_csv_resumes_with_every_row(finished):
    out, rerun = finished
    full, hist = E.load_results(out)[:2]
    data = (out/'results.csv').read_bytes()
    for k in range(len(data)):   # the csv is derived: any damage to it is repaired from results.json
        (out/'results.csv').write_bytes(data[:k])
        df, h, _ = E.load_results(out)
        assert df.equals(full) and h == hist
    (out/'results.csv').unlink()
    assert rerun() == (0, []) and (out/'results.csv').read_bytes() == data

def test_every_truncation_of_the_json_is_refused_in_one_line(finished, capsys):
    out, rerun = finished
    data = (out/'results.json').read_bytes()
    for k in range(len(data)):
        (out/'results.json').write_bytes(data[:k])
        with pytest.raises(E.ResultsError) as e: E.read_runs(out)
        assert '\n' not in str(e.value) and str(out/'results.json') in str(e.value)
    capsys.readouterr()
    code, calls = rerun()
    err = capsys.readouterr().err
    assert code == 1 and calls == [] and err.startswith('svd-bn ablate: error: ') and len(err.strip().splitlines()) == 1
    assert (out/'results.json').read_bytes() == data[:-1]   # never overwritten

def test_deleted_json_is_refused_and_nothing_retrained(finished, capsys):
    out, rerun = finished
    (out/'results.json').unlink()
    code, calls = rerun()
    err = capsys.readouterr().err
    assert code == 1 and calls == [] and 'is missing' in err and len(err.strip().splitlines()) == 1

@pytest.mark.parametrize('edit,msg', [(lambda rs: rs + [rs[0]], 'are the same run'),
                                      (lambda rs: [dict(rs[0], accuracy=float('nan'))] + rs[1:], 'valid accuracy'),
                                      (lambda rs: [dict(rs[0], config=dict(rs[0]['config'], orth='Tru'))] + rs[1:], 'valid orth'),
                                      (lambda rs: [dict(rs[0], config=dict(rs[0]['config'], seed=0.5))] + rs[1:], 'valid seed'),
                                      (lambda rs: [dict(rs[0], history=None)] + rs[1:], 'valid history')])
def test_damaged_records_are_refused_not_read_as_runs(finished, capsys, edit, msg):
    out, rerun = finished
    d = json.loads((out/'results.json').read_text()); d.pop('digest')   # as an older file, checked run by run
    (out/'results.json').write_text(json.dumps(dict(d, runs=edit(d['runs']))))
    code, calls = rerun()
    err = capsys.readouterr().err
    assert code == 1 and calls == [] and msg in err and str(out/'results.json') in err and len(err.strip().splitlines()) == 1

def test_plausible_edit_is_caught_by_the_checksum(finished, capsys):
    out, rerun = finished
    d = json.loads((out/'results.json').read_text()); d['runs'][1]['accuracy'] = 0.9
    (out/'results.json').write_text(json.dumps(d))
    code, calls = rerun()
    assert code == 1 and calls == [] and 'checksum' in capsys.readouterr().err

def test_planted_symlinks_are_replaced_not_followed(tmp_path, monkeypatch):
    monkeypatch.setattr(E, 'train_one', _fake_train([]))
    out, victim = tmp_path/'r', tmp_path/'victim'
    victim.write_text('precious')
    assert C.main(SMALL + ['--seeds', '1', '--out', str(out)]) == 0
    for name in ('results.json.tmp', 'results.csv.tmp', 'results.csv', 'results.png'):   # the old fixed names, and the derived files
        (out/name).unlink(missing_ok=True); (out/name).symlink_to(victim)
    assert C.main(SMALL + ['--seeds', '2', '--out', str(out)]) == 0   # two more runs, each saved
    assert victim.read_text() == 'precious'
    assert not (out/'results.csv').is_symlink() and not (out/'results.png').is_symlink() and len(E.load_results(out)[0]) == 4

@pytest.mark.parametrize('where,msg', [('file', 'got a file'), ('/proc/x', 'expected a folder we can create'),
                                       ('/proc', 'expected a folder we can write in'), ('full', 'MB free')])
def test_unusable_out_is_refused_before_training(tmp_path, monkeypatch, capsys, where, msg):
    calls = []
    monkeypatch.setattr(E, 'train_one', _fake_train(calls))
    out = tmp_path/'f' if where in ('file', 'full') else Path(where)
    if where == 'file': out.write_text('')
    if where == 'full':
        import shutil
        monkeypatch.setattr(E.shutil, 'disk_usage', lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    assert C.main(SMALL + ['--out', str(out)]) == 1 and calls == []
    err = capsys.readouterr().err
    assert err.startswith(f'svd-bn ablate: error: {out}') and msg in err and len(err.strip().splitlines()) == 1

def test_prefixes_of_options_are_not_guessed(tmp_path):
    r = run('ablate', '--seed', '1', '--out', str(tmp_path), timeout=120)
    assert r.returncode == 2 and r.stderr.startswith('svd-bn ablate: error: unrecognized arguments: --seed') and len(r.stderr.strip().splitlines()) == 1

def test_interrupt_before_any_run_says_so(tmp_path, monkeypatch, capsys):
    def stop(*a, **k): raise KeyboardInterrupt
    monkeypatch.setattr(E, 'train_one', stop)
    assert C.main(SMALL + ['--out', str(tmp_path/'r')]) == 130
    assert 'no run had finished' in capsys.readouterr().err

@pytest.mark.skipif(not Path('/proc/self/task').exists(), reason='reads the process tree from /proc (Linux)')
@pytest.mark.parametrize('sig', [signal.SIGKILL, signal.SIGHUP])
def test_no_worker_outlives_its_parent(tmp_path, sig):
    out = tmp_path/'r'
    args = ['-m', 'svd_bn', 'ablate', '--models', 'small', '--opts', 'sgd', '--epochs', '50', '--jobs', '2', '--no-bar', '--out', str(out)]
    p = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t = time.time()
    while len(_workers(p.pid)) < 2 and time.time() - t < 120: time.sleep(0.1)
    time.sleep(3)   # the workers are importing torch and building their data
    kids = _descendants(p.pid)
    assert len(_workers(p.pid)) == 2 and kids, p.communicate()[1][-2000:] if p.poll() is not None else kids
    p.send_signal(sig)
    p.wait(timeout=60)
    t = time.time()
    while any(map(_alive, kids)) and time.time() - t < 30: time.sleep(0.1)
    assert not any(map(_alive, kids)), [k for k in kids if _alive(k)]
    if sig == signal.SIGHUP: assert p.returncode == 130 and 'interrupted' in p.stderr.read()   # a closed terminal stops it as Ctrl-C does

def test_double_ctrl_c_prints_one_line(tmp_path):
    out = tmp_path/'r'
    args = ['-m', 'svd_bn', 'ablate', '--models', 'small', '--opts', 'sgd', '--epochs', '50', '--jobs', '2', '--no-bar', '--out', str(out)]
    p = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_ctrl_c_on)
    t = time.time()
    while len(_workers(p.pid)) < 2 and time.time() - t < 120: time.sleep(0.1)
    time.sleep(5)   # the workers are training
    p.send_signal(signal.SIGINT); time.sleep(0.05); p.send_signal(signal.SIGINT)
    try: err = p.communicate(timeout=120)[1]
    except subprocess.TimeoutExpired: p.kill(); raise AssertionError(f"still running 120 s after two Ctrl-C: {p.communicate()[1][-2000:]}")
    assert p.returncode == 130 and 'Exception ignored' not in err and 'Traceback' not in err, err[-2000:]

def test_bad_image_in_a_dataset_folder_is_one_line_naming_it(tmp_path, monkeypatch):
    from svd_bn.data import write_fake_cifar
    monkeypatch.setenv('FASTAI_HOME', str(tmp_path/'fastai'))   # a cache of its own
    d = write_fake_cifar(tmp_path/'c', ext='jpg')
    bad = sorted((d/'train'/'cat').iterdir())[2]
    bad.write_bytes(bad.read_bytes()[:200])   # a truncated JPEG
    r = run('ablate', '--data', 'cifar10', '--path', str(d), '--models', 'small', '--opts', 'sgd', '--orth', 'yes', '--seeds', '1',
            '--epochs', '1', '--bs', '4', '--no-bar', '--out', str(tmp_path/'o'), timeout=300)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and 'Traceback' not in r.stderr, r.stderr[-2000:]
    assert r.stderr.startswith('svd-bn ablate: error: ') and str(bad) in r.stderr

def test_odd_values_and_a_planted_lock_link_are_one_line(finished, capsys, tmp_path):
    out, rerun = finished
    d = json.loads((out/'results.json').read_text()); d.pop('digest')
    d['runs'][0]['config']['model'] = ['small']   # unhashable
    (out/'results.json').write_text(json.dumps(d))
    assert rerun()[0] == 1 and 'valid model' in capsys.readouterr().err
    other = tmp_path/'other'; other.mkdir(); (other/'.lock').symlink_to(tmp_path/'victim')
    assert C.main(SMALL + ['--out', str(other)]) == 1
    err = capsys.readouterr().err
    assert 'lock file' in err and len(err.strip().splitlines()) == 1 and not (tmp_path/'victim').exists()
