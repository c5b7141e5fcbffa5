"""Writing files so that a crash never leaves a partial file under the final
name, and never replaces a file the user did not ask to replace.

Every writer of the project (checkpoints, converted weights, ONNX exports,
drawings) goes through :func:`atomic_output`: the data goes to a temporary
file beside the target (same folder, hence same file system), is flushed
and fsynced, and only then renamed over the target (``os.replace`` is
atomic on POSIX and Windows). A process killed half-way leaves the target as
it was plus a temporary file whose name says which process wrote it;
:func:`remove_stale_partials` deletes those of processes that are gone.
"""
import contextlib
import os
import os.path as osp
import re
import socket

#: ``.<target name>.<host>.<pid>.partial<target extension>``: hidden, says
#: who wrote it, and keeps the extension that writers pick formats by
PARTIAL_TAG = '.partial'
_PARTIAL = re.compile(r'^\.(?P<target>.+)\.(?P<host>[^.]+)\.(?P<pid>\d+)'
                      + re.escape(PARTIAL_TAG) + r'(\.[^.]*)?$')


def _host():
    return socket.gethostname().split('.')[0] or 'localhost'


def partial_name(path):
    """The temporary file that stands for ``path`` while it is written."""
    folder, name = osp.split(osp.abspath(path))
    return osp.join(folder, f'.{name}.{_host()}.{os.getpid()}{PARTIAL_TAG}'
                    f'{osp.splitext(name)[1]}')


def fsync_path(path):
    """Push a file's (or a folder's) data to the disk."""
    flags = os.O_RDONLY | getattr(os, 'O_DIRECTORY', 0) * osp.isdir(path)
    try:
        fd = os.open(path, flags)
    except OSError:  # e.g. folders on Windows cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on folders
        pass
    finally:
        os.close(fd)


def commit_partial(partial, path):
    """fsync ``partial`` and rename it to ``path`` (then fsync the folder,
    so that the rename itself survives a power cut)."""
    fsync_path(partial)
    os.replace(partial, path)
    fsync_path(osp.dirname(osp.abspath(path)))


@contextlib.contextmanager
def atomic_output(path):
    """Yield a temporary path to write ``path``'s content to; when the block
    ends without an error it becomes ``path`` in one step, otherwise it is
    removed and ``path`` is left as it was."""
    os.makedirs(osp.dirname(osp.abspath(path)) or '.', exist_ok=True)
    partial = partial_name(path)
    try:
        yield partial
        commit_partial(partial, path)
    finally:
        if osp.lexists(partial):
            os.remove(partial)


def write_bytes_atomic(path, data: bytes):
    """``path`` holds ``data`` completely, or is left as it was."""
    with atomic_output(path) as partial:
        with open(partial, 'wb') as f:
            f.write(data)


def write_image_atomic(path, image_bgr):
    """``cv2.imwrite`` through :func:`atomic_output` (the format follows
    ``path``'s extension)."""
    import cv2
    with atomic_output(path) as partial:
        if not cv2.imwrite(partial, image_bgr):
            raise ValueError(f'OpenCV cannot write {path} (an image format '
                             'it knows, e.g. .png or .jpg?)')


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def stale_partials(folder):
    """Temporary files in ``folder`` left by processes of this host that are
    no longer running (a partial file of another host is left alone: it may
    be a live process on a shared file system)."""
    if not osp.isdir(folder):
        return []
    found = []
    for name in sorted(os.listdir(folder)):
        match = _PARTIAL.match(name)
        if match and match['host'] == _host() and \
                not _alive(int(match['pid'])):
            found.append(osp.join(folder, name))
    return found


def remove_stale_partials(folder):
    """Delete :func:`stale_partials` of ``folder``; return their paths."""
    removed = []
    for path in stale_partials(folder):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
            removed.append(path)
    return removed


def check_output_path(path, force, flag='--out'):
    """Refuse to replace an existing ``path`` unless ``force``; a folder is
    never replaced. Also cleans what an earlier killed run left beside it.
    ``flag`` names the path in the messages (the tools' option)."""
    if osp.isdir(path):
        raise IsADirectoryError(f'{flag} {path} is a folder; give a file name')
    if osp.lexists(path) and not force:
        raise FileExistsError(f'{flag} {path} exists; pass --force to replace '
                              'it, or choose another name')
    remove_stale_partials(osp.dirname(osp.abspath(path)))
