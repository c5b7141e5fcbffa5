"""Test tiers: everything runs on a CPU except tests marked ``cuda``.
Tests marked ``slow`` (multi-process runs repeated or across nodes) run in
``make test`` too; ``pytest -m 'not slow'`` leaves them out locally.

``pytest -m cuda`` runs only the CUDA tier (tests/test_cuda.py), which is
skipped without a CUDA GPU and never needed by CI. ``--tier-device cpu``
runs that tier on the CPU instead, to check the tests themselves on a
machine without a GPU (the parts that only mean something on CUDA, such as
mmcv's CUDA kernels against its CPU ones, still skip).
"""
import pytest
import torch


def pytest_addoption(parser):
    parser.addoption('--tier-device', default='cuda',
                     help='device of the cuda test tier (default: cuda; '
                     'cpu checks the tier itself without a GPU)')


def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'cuda: needs a CUDA GPU (skipped without one); '
        '`pytest -m cuda` runs only these')
    config.addinivalue_line(
        'markers', 'slow: repeated or multi-node distributed runs '
        '(minutes); `pytest -m "not slow"` leaves them out')


@pytest.fixture(scope='session')
def tier_device(request) -> torch.device:
    device = torch.device(request.config.getoption('--tier-device'))
    if device.type == 'cuda' and not torch.cuda.is_available():
        pytest.skip('needs a CUDA GPU (torch.cuda.is_available() is False)')
    return device


#: the demo's short training runs the deployment tests share: task ->
#: iterations (64-pixel synthetic shapes, 16 training / 8 validation images)
DEMO_ITERS = {'seg': 60, 'det': 80}


@pytest.fixture(scope='session')
def demo_model(tmp_path_factory):
    """``demo_model(task) -> (work dir, iterations)``: the demo trained once
    per session for each task, shared by the quantization and deployment
    tests."""
    from helpers import load_tool
    demo = load_tool('demo.py')
    runs = {}

    def train(task):
        if task not in runs:
            work = tmp_path_factory.mktemp(f'demo_{task}')
            iters = DEMO_ITERS[task]
            demo.main(['--task', task, '--iters', str(iters), '--num-train',
                       '16', '--num-val', '8', '--image-size', '64',
                       '--work-dir', str(work)])
            runs[task] = (work / task, iters)
        return runs[task]
    return train
