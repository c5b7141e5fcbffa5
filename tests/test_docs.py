"""README.md and docs/*.md: a small front page whose links hold, and shell
commands that are either run by a test or marked as needing what a test
machine lacks.

Every command of a ```bash / ```shell / ```console block either ends (its
last line, after a backslash continuation) with one of ``MARKERS``, or its
script (``tools/train.py``, ``pytest``; a ``make`` target stands for the
script its Makefile recipe runs) is in ``RUN_BY_TESTS`` with the test files
that run it. A few cheap commands (``RUN_HERE``) are run by this file itself.
A new command that is neither fails here, naming the file, the line and the
command.
"""
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / 'README.md'
DOCS = sorted((ROOT / 'docs').glob('*.md'))
PAGES = [README, *DOCS]
README_LIMIT = 15_000  # bytes

# what a command needs that a test machine does not have: the comment its
# last line ends with
MARKERS = ('# needs a GPU', '# needs COCO', '# needs ADE20K', '# needs ImageNet',
           '# needs Slurm', '# needs the released weights')

# script -> the test files that run it (each must exist and name the script,
# as its path or as its path under tools/, the way helpers.load_tool does)
RUN_BY_TESTS = {
    'tools/demo.py': ['tests/test_demo.py'],
    'tools/install_env.sh': ['tests/test_stack.py'],  # switches and errors
    'tools/train.py': ['tests/test_tools.py', 'tests/test_training.py',
                       'tests/test_reliability.py'],
    'tools/test.py': ['tests/test_tools.py', 'tests/test_training.py'],
    'tools/dist_train.sh': ['tests/test_ddp.py', 'tests/test_scale.py'],
    'tools/dist_test.sh': ['tests/test_ddp.py', 'tests/test_scale.py'],
    'tools/analysis_tools/get_flops.py': ['tests/test_configs.py'],
    'tools/analysis_tools/benchmark.py': ['tests/test_benchmark.py'],
    'tools/analysis_tools/gpu_table.sh': ['tests/test_benchmark.py'],
    'tools/analysis_tools/plot_curves.py': ['tests/test_plot_curves.py'],
    'tools/deployment/export_onnx.py': ['tests/test_deployment.py'],
    'tools/deployment/quantize.py': ['tests/test_quantize.py'],
    'tools/deployment/deploy.py': ['tests/test_mmdeploy.py'],
    'tools/analysis_tools/profile_inference.py': ['tests/test_benchmark.py'],
    'tools/demo/image_demo.py': ['tests/test_visualization.py'],
    'tools/visualization/vis_cam.py': ['tests/test_visualization.py'],
    'tools/model_converters/convert_checkpoint.py': [
        'tests/test_convert_checkpoint.py'],
    'tools/model_zoo/gen_model_zoo.py': ['tests/test_model_index.py'],
    # the suite itself; conftest.py defines its `cuda` marker and options
    'pytest': ['tests/conftest.py'],
}

# cheap commands of the docs that this file runs (``python`` is this
# interpreter); each must still appear in the docs
RUN_HERE = [
    'python tools/model_zoo/gen_model_zoo.py --check',
    'python tools/demo.py --help',
    'bash tools/install_env.sh --help',
]

SHELL_BLOCKS = ('bash', 'shell', 'sh', 'console')


# ----------------------------------------------------------------- parsing
def blocks(text: str):
    """``(language, first line number, lines)`` of every fenced block."""
    out, lang, start, lines = [], None, 0, []
    for number, line in enumerate(text.splitlines(), 1):
        fence = re.match(r'\s*```+\s*([\w+-]*)', line)
        if fence and lang is None:
            lang, start, lines = fence.group(1).lower() or 'text', number + 1, []
        elif fence:
            out.append((lang, start, lines))
            lang = None
        elif lang is not None:
            lines.append(line)
    return out


def commands(path: Path):
    """``(line number, command text)`` of every shell command of ``path``:
    continuation lines joined, comment-only lines and console output
    skipped, a console prompt removed."""
    out = []
    for lang, start, lines in blocks(path.read_text()):
        if lang not in SHELL_BLOCKS:
            continue
        pending, first = [], None
        for number, line in enumerate(lines, start):
            stripped = line.strip()
            if not pending:
                if lang == 'console':
                    if not stripped.startswith('$ '):
                        continue  # output
                    stripped = stripped[2:].strip()
                if not stripped or stripped.startswith('#'):
                    continue
                first = number
            pending.append(stripped)
            if not stripped.endswith('\\'):
                out.append((first, '\n'.join(pending)))
                pending = []
        assert not pending, f'{path.name}:{first}: unfinished command'
    return out


def marker_of(command: str):
    last = command.splitlines()[-1].rstrip()
    return next((m for m in MARKERS if last.endswith(m)), None)


def words_of(command: str) -> list:
    return shlex.split(command.replace('\\\n', ' '), comments=True)


def script_of(words: list) -> str:
    """The script a command runs: ``python X`` / ``bash X`` -> X,
    ``python -m M`` -> M, ``make T`` -> ``make T``, else the program;
    leading ``VAR=value`` assignments skipped."""
    words = list(words)
    while words and re.match(r'^[A-Za-z_][A-Za-z0-9_]*=', words[0]):
        words.pop(0)
    if not words:
        return ''
    program = words[0]
    if program == 'make':
        target = next((w for w in words[1:] if '=' not in w
                       and not w.startswith('-')), 'all')
        return f'make {target}'
    if program in ('bash', 'sh') and len(words) > 1:
        return words[1]
    if re.search(r'(^|/)python[\d.]*$', program):
        if len(words) > 2 and words[1] == '-m':
            return words[2]
        return words[1] if len(words) > 1 else program
    return program


def make_recipes() -> dict:
    """``{target: [recipe commands]}`` of the Makefile."""
    recipes, target = {}, None
    for line in (ROOT / 'Makefile').read_text().splitlines():
        head = re.match(r'^([\w.-]+):(?!=)', line)
        if head:
            target = head.group(1)
            recipes[target] = []
        elif line.startswith('\t') and target:
            recipes[target].append(line.strip())
    return recipes


def scripts_of(command: str) -> list:
    """The scripts a command runs: a ``make`` target's are those of its
    recipe (the prerequisites install and lint)."""
    script = script_of(words_of(command))
    if not script.startswith('make '):
        return [script]
    recipe = make_recipes().get(script.split()[1])
    if recipe is None:
        return [script]
    # the first words name the script; make's $(...) come later
    return [script_of(line.replace('$(PY)', 'python').split())
            for line in recipe]


def all_commands():
    return [(path, number, command) for path in PAGES
            for number, command in commands(path)]


def plain(command: str) -> str:
    """The command without comments and line continuations."""
    return ' '.join(words_of(command))


# ------------------------------------------------------------------- tests
def test_readme_is_a_front_page():
    size = len(README.read_bytes())
    assert size <= README_LIMIT, \
        f'README.md has {size} bytes, more than {README_LIMIT}: move ' \
        'details to a page under docs/'


def _links(path: Path):
    """``(target, text)`` of every markdown link and image outside code."""
    text = path.read_text()
    for _, start, lines in blocks(text):
        for line in lines:
            text = text.replace(line, '')
    text = re.sub(r'`[^`\n]*`', '', text)
    return re.findall(r'!?\[([^\]]*)\]\(([^)\s]+)\)', text)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    heading = re.sub(r'[^\w\- ]', '', heading.strip().lower())
    return heading.replace(' ', '-')


def anchors(path: Path) -> set:
    text = path.read_text()
    for _, start, lines in blocks(text):
        for line in lines:
            text = text.replace(line, '')
    return {slug(h) for h in re.findall(r'^#+\s+(.*)$', text, re.M)}


@pytest.mark.parametrize('path', PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_point_to_existing_files(path):
    broken = []
    for _, target in _links(path):
        if re.match(r'^[a-z][a-z0-9+.-]*:', target):  # http:, mailto:
            continue
        file, _, anchor = target.partition('#')
        resolved = (path.parent / file).resolve() if file else path
        if not resolved.exists():
            broken.append(f'{target} (no such file)')
        elif anchor and resolved.suffix == '.md' and \
                anchor not in anchors(resolved):
            broken.append(f'{target} (no heading with this anchor)')
    assert not broken, f'{path.relative_to(ROOT)}: broken links: {broken}'


def test_readme_links_every_docs_page():
    linked = {(ROOT / target.partition('#')[0]).resolve()
              for _, target in _links(README)
              if target.startswith('docs/') and
              target.partition('#')[0].endswith('.md')}
    assert linked, 'README.md links no page of docs/'
    for page in linked:
        assert page.is_file(), f'README.md links a missing page {page}'
    unlinked = {p.resolve() for p in DOCS} - linked
    assert not unlinked, 'docs pages the README does not link: ' + \
        ', '.join(sorted(p.name for p in unlinked))


def test_no_tracker_numbers():
    """A target or a table is named by what it measures, not by the issue
    or pull request that asked for it."""
    pattern = re.compile(r'(?i)\b(issue|pr|pull request)s?[ -]?#?\d+|'
                         r'(?<![\w&/#])#\d+\b|\[issue')
    found = [f'{p.relative_to(ROOT)}:{n}: {line.strip()}'
             for p in PAGES
             for n, line in enumerate(p.read_text().splitlines(), 1)
             if pattern.search(line)]
    assert not found, '\n'.join(found)


def test_the_parser_finds_the_commands():
    found = all_commands()
    scripts = {s for _, _, c in found for s in scripts_of(c)}
    # the README's two commands, and the tools the docs show
    assert {'tools/demo.py', 'pytest', 'tools/train.py',
            'tools/model_zoo/gen_model_zoo.py'} <= scripts
    assert script_of(words_of('GPUS=16 bash tools/slurm_train.sh P J C W')) \
        == 'tools/slurm_train.sh'
    assert scripts_of('make demo ARGS="--task seg"') == ['tools/demo.py']
    assert scripts_of('make test STACK=onedl') == ['pytest']
    assert marker_of('python a.py \\\n    b  # needs a GPU') == '# needs a GPU'
    assert marker_of('python a.py  # needs a GPU\n    b') is None


def test_every_command_is_run_by_a_test_or_marked():
    problems = []
    for path, number, command in all_commands():
        if marker_of(command) or plain(command) in RUN_HERE:
            continue
        missing = [s for s in scripts_of(command) if s not in RUN_BY_TESTS]
        if missing:
            problems.append(
                f'{path.relative_to(ROOT)}:{number}: `{plain(command)}` runs '
                f'{", ".join(missing)}, which no test in RUN_BY_TESTS of '
                f'tests/test_docs.py runs; add the test there, or end the '
                f'command with one of {", ".join(MARKERS)}')
    assert not problems, '\n'.join(problems)


@pytest.mark.parametrize('script', sorted(RUN_BY_TESTS))
def test_run_by_tests_names_tests_that_run_the_script(script):
    assert script == 'pytest' or (ROOT / script).is_file(), script
    short = script.split('/', 1)[1] if script.startswith('tools/') else script
    for test in RUN_BY_TESTS[script]:
        source = ROOT / test
        assert source.is_file(), f'{test} (for {script}) does not exist'
        text = source.read_text()
        assert script in text or short in text, \
            f'{test} never mentions {script}'


@pytest.mark.parametrize('command', RUN_HERE)
def test_cheap_commands_of_the_docs_run(command):
    assert command in {plain(c) for _, _, c in all_commands()}, \
        f'`{command}` is no longer in the docs: remove it from RUN_HERE'
    argv = shlex.split(command)
    if argv[0] == 'python':
        argv[0] = sys.executable
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, \
        f'`{command}` exited with {proc.returncode}:\n' \
        f'{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}'
