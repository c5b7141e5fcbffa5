from setuptools import find_packages, setup


def read_version():
    scope = {}
    with open('mmpoolformer/version.py') as f:
        exec(f.read(), scope)
    return scope['__version__']


EXTRAS = {
    'det': ['mmdet==3.3.0'],
    'seg': ['mmsegmentation==1.2.2', 'ftfy', 'regex'],
    'cls': ['mmpretrain==1.2.0'],
    'tests': ['pytest', 'timm>=1.0'],
}
EXTRAS['all'] = sorted({req for reqs in EXTRAS.values() for req in reqs})

setup(
    name='mmpoolformer',
    version=read_version(),
    description='PoolFormer and the MetaFormer family as OpenMMLab 2.x backbones',
    long_description=open('README.md').read() if __import__('os').path.exists('README.md') else '',
    long_description_content_type='text/markdown',
    packages=find_packages(include=['mmpoolformer', 'mmpoolformer.*']),
    python_requires='>=3.8',
    # importing mmpoolformer needs only these; det/seg/cls stay optional extras
    install_requires=['torch>=1.13', 'mmengine>=0.10.0,<1.0', 'mmcv>=2.0.0,<2.2.0'],
    extras_require=EXTRAS,
    license='Apache-2.0',
)
