"""Every reader, fuzzed (tests/support/fuzzing.py): mutated files raise only TalmtsError subclasses, never KeyError,
TypeError, UnicodeDecodeError, RecursionError, ... A fixed budget here (derandomized under CI's "ci" profile);
bench/fuzz_readers.py runs many more cases."""

from __future__ import annotations

import random
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.fuzzing import run_case, targets, write_case

TARGETS = {t.name: t for t in targets()}
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # readers warn about odd but usable files
EXAMPLES = 100  # per reader; the module stays well under 20 s


@pytest.fixture(scope="module")
def scratch():
    ram = "/dev/shm" if Path("/dev/shm").is_dir() else None  # in memory: the writers' fsync costs nothing there
    with tempfile.TemporaryDirectory(dir=ram) as d:
        yield Path(d)


def _fresh(folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_valid_sample_is_read(name, tmp_path):
    target = TARGETS[name]
    for file, data in target.files.items():
        (tmp_path / file).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / file).write_bytes(data)
    result = target.read(tmp_path) if target.args is None else target.read(tmp_path, [])
    assert result  # the unmutated sample reads (so the fuzzing starts from files the reader accepts)


@pytest.mark.parametrize("name", sorted(TARGETS))
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rng=st.randoms(use_true_random=False))
def test_mutated_files_raise_only_typed_errors(name, rng, scratch):
    outcome = run_case(TARGETS[name], _fresh(scratch / name), rng)
    if isinstance(outcome, BaseException):
        raise outcome  # the traceback shows the reader line that crashed


def test_mutations_change_the_files(tmp_path):
    """The fuzzer is not idle: most cases differ from the sample and many are refused."""
    changed = refused = 0
    for case in range(60):
        target = TARGETS["activitynet_json"]
        folder = _fresh(tmp_path / "c")
        victim, _ = write_case(target, folder, random.Random(case))
        changed += (folder / victim).read_bytes() != target.files[victim]
        refused += run_case(target, _fresh(tmp_path / "d"), random.Random(case)) is False
    assert changed >= 50 and refused >= 20
