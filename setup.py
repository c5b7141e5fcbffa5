import os
import os.path as osp
import shutil
import sys
import warnings

from setuptools import find_packages, setup

ROOT = osp.dirname(osp.abspath(__file__))
#: what `mim` and mmengine's `mmpoolformer::` bases read from the package
MIM_FILES = ('configs', 'tools', 'model-index.yml')
#: setup.py commands (also what setuptools' PEP 517 backend passes in
#: sys.argv) that build a distribution: the files are copied in
COPY_COMMANDS = ('sdist', 'bdist_wheel', 'bdist_egg', 'build', 'build_py',
                 'install')
#: editable installs (pip install -e: PEP 660 `editable_wheel`; the legacy
#: `develop`): a symlink, so edits in configs/ and tools/ show at once
LINK_COMMANDS = ('editable_wheel', 'develop')


def read_version():
    scope = {}
    with open(osp.join(ROOT, 'mmpoolformer', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


def add_mim_extension():
    """Fill ``mmpoolformer/.mim`` with configs/, tools/ and model-index.yml,
    as mmdet's, mmseg's and mmpretrain's setup.py do: copied when building
    an sdist or a wheel, a symlink for an editable install; other commands
    (egg_info, dist_info, ...) leave it alone.

    Building from an unpacked sdist (which has ``.mim`` but no top-level
    configs/) keeps its ``.mim``. Returns a function that puts back the
    symlinks of an editable install that copying replaced, so that
    ``pip wheel .`` in a checkout leaves its editable install intact.
    """
    if any(cmd in sys.argv for cmd in LINK_COMMANDS):
        # symlinks fail without privileges on Windows
        mode = 'copy' if sys.platform == 'win32' else 'symlink'
    elif any(cmd in sys.argv for cmd in COPY_COMMANDS):
        mode = 'copy'
    else:
        return lambda: None

    mim_path = osp.join(ROOT, 'mmpoolformer', '.mim')
    os.makedirs(mim_path, exist_ok=True)
    links = {}  # target -> link text, of the symlinks replaced by copies
    for name in MIM_FILES:
        src_path = osp.join(ROOT, name)
        if not osp.exists(src_path):
            continue  # an unpacked sdist: keep what its .mim holds
        tar_path = osp.join(mim_path, name)
        if osp.islink(tar_path):
            if mode == 'copy':
                links[tar_path] = os.readlink(tar_path)
            os.remove(tar_path)
        elif osp.isfile(tar_path):
            os.remove(tar_path)
        elif osp.isdir(tar_path):
            shutil.rmtree(tar_path)

        if mode == 'symlink':
            os.symlink(osp.relpath(src_path, mim_path), tar_path)
        elif osp.isfile(src_path):
            shutil.copyfile(src_path, tar_path)
        elif osp.isdir(src_path):
            shutil.copytree(src_path, tar_path, ignore=shutil.ignore_patterns(
                '__pycache__', '*.pyc', '*.pyo'))
        else:
            warnings.warn(f'Cannot copy {src_path}.')

    def restore_links():
        for tar_path, link in links.items():
            if osp.isdir(tar_path) and not osp.islink(tar_path):
                shutil.rmtree(tar_path)
            elif osp.lexists(tar_path):
                os.remove(tar_path)
            os.symlink(link, tar_path)

    return restore_links


# OpenMMLab distributions are extras, not install_requires: the maintained
# onedl fork provides the same modules under other distribution names, and a
# requirement on `mmcv` would make pip install the original over it (the way
# OpenMMLab keeps mmcv behind its `mim` extra). `import mmpoolformer` says
# what is missing.
EXTRAS = {
    # the original OpenMMLab 2.x (mmcv 2.1 has no wheel for new torch: build it
    # with tools/install_env.sh, which also covers the CUDA ops)
    'mim': ['mmengine>=0.10.0,<1.0', 'mmcv>=2.0.0,<2.2.0'],
    'det': ['mmdet>=3.0.0,<3.4'],
    'seg': ['mmsegmentation>=1.0.0,<1.3', 'ftfy', 'regex'],
    'cls': ['mmpretrain>=1.0.0,<1.3'],
    # the maintained fork, same import names
    'onedl': ['onedl-mmengine>=0.10.8', 'onedl-mmcv>=2.3.0',
              'onedl-mmdetection>=3.4.0', 'onedl-mmsegmentation>=1.3.0',
              'onedl-mmpretrain>=1.3.0', 'ftfy', 'regex'],
    'tests': ['pytest', 'timm>=1.0'],
}
EXTRAS['all'] = sorted({req for key in ('mim', 'det', 'seg', 'cls', 'tests')
                        for req in EXTRAS[key]})

restore_links = add_mim_extension()
try:
    setup(
        name='mmpoolformer',
        version=read_version(),
        description='PoolFormer and the MetaFormer family as OpenMMLab 2.x backbones',
        long_description=(open(osp.join(ROOT, 'README.md')).read()
                          if osp.exists(osp.join(ROOT, 'README.md')) else ''),
        long_description_content_type='text/markdown',
        packages=find_packages(include=['mmpoolformer', 'mmpoolformer.*']),
        # mmpoolformer/.mim (configs, tools, model-index.yml): MANIFEST.in
        include_package_data=True,
        python_requires='>=3.8',
        # the oldest torch the backbones' tests ran on (docs/installation.md);
        # import mmpoolformer names it below that too (stack.TORCH_FLOOR)
        install_requires=['torch>=2.1', 'numpy'],
        extras_require=EXTRAS,
        license='Apache-2.0',
    )
finally:
    restore_links()
