"""Config handling and Runner building shared by ``tools/train.py`` and
``tools/test.py``.

The flags and their meaning are mmdet 3.x's tools'; the config's
``default_scope`` (mmdet, mmseg or mmpretrain) picks the registries, so one
pair of scripts serves detection, segmentation and classification configs.
"""
import datetime
import difflib
import gc
import glob
import importlib
import inspect
import os
import os.path as osp
import re

import torch
from mmengine.config import Config, DictAction
from mmengine.device import get_device
from mmengine.dist import get_rank, init_dist, is_distributed
from mmengine.logging import print_log
from mmengine.registry import init_default_scope
from mmengine.runner import Runner

from mmpoolformer.checkpoint.torch_load import runner_checkpoint_globals

from .errors import ToolError

#: the scopes our configs use, and the task each one stands for
SCOPES = {'mmdet': 'detection', 'mmseg': 'segmentation',
          'mmpretrain': 'classification'}


def add_common_args(parser):
    """The flags train.py and test.py share (mmdet's spelling)."""
    parser.add_argument('--work-dir', help='the dir to save logs and models '
                        '(default: ./work_dirs/<config name>)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings of the config, key=value (e.g. '
        'train_dataloader.batch_size=4, model.backbone.init_cfg=None, '
        'list items by index: train_dataloader.dataset.pipeline.2.scale='
        '"(512,512)"); no white space inside a value')
    parser.add_argument('--launcher', default='none',
                        choices=['none', 'pytorch', 'slurm', 'mpi'],
                        help='job launcher')
    # torch.distributed.launch passes --local-rank (torch>=2.0) or
    # --local_rank; torchrun sets LOCAL_RANK itself
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    parser.add_argument(
        '--skip-data-check', action='store_true',
        help='start without checking class names, boxes and images first '
        '(unreadable training images are still skipped with a warning)')
    parser.add_argument(
        '--full-data-check', action='store_true',
        help='decode every image in full before the run (default: a fast '
        'check of each file\'s header and end)')
    return parser


def parse_args(parser, argv=None):
    """Parse ``argv``; like mmdet's tools, export ``--local-rank`` as
    LOCAL_RANK unless a launcher already set it."""
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def require_file(path, what):
    """Stop with one message if a local file the user named is missing."""
    if path and '://' not in path and not osp.isfile(path):
        raise ToolError(f'{what} {path} does not exist')


def load_config(args):
    """The config with --cfg-options merged, its launcher and work_dir set
    (CLI > the config's own ``work_dir`` > ./work_dirs/<config name>)."""
    require_file(args.config, 'config file')
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options:
        warn_unknown_options(cfg, args.cfg_options)
        cfg.merge_from_dict(args.cfg_options)
    scope = cfg.get('default_scope')
    if scope not in SCOPES:
        raise ToolError(
            f'{args.config} has default_scope={scope!r}; these tools run '
            f'{", ".join(SCOPES)} configs (it picks the registries)')
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join(
            './work_dirs', osp.splitext(osp.basename(args.config))[0])
    return one_writer_per_file(cfg)


#: mmengine's default hooks and ours that keep their options and promise
#: what the tools promise whatever the config names
OUR_HOOKS = {'logger': ('LoggerHook', 'mmpoolformer.RankZeroLoggerHook'),
             'checkpoint': ('CheckpointHook',
                            'mmpoolformer.SafeCheckpointHook')}


def one_writer_per_file(cfg):
    """mmengine's ``LoggerHook`` writes the test metrics file from every
    rank at once, and its ``CheckpointHook`` can leave no loadable
    checkpoint when killed while saving; our hooks of the same options
    (:class:`mmpoolformer.RankZeroLoggerHook`: one writer;
    :class:`mmpoolformer.SafeCheckpointHook`: crash-safe files) take their
    places, also where the config names none (the Runner would add
    mmengine's with its default options). A hook of another type (a user's
    own) or ``None`` (none at all) is left as it is. Predictions (``--out``)
    and visualisations are written by the main rank or per rank already."""
    if cfg.get('default_hooks') is None:
        cfg.default_hooks = {}
    hooks = cfg.default_hooks
    for key, (theirs, ours) in OUR_HOOKS.items():
        if key not in hooks:  # mmengine's default: the same, interval 1
            hooks[key] = dict(type=theirs, **(
                dict(interval=1) if key == 'checkpoint' else {}))
        hook = hooks.get(key)
        if isinstance(hook, dict) and hook.get('type') in (
                theirs, f'mmengine.{theirs}'):
            hook['type'] = ours
    return cfg


def known_top_level_keys(cfg):
    """What a config may set at its top level: its own keys and what
    ``Runner.from_cfg`` reads."""
    runner_args = set(inspect.signature(Runner.__init__).parameters) - {'self'}
    return set(cfg.keys()) | runner_args | {
        'default_scope', 'custom_imports', 'runner_type', 'launcher',
        'auto_scale_lr', 'model_wrapper_cfg', 'find_unused_parameters',
        'load_from', 'resume', 'work_dir', 'vis_backends', 'log_level'}


def warn_unknown_options(cfg, options):
    """Warn about --cfg-options whose top-level key the config does not
    have and the Runner does not read: a typo there is silently ignored
    (e.g. ``train_dataloder.batch_size=4`` trains with the config's
    batch size). Returns the warnings."""
    known = sorted(known_top_level_keys(cfg))
    messages = []
    for option in options:
        top = option.split('.')[0]
        if top in known:
            continue
        near = difflib.get_close_matches(top, known, n=1, cutoff=0.6)
        messages.append(
            f'--cfg-options {option}: the config has no key {top!r} and the '
            'Runner does not read one, so this option has no effect' +
            (f'; did you mean {near[0]!r}?' if near else '.'))
        print_log(messages[-1], logger='current', level=30)
    return messages


def apply_train_args(cfg, args):
    """--amp, --auto-scale-lr and --resume, as mmdet's train.py applies
    them, with a clear error where mmengine would fail later."""
    if args.amp:
        if get_device() == 'cpu':
            raise ToolError('--amp needs a GPU (or NPU/MLU/MUSA): mmengine\'s '
                            'AmpOptimWrapper does not run on the CPU')
        if cfg.optim_wrapper.get('type') == 'AmpOptimWrapper':
            print_log('AMP training is already enabled in the config.',
                      logger='current')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.auto_scale_lr:
        if not cfg.get('auto_scale_lr') or \
                'base_batch_size' not in cfg.auto_scale_lr:
            raise ToolError('--auto-scale-lr needs auto_scale_lr = dict('
                            'base_batch_size=...) in the config')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':  # the latest checkpoint of the work dir
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        require_file(args.resume, '--resume checkpoint')
        check_resumable(args.resume, cfg.work_dir)
        cfg.resume = True
        cfg.load_from = args.resume
    return cfg


def check_resumable(path, work_dir):
    """Stop before the Runner if the checkpoint named by --resume PATH is
    damaged, naming the newest one of the work dir that loads."""
    from mmpoolformer.checkpoint.files import checkpoint_problem, newest_loadable_checkpoint
    problem = checkpoint_problem(path)
    if problem is None:
        return
    good, _ = newest_loadable_checkpoint(osp.dirname(osp.abspath(path)))
    if good is None:
        good, _ = newest_loadable_checkpoint(work_dir)
    advice = (f'resume from {good} (the newest loadable checkpoint), or run '
              '--resume without a path to take it automatically'
              if good else 'no loadable checkpoint was found beside it')
    raise ToolError(f'--resume {path}: cannot resume from it: {problem}; '
                    f'{advice}')


def apply_test_args(cfg, args):
    """CHECKPOINT and --show-dir, as each library's test.py applies them."""
    require_file(args.checkpoint, 'checkpoint')
    cfg.load_from = args.checkpoint
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        raise ToolError(f'--out {args.out}: the predictions are dumped to a '
                        'pickle file, name it *.pkl or *.pickle')
    if args.show_dir:
        hook = cfg.get('default_hooks', {}).get('visualization')
        if hook is None:
            raise ToolError('--show-dir needs a visualization hook in '
                            'default_hooks of the config')
        scope = cfg.default_scope
        if scope == 'mmdet':  # drawn into <work_dir>/<timestamp>/<show_dir>
            hook.draw = True
            hook.test_out_dir = args.show_dir
        elif scope == 'mmseg':  # into <show_dir>/vis_data/vis_image
            hook.draw = True
            hook.interval = 1  # its default 50 skips 49 of 50 images
            cfg.visualizer.save_dir = args.show_dir
        else:  # mmpretrain's hook: every sample into <show_dir>
            hook.enable = True
            hook.out_dir = args.show_dir
            hook.interval = 1
    return cfg


def add_dump_metric(runner, out):
    """Dump the predictions to ``out`` (a pickle), with mmdet's converter
    for detection results and mmengine's DumpResults otherwise."""
    if runner.cfg.default_scope == 'mmdet':
        from mmdet.evaluation import DumpDetResults as Dump
    else:
        from mmengine.evaluator import DumpResults as Dump
    runner.test_evaluator.metrics.append(Dump(out_file_path=out))


def check_work_dir(cfg, config_path, train):
    """Refuse a run that would overwrite what the user owns: mmengine dumps
    the config to ``<work_dir>/<config name>`` (the config itself when the
    work dir is its folder), and training writes ``epoch_N.pth`` /
    ``iter_N.pth`` / ``best_*.pth`` and ``last_checkpoint`` over an earlier
    run's unless it resumes that run. Other files are left alone."""
    work_dir = cfg.work_dir
    dump = osp.join(work_dir, osp.basename(config_path))
    if osp.exists(dump) and osp.samefile(dump, config_path):
        raise ToolError(
            f'work dir {work_dir} holds the config {config_path} itself, '
            'which the run would overwrite with its merged copy; choose '
            'another --work-dir')
    if osp.exists(dump) and not cfg.get('resume', False) and \
            not has_run_logs(work_dir):
        raise ToolError(
            f'work dir {work_dir} holds a file {osp.basename(dump)} that no '
            'earlier run wrote (there are no run logs); the run would '
            'replace it with its merged config. Move the file, or choose '
            'another --work-dir')
    if train and not cfg.get('resume', False):
        found = sorted(f for pattern in ('epoch_*.pth', 'iter_*.pth',
                                         'best_*.pth')
                       for f in glob.glob(osp.join(work_dir, pattern)))
        if osp.exists(osp.join(work_dir, 'last_checkpoint')):
            found.append(osp.join(work_dir, 'last_checkpoint'))
        if found:
            shown = ', '.join(osp.basename(f) for f in found[:5])
            raise ToolError(
                f'work dir {work_dir} already holds checkpoints of an earlier '
                f'run ({shown}{", ..." if len(found) > 5 else ""}), which '
                'this run would overwrite: continue it with --resume, or '
                'choose another --work-dir')


#: the folders mmengine's Runner logs into, named by the run's timestamp
_RUN_FOLDER = re.compile(r'^\d{8}_\d{6}$')


def has_run_logs(work_dir):
    """Whether a Runner has run in ``work_dir`` (it leaves a
    ``<timestamp>/`` log folder): the dumped config there is its own."""
    return osp.isdir(work_dir) and any(
        _RUN_FOLDER.match(name) and osp.isdir(osp.join(work_dir, name))
        for name in os.listdir(work_dir))


def prepare_distributed(cfg):
    """Make ``--launcher pytorch`` work on a machine without CUDA.

    mmengine's ``init_dist`` calls ``torch.cuda.set_device`` (which raises
    without a GPU) and configs ask for NCCL; the Runner also gives DDP
    ``device_ids=[LOCAL_RANK]``, which DDP refuses for a CPU module. So on a
    CPU-only machine we start the process group ourselves with gloo (the
    Runner then skips ``init_dist``) and wrap the model with
    ``device_ids=None``. With CUDA nothing changes.
    """
    if cfg.launcher == 'none':
        return cfg
    if torch.cuda.is_available():
        if not torch.distributed.is_initialized():  # as the Runner would
            init_dist(cfg.launcher, **cfg.get('env_cfg', {}).get(
                'dist_cfg', {}))
        return cfg
    if cfg.launcher != 'pytorch':
        raise ToolError(f'--launcher {cfg.launcher} needs CUDA GPUs; without '
                        'them, start CPU processes with torchrun (tools/'
                        'dist_train.sh) and --launcher pytorch')
    dist_cfg = cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})
    if dist_cfg.get('backend', 'nccl') == 'nccl':
        dist_cfg['backend'] = 'gloo'
    if not torch.distributed.is_initialized():
        kwargs = dict(backend=dist_cfg['backend'])
        if dist_cfg.get('timeout') is not None:
            kwargs['timeout'] = datetime.timedelta(seconds=dist_cfg.timeout)
        torch.distributed.init_process_group(**kwargs)
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel', broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    if wrapper.get('type', 'MMDistributedDataParallel') == \
            'MMDistributedDataParallel':
        wrapper.setdefault('device_ids', None)
    cfg.model_wrapper_cfg = wrapper
    return cfg


def checked_by_main_rank(cfg, check):
    """Run the pre-flight ``check()`` once per job: in a distributed run
    the main rank checks and the others wait for its verdict (one reader
    of the data, not one per rank). Starts the process group the Runner
    will use; returns the config as :func:`prepare_distributed` does.

    A problem found stops every rank: the main rank raises it, the others
    say that it did."""
    cfg = prepare_distributed(cfg)
    if not is_distributed():
        check()
        return cfg
    verdict, error, rank = [None], None, get_rank()
    # the others may wait long (--full-data-check decodes every image):
    # a CPU group without the job's collective timeout carries the verdict
    waiting = torch.distributed.new_group(
        backend='gloo', timeout=datetime.timedelta(days=7))
    if rank == 0:
        try:
            check()
        except BaseException as exc:  # a bug, too, must not hang the rest
            error = exc
            verdict = [(isinstance(exc, ToolError), str(exc))]
    torch.distributed.broadcast_object_list(verdict, src=0, group=waiting)
    torch.distributed.destroy_process_group(waiting)
    if verdict[0] is None:
        return cfg
    torch.distributed.destroy_process_group()
    if error is not None:
        raise error
    tool_error, _ = verdict[0]
    message = (f'stopped on rank {rank}: the main rank found a '
               'problem before the run (its error says which)')
    raise ToolError(message) if tool_error else RuntimeError(message)


def build_and_run(cfg, work):
    """Build the config's Runner, return ``work(runner)``, and in a
    distributed run end it cleanly on every rank.

    mmengine leaves the process group open, and the model's DDP wrapper
    keeps gloo's backend alive after ``destroy_process_group``. Freed only
    at interpreter exit, its threads can abort a rank ("terminate called
    without an active exception") after the work is done, failing the
    torchrun job. So the ranks meet at a barrier, the Runner (with the
    wrapper) is freed, and only then is the process group destroyed."""
    runner = build_runner(prepare_distributed(cfg))
    try:
        with runner_checkpoint_globals():  # --resume, test.py's checkpoint
            result = work(runner)
        if is_distributed():  # no rank tears gloo down while another talks
            torch.distributed.barrier()
        return result
    finally:
        del runner
        gc.collect()  # the Runner and its loops reference each other
        if is_distributed():
            torch.distributed.destroy_process_group()


def build_runner(cfg):
    """The Runner of the config's scope: ``runner_type`` from that scope's
    RUNNERS registry if the config names one, else ``Runner.from_cfg``."""
    scope = cfg.default_scope
    init_default_scope(scope)
    if scope == 'mmdet':  # as mmdet's tools: fewer torch.compile recompiles
        from mmdet.utils import setup_cache_size_limit_of_dynamo
        setup_cache_size_limit_of_dynamo()
    if 'runner_type' in cfg:
        return importlib.import_module(f'{scope}.registry').RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)
