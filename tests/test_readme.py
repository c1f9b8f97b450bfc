"The results table in README.md / index.ipynb is the one the committed run in results/digits gives."
from pathlib import Path
import nbformat, pytest
from svd_bn.experiments import load_results, results_table

root = Path(__file__).resolve().parents[1]

@pytest.mark.parametrize('doc', ['README.md', 'index.ipynb'])
def test_readme_table_is_the_saved_run(doc):
    df, *_ = load_results(root/'results'/'digits')
    assert len(df) == 16
    table = results_table(df)
    if doc.endswith('.ipynb'): text = '\n'.join(c.source for c in nbformat.read(root/doc, as_version=4).cells)
    else: text = (root/doc).read_text()
    assert table in text
