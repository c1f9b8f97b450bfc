"What the lessons show a reader: no committed output holds a warning, a log line, a traceback, a temporary path or a stray object repr."
import re
from pathlib import Path
import nbformat, pytest

root = Path(__file__).resolve().parents[1]
notebooks = sorted((root/'nbs').glob('[0-9]*.ipynb')) + [root/'index.ipynb']
bad = {'a warning': re.compile(r'\w*Warning\b|^WARNING|warnings\.warn', re.M), 'a traceback': re.compile(r'Traceback \(most recent call last\)'),
       'a temporary path': re.compile(r'/tmp/|\\Temp\\|/var/folders/|tmp[a-z0-9_]{8}'), 'a log line': re.compile(r'^\[[WIE] |^[WIE]\d{4} \d\d:\d\d|^(INFO|DEBUG|ERROR):|No CUDA runtime', re.M),
       'a stray repr': re.compile(r'<[\w.]+ object at 0x[0-9a-f]+>')}

def _texts(cell):
    for o in cell.get('outputs', []):
        if o.output_type == 'stream': yield o.name, o.text
        elif o.output_type == 'error': yield 'error', '\n'.join(o.get('traceback', []))
        else:
            for k in ('text/plain', 'text/markdown', 'text/html'):
                if k in o.get('data', {}): yield k, o.data[k]

@pytest.mark.parametrize('nb', notebooks, ids=lambda p: p.name)
def test_outputs_are_clean(nb):
    problems = []
    for i, c in enumerate(nbformat.read(nb, as_version=4).cells):
        for kind, text in _texts(c):
            if kind in ('stderr', 'error'): problems.append(f"cell {i}: output on {kind}: {text[:120]!r}")
            problems += [f"cell {i}: {what}: {m.group(0)!r} in {text[max(0, m.start() - 60):m.end() + 60]!r}"
                         for what, rx in bad.items() for m in [rx.search(text)] if m]
    assert not problems, '\n'.join(problems)
