"""Write README.md from index.ipynb with nbconvert (nbdev-readme needs quarto, which cannot be installed here).
`python .ci/readme.py` writes README.md; `python .ci/readme.py --check` fails when README.md is out of date."""
import sys, re, copy
from pathlib import Path
import nbformat
from nbconvert import MarkdownExporter

root = Path(__file__).resolve().parent.parent

def readme_text(nb_path=root/'index.ipynb') -> str:
    "Markdown of `nb_path` with `#| hide` cells dropped, `#| echo: false` cells reduced to their printed output, and `#|` directives removed."
    nb = nbformat.read(nb_path, as_version=4)
    keep = []
    for c in nb.cells:
        lines = c.source.splitlines()
        if c.cell_type == 'code':
            if any(re.match(r'#\|\s*hide\b', l) for l in lines): continue
            if any(re.match(r'#\|\s*echo:\s*false\b', l) for l in lines):   # its printed output only, as markdown
                text = ''.join(o.get('text', '') if o.output_type == 'stream' else o.get('data', {}).get('text/markdown', '') for o in c.get('outputs', []))
                if text.strip(): keep.append(nbformat.v4.new_markdown_cell(text.strip()))
                continue
            c = copy.deepcopy(c); c.source = '\n'.join(l for l in lines if not l.startswith('#|')).strip()
            if not c.source: continue
        keep.append(c)
    nb.cells = keep
    nb.metadata['language_info'] = {'name': 'python'}  # fenced code blocks marked as python
    body, _ = MarkdownExporter().from_notebook_node(nb)
    body = re.sub(r'\n{3,}', '\n\n', body).strip() + '\n'
    return '<!-- Generated from index.ipynb by .ci/readme.py: edit the notebook, not this file. -->\n\n' + body

if __name__ == '__main__':
    text, out = readme_text(), root/'README.md'
    if '--check' in sys.argv:
        ok = out.exists() and out.read_text() == text
        if not ok: print('README.md differs from index.ipynb')
        sys.exit(0 if ok else 1)
    out.write_text(text)
