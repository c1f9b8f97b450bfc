"""Pack an image folder into two files, and unpack it: how CIFAR-10's 60,000 JPEGs travel to a lent GPU machine.

Run: python bench/pack_folder.py pack ../shared/data/cifar10 .cifar/cifar10     (writes .cifar/cifar10.bin and .cifar/cifar10.idx)
     python bench/pack_folder.py unpack .cifar/cifar10 /tmp/cifar10           (rebuilds the folder, byte for byte)
The .bin file holds every file's bytes end to end, the .idx file one line per file: its path and its size. Copying
60,000 small files one by one costs a tar archive about 60 MB of headers and padding; this costs a 2 MB index.
Only the standard library, so it runs on a machine where nothing else is installed yet.
"""
import sys
from pathlib import Path

def pack(src, dest):
    src, dest = Path(src), Path(dest)
    files = sorted(f for f in src.rglob('*') if f.is_file() and not f.name.startswith('.'))
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest.with_suffix('.bin'), 'wb') as b, open(dest.with_suffix('.idx'), 'w') as idx:
        for f in files:
            data = f.read_bytes(); b.write(data); idx.write(f"{f.relative_to(src).as_posix()}\t{len(data)}\n")
    return len(files), dest.with_suffix('.bin').stat().st_size

def unpack(packed, dest):
    packed, dest = Path(packed), Path(dest)
    n = size = 0
    with open(packed.with_suffix('.bin'), 'rb') as b:
        for line in packed.with_suffix('.idx').read_text().splitlines():
            name, k = line.rsplit('\t', 1)
            f = dest/name; f.parent.mkdir(parents=True, exist_ok=True)
            data = b.read(int(k))
            if len(data) != int(k): raise ValueError(f"Expected {k} bytes for {name} in {packed.with_suffix('.bin')}. Got {len(data)}: the pack is cut short.")
            f.write_bytes(data); n += 1; size += len(data)
        if b.read(1): raise ValueError(f"Expected {packed.with_suffix('.bin')} to end after {size} bytes. It holds more: the index does not match it.")
    return n, size

if __name__ == '__main__':
    if len(sys.argv) != 4 or sys.argv[1] not in ('pack', 'unpack'): sys.exit(__doc__)
    n, size = (pack if sys.argv[1] == 'pack' else unpack)(sys.argv[2], sys.argv[3])
    print(f"{sys.argv[1]}ed {n:,} files, {size / 2**20:.1f} MiB of bytes: {sys.argv[2]} -> {sys.argv[3]}")
