"""toonlib.runtime: glibc malloc tunables (on by default, can be turned off) and the precision choice."""
from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import warnings

import pytest
import torch

from toonlib import runtime
from toonlib.messages import ToonlibWarning

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

_PAGE_FAULTS = """
import resource, torch
from toonlib import runtime
from toonlib.networks import Generator
Generator(z_dim=8, w_dim=8, img_resolution=8, channel_base=64, channel_max=8)  # toonlib tunes malloc here

def block():  # 64 MiB, above glibc's largest automatic mmap threshold (32 MiB)
    x = torch.empty(16 * 2**20)
    x.fill_(1.0)

for _ in range(4):  # steady state: glibc may alternate between two such blocks before it reuses them
    block()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    block()
print(runtime.allocator_tuned(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults_of_a_reused_block(**env: str) -> tuple[bool, int]:
    """In a fresh process: whether toonlib tuned malloc, and the page faults of allocating and filling a
    64 MiB tensor 3 more times (16384 pages each if the memory is mapped afresh, ~0 if the heap reuses it)."""
    clean = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", runtime.ALLOCATOR_ENV)}
    out = subprocess.run([sys.executable, "-c", _PAGE_FAULTS], env={**clean, **env}, capture_output=True, text=True,
                         check=True).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(not GLIBC, reason="the tunables are glibc's")
def test_building_a_network_makes_malloc_reuse_large_blocks():
    tuned, faults = _faults_of_a_reused_block()
    assert tuned
    assert faults < 2000, faults


@pytest.mark.skipif(not GLIBC, reason="the tunables are glibc's")
@pytest.mark.parametrize("value", ["default", "0"])
def test_the_allocator_setting_can_be_turned_off(value):
    tuned, faults = _faults_of_a_reused_block(**{runtime.ALLOCATOR_ENV: value})
    assert not tuned
    assert faults > 3 * 15000, faults  # glibc's own behaviour: a fresh mapping, every page faulted in again


class _FakeLibc:
    def __init__(self, refuse: set[int]):
        self.refuse, self.calls = refuse, []

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return 0 if param in self.refuse else 1


def test_old_glibc_without_large_mmap_thresholds_switches_mmap_off(monkeypatch):
    monkeypatch.setattr(runtime, "_state", {})
    monkeypatch.delenv(runtime.ALLOCATOR_ENV, raising=False)
    libc = _FakeLibc(refuse={runtime.M_MMAP_THRESHOLD})
    assert runtime.tune_allocator(libc)
    assert (runtime.M_MMAP_MAX, 0) in libc.calls and (runtime.M_TRIM_THRESHOLD, runtime.TRIM_THRESHOLD) in libc.calls
    assert runtime.allocator_tuned()
    assert runtime.tune_allocator(_FakeLibc(refuse=set())) and len(libc.calls) == 3  # once per process

    monkeypatch.setattr(runtime, "_state", {})
    assert not runtime.tune_allocator(_FakeLibc(refuse={runtime.M_MMAP_THRESHOLD, runtime.M_MMAP_MAX}))
    monkeypatch.setattr(runtime, "_state", {})
    monkeypatch.setenv(runtime.ALLOCATOR_ENV, "off")
    untouched = _FakeLibc(refuse=set())
    assert not runtime.tune_allocator(untouched) and untouched.calls == []


def test_resolve_precision(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert runtime.resolve_precision("fp32", cpu) is None
    assert runtime.resolve_precision("bf16", cpu) is torch.bfloat16
    assert runtime.resolve_precision("fp16", cuda) is torch.float16
    with pytest.raises(ValueError, match="precision must be one of"):
        runtime.resolve_precision("half", cpu)
    # 'auto': bfloat16 only on CPUs that compute it in hardware; float32 on CUDA, where with the step replayed as a
    # CUDA graph bfloat16 was measured no faster (docs/design.md section 11).
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    assert runtime.resolve_precision("auto", cpu) is torch.bfloat16
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert runtime.resolve_precision("auto", cpu) is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert runtime.native_bf16(cuda)
    assert runtime.resolve_precision("auto", cuda) is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert runtime.resolve_precision("auto", cuda) is None


def test_forcing_a_precision_the_cpu_emulates_is_warned(monkeypatch):
    """precision='bf16' on a CPU without bfloat16 in hardware (160x slower) and 'fp16' on any CPU (meant for CUDA)
    are done as asked, with a warning that names 'auto'; bf16 where the CPU computes it is not warned."""
    cpu = torch.device("cpu")
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    with pytest.warns(ToonlibWarning, match=r"precision='bf16' on a CPU without bfloat16 in hardware .*'auto' picks "
                                            r"float32 here"):
        assert runtime.resolve_precision("bf16", cpu) is torch.bfloat16
    with pytest.warns(ToonlibWarning, match=r"precision='fp16' on the CPU: float16 is meant for CUDA GPUs"):
        assert runtime.resolve_precision("fp16", cpu) is torch.float16
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert runtime.resolve_precision("bf16", cpu) is torch.bfloat16
        assert runtime.resolve_precision("fp32", cpu) is None


def test_autocast_region():
    x = torch.randn(4, 4)
    with runtime.autocast(torch.device("cpu"), torch.bfloat16):
        assert (x @ x).dtype == torch.bfloat16
    with runtime.autocast(torch.device("cpu"), None):
        assert (x @ x).dtype == torch.float32


@pytest.mark.parametrize("value, expected", [(None, True), ("", True), ("off", False), ("0", False), ("NO", False)])
def test_cuda_graphs_are_on_for_cuda_devices_unless_turned_off(monkeypatch, value, expected):
    monkeypatch.delenv(runtime.CUDA_GRAPHS_ENV, raising=False)
    if value is not None:
        monkeypatch.setenv(runtime.CUDA_GRAPHS_ENV, value)
    assert runtime.cuda_graphs(torch.device("cuda")) is expected
    assert runtime.cuda_graphs(torch.device("cuda:1")) is expected
    assert runtime.cuda_graphs(torch.device("cpu")) is False


def test_side_by_side_groups_and_intra_op_threads():
    """A batch steps on one worker per intra-op thread on the CPU (never more workers than targets), on one
    elsewhere; `intra_op_threads` sets torch's thread count for a block and restores it, also after an error."""
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        cpu = torch.device("cpu")
        assert [runtime.side_by_side(cpu, n) for n in (1, 2, 3, 8)] == [1, 2, 2, 2]
        assert runtime.side_by_side(torch.device("cuda"), 8) == 1
        with runtime.intra_op_threads(1):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with pytest.raises(KeyError), runtime.intra_op_threads(1):
            raise KeyError("x")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


def test_the_gpu_check_script_runs_its_rows(tmp_path):
    """benchmarks/check_cuda.py is what a session lent a GPU runs (project, blend/render, finetune on the device,
    each against the CPU); CI has no GPU, so it runs here on the CPU against itself, lest it rot between GPU sessions.
    Every row runs, warns of nothing, and the table is written."""
    script = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "check_cuda.py")
    done = subprocess.run([sys.executable, script, "--device", "cpu", "--steps", "3", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = (tmp_path / "check_cuda.md").read_text()
    assert table.count("| yes |") == 5 and "**" not in table, table
    if not torch.cuda.is_available():  # without --device on a machine with no GPU: it checked the CPU against itself,
        done = subprocess.run([sys.executable, script, "--steps", "1"], capture_output=True, text=True,  # all "yes"
                              timeout=600)
        assert done.returncode == 2 and "sees no CUDA device here; --device cpu checks the CPU against itself" in \
            done.stderr, done.stderr


def test_the_precision_benchmark_runs_on_a_random_generator(tmp_path):
    """benchmarks/bench_precision.py's own default target (a random generator's image, outside [-1, 1]) was refused
    by `project` at every size, the design doc's command included (audit): its smallest run prints its table."""
    script = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "bench_precision.py")
    done = subprocess.run([sys.executable, script, "--steps", "2", "--resolution", "16", "--swap-res", "8"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert re.search(r"\| fp32 \| 0\.\d+ \| \+0\.00% \| 0\.00 \|", done.stdout), done.stdout
    assert re.search(r"\| bf16 \| 0\.\d+ \| [+-]\d+\.\d\d% \|", done.stdout), done.stdout


@pytest.mark.parametrize("script, argument", [("bench_projection.py", "--rounds"), ("bench_networks.py", "--repeats"),
                                              ("bench_vs_reference.py", "--steps")])
def test_a_benchmark_refuses_a_count_that_leaves_nothing_to_time(script, argument):
    """`--rounds 0` (or `--repeats 0`, `--steps 0`) ran the work, then failed on an empty table or printed none and
    exited 0 (audit): refused at once (`spawned.at_least`)."""
    path = os.path.join(os.path.dirname(__file__), "..", "benchmarks", script)
    done = subprocess.run([sys.executable, path, argument, "0"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and f"argument {argument}: must be at least 1, got 0" in done.stderr, done.stderr


def test_the_blend_benchmark_runs_at_a_small_resolution():
    """bench_blend.py swapped at 8, 16 and 32 px whatever the resolution: `--resolutions 16` failed at swap 32 ("above
    the model's"), and 100 px at building the generator; it swaps below the resolution and refuses what is none."""
    path = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "bench_blend.py")
    done = subprocess.run([sys.executable, path, "--resolutions", "16", "--repeats", "1", "--precisions", "fp32"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and re.search(r"cpu\s+16\s+fp32 \(float32\) \|", done.stdout), done.stdout + done.stderr
    refused = subprocess.run([sys.executable, path, "--resolutions", "100"], capture_output=True, text=True,
                             timeout=300)
    assert refused.returncode == 2 and "argument --resolutions: must be a power of two >= 16, got 100" in refused.stderr


def test_the_side_by_side_benchmark_refuses_a_reference_checkout_without_one(tmp_path):
    """--reference-before names another checkout whose reference is timed as a column of its own: a folder without
    benchmarks/reference_ops.py is refused before any work."""
    path = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "bench_vs_reference.py")
    done = subprocess.run([sys.executable, path, "--reference-before", str(tmp_path)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2 and f"--reference-before {tmp_path}: no benchmarks/reference_ops.py there" in \
        done.stderr, done.stderr


BENCHMARKS = os.path.join(os.path.dirname(__file__), "..", "benchmarks")


def test_the_toonify_benchmark_memory_child_runs_its_own_mode_and_a_failed_one_is_said(monkeypatch, capsys):
    """`bench_toonify.py --modes e4e --steps 1` timed every round, then its memory child (given no --modes) refused
    --steps 1 for the optimising modes it did not run, and a bare CalledProcessError lost every timing (forty-second
    session's audit). The child checks only its own mode; a child that fails is said with its error, and None is its
    memory (the table shows '-')."""
    monkeypatch.syspath_prepend(BENCHMARKS)
    import bench_toonify

    assert bench_toonify.measure_memory("e4e", "cpu", 1, 0) is None  # its --threads 0 refused, its --steps 1 not
    err = capsys.readouterr().err
    assert "the memory of e4e could not be measured (its process ended with exit status 2)" in err, err
    assert "argument --threads: must be at least 1, got 0" in err and "--steps must be at least 2" not in err, err


def test_the_gpu_check_table_keeps_its_cells_whole():
    """check_cuda.md's cells said "max |w - CPU's|": rendered, the '|' ended the cell and the gap, the point of the
    check, was lost (forty-second session's audit). The texts use no '|', and a row escapes one (an error's)."""
    sys.path.insert(0, BENCHMARKS)
    try:
        import check_cuda
    finally:
        sys.path.remove(BENCHMARKS)
    said = check_cuda.check_render_blend("cpu")
    assert said.startswith("blend at 8 px, render: max abs(image - CPU's) ") and "|" not in said, said
    row = check_cuda.table_row("blend + render", "**no**", 1.25, "ValueError: a | b")
    assert row == "| blend + render | **no** | 1.2 | ValueError: a \\| b |"


def test_benchmark_arguments_are_refused_before_any_work():
    """A resolution that is no generator's ended in a traceback after the set-up (bench_projection, bench_precision),
    and bench_gpu without a GPU ran for hours on the CPU after one line (forty-second session's audit); --help says
    bench_projection's own precision (a leftover review note said it)."""
    def run(script: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, os.path.join(BENCHMARKS, script), *args], capture_output=True,
                              text=True, timeout=300)

    for script, option in (("bench_projection.py", "--resolutions"), ("bench_precision.py", "--resolution")):
        done = run(script, option, "100")
        assert done.returncode == 2 and f"argument {option}: must be a power of two >= 16, got 100" in done.stderr, \
            done.stderr
    done = run("bench_projection.py", "--help")
    assert "default here: fp32; project()'s own default is 'auto'" in " ".join(done.stdout.split()) and "audit" \
        not in done.stdout, done.stdout
    if not torch.cuda.is_available():
        done = run("bench_gpu.py", "--steps", "2")
        assert done.returncode == 2 and "sees no CUDA device here: --device cpu runs the benchmark on the CPU" in \
            done.stderr, done.stderr
        assert "without a GPU the script stops unless --device cpu" in " ".join(run("bench_gpu.py", "--help").stdout
                                                                                 .split())


def test_the_side_by_side_benchmark_says_toonlib_in_its_progress_lines():
    """bench_vs_reference.py's progress lines said its internal name for toonlib, "('forward', 256, 'after')", where
    the table says "toonlib" (forty-second session's audit)."""
    sys.path.insert(0, BENCHMARKS)
    try:
        import bench_vs_reference
    finally:
        sys.path.remove(BENCHMARKS)
    names = bench_vs_reference._names(["after:bf16"])
    assert bench_vs_reference._job_label(("forward", 256, "after"), names) == "forward 256 toonlib"
    assert bench_vs_reference._job_label(("project", 256, "w+", "after:bf16"), names) == "project 256 w+ toonlib bf16"
    assert bench_vs_reference._job_label(("batch", 256, 4), names) == "batch 256 4"
