"""Which checkpoint of a work dir can a run resume from?

A Runner checkpoint is a zip archive (torch>=1.6): a file cut short by a
crash has no central directory, a damaged one fails its CRC check. Both are
found by reading the file once, without unpickling anything.
"""
import os
import os.path as osp
import re
import zipfile

#: the names mmengine's CheckpointHook gives (``filename_tmpl`` default)
_NUMBERED = re.compile(r'^(?:epoch|iter)_(\d+)\.pth$')


def checkpoint_problem(path):
    """Why ``path`` cannot be loaded as a checkpoint, or None if it can."""
    if not osp.isfile(path):
        return 'the file does not exist'
    if osp.getsize(path) == 0:
        return 'the file is empty'
    if not zipfile.is_zipfile(path):
        return ('it is not a complete PyTorch checkpoint (no zip directory '
                'at its end: cut short while being written?)')
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        return f'it is damaged ({exc})'
    if bad is not None:
        return f'it is damaged (checksum error in {bad})'
    return None


def read_last_checkpoint(work_dir):
    """The path ``<work_dir>/last_checkpoint`` names, or None."""
    try:
        with open(osp.join(work_dir, 'last_checkpoint')) as f:
            return f.read().strip() or None
    except OSError:
        return None


def numbered_checkpoints(folder):
    """``epoch_N.pth`` / ``iter_N.pth`` of ``folder``, newest first."""
    if not osp.isdir(folder):
        return []
    found = []
    for name in os.listdir(folder):
        match = _NUMBERED.match(name)
        if match:
            path = osp.join(folder, name)
            found.append((int(match[1]), osp.getmtime(path), path))
    return [path for *_, path in sorted(found, reverse=True)]


def newest_loadable_checkpoint(work_dir, named=None):
    """``(path, rejected)``: the checkpoint to resume from (``named``, i.e.
    what last_checkpoint says, if it is loadable, else the newest loadable
    numbered checkpoint beside it or in ``work_dir``) and ``(path, reason)``
    of every newer candidate that is not."""
    candidates = [named] if named else []
    folders = [osp.dirname(named)] if named else []
    for folder in folders + [work_dir]:
        candidates += numbered_checkpoints(folder)
    rejected, seen = [], set()
    for path in candidates:
        key = osp.abspath(path)
        if key in seen:
            continue
        seen.add(key)
        problem = checkpoint_problem(path)
        if problem is None:
            return path, rejected
        rejected.append((path, problem))
    return None, rejected


def torch_file_problem(path):
    """Why ``path`` is not a file ``torch.load`` can read, or None: a zip
    archive (torch>=1.6) must be complete, a legacy file starts with a
    pickle protocol opcode. Catches e.g. a text or HTML file saved under a
    checkpoint's name, which torch.load reports as ``KeyError: 101``."""
    if not osp.isfile(path):
        return 'the file does not exist'
    if osp.getsize(path) == 0:
        return 'the file is empty'
    with open(path, 'rb') as f:
        head = f.read(16)
    if head.startswith(b'PK'):
        return checkpoint_problem(path)
    if head[:1] == b'\x80':  # pickle PROTO: torch's legacy format
        return None
    return (f'it is not a PyTorch checkpoint (neither a zip archive nor a '
            f'pickle; it starts with {head[:12]!r})')
