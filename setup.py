from setuptools import find_packages, setup


def read_version():
    scope = {}
    with open('mmpoolformer/version.py') as f:
        exec(f.read(), scope)
    return scope['__version__']


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

setup(
    name='mmpoolformer',
    version=read_version(),
    description='PoolFormer and the MetaFormer family as OpenMMLab 2.x backbones',
    long_description=open('README.md').read() if __import__('os').path.exists('README.md') else '',
    long_description_content_type='text/markdown',
    packages=find_packages(include=['mmpoolformer', 'mmpoolformer.*']),
    python_requires='>=3.8',
    # torch 2.1: LayerNorm(bias=); newer calls are guarded with fallbacks
    install_requires=['torch>=2.1', 'numpy'],
    extras_require=EXTRAS,
    license='Apache-2.0',
)
