#!/usr/bin/env bash
# Run here, once, before lending bench/gpu.sh a GPU machine: the Python 3.12 wheels it installs there (fastai, nbdev and
# what they import that the machine lacks; see bench/gpu_wheels.txt) into .whl/, and CIFAR-10 packed into .cifar/
# (bench/pack_folder.py: 60,000 JPEGs as one file of bytes and one index). Both folders stay out of git
# (.git/info/exclude) and travel with the call's `carry`. Together about 57 MiB, under the 64 MiB a call carries.
# Usage: bash bench/gpu_prepare.sh [CIFAR-10 folder, default ../shared/data/cifar10]
set -euo pipefail
cd "$(dirname "$0")/.."
cifar=${1:-../shared/data/cifar10}
for d in /.whl/ /.cifar/; do grep -qx "$d" .git/info/exclude || echo "$d" >> .git/info/exclude; done
platforms=""
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do platforms="$platforms --platform $p"; done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $platforms -d .whl -r bench/gpu_wheels.txt
python3 - <<'PY'   # one wheel per project (two stop the install there): the pure-Python one where pip also fetched a compiled one
import re
from pathlib import Path
groups = {}
for w in Path('.whl').glob('*.whl'): groups.setdefault(re.split(r'-\d', w.name, maxsplit=1)[0].lower(), []).append(w)
for ws in groups.values():
    for w in sorted(ws, key=lambda w: ('none-any' not in w.name, w.name))[1:]: w.unlink(); print('dropped', w.name)
PY
python3 bench/pack_folder.py pack "$cifar" .cifar/cifar10
du -sh .whl .cifar
echo 'Then, with the device tool: run command "bash bench/gpu.sh .cifar/cifar10", carry [".whl", ".cifar"], timeout_s 560.'
