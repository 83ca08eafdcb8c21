"""Data-parallel training tests (stdlib only): mpirun -np 2 ./train_gpt on the CPU (MPI
collectives, ZeRO-1) and ./train_gpt_emu -d cuda (the GPU ranks' path on the CPU emulator).

  - one rank under mpirun == the plain trainer, byte for byte;
  - N ranks at micro-batch B == one process with accum N at B, within the tolerance below (the
    gradient contributions are added in another order; the loss, the norm and the clip are
    computed in the same order); two N-rank runs, and an N-rank run resumed, are bitwise equal;
  - resume with another rank count says what happens, and runs;
  - rank 0 alone prints and logs; the ranks refuse different command lines;
  - a rank that fails (a bad shard) or dies (SIGKILL) ends every rank, with its message, instead
    of hanging; SIGINT to mpirun checkpoints.
Skipped, with the reason, when mpirun is missing or train_gpt was built without MPI. Ends with
"N passed, N failed[, N skipped]".
"""
import array
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "test"))
from pytestlib import SKIPPED, run_tests, test  # noqa: E402

TMP = tempfile.mkdtemp(prefix="kvgpt_dist_test.")
SMALL = ["--layers", "1", "--d-model", "32", "--heads", "2", "--d-ff", "64", "-b", "2", "-t", "16", "-v", "2", "-n", "3", "-d", "cpu"]
TRAIN = os.path.join(ROOT, "train_gpt")
HEADER_BYTES = 2304  # llmc/checkpoint.h (scripts/ckpt.py asserts the same)
# N ranks vs one process with accum N, after 5 AdamW steps at lr <= 2e-3 (the default warmup):
# AdamW moves a weight by at most ~lr per step whatever its gradient, so a rounding-level
# gradient difference can move it by a fraction of that; the losses are averages of many tokens
PARAM_ABS_TOL = 2e-4
LOSS_REL_TOL = 1e-5
NORM_REL_TOL = 1e-4

ENV = dict(os.environ)
if os.geteuid() == 0:  # Open MPI refuses root unless told (CI runs as root)
    ENV.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
# one thread everywhere: mpirun pins each rank to a core, and OpenBLAS's sums can change with
# the thread count (llmc/ops.h), which would blur what these tests compare
ENV["OMP_NUM_THREADS"] = "1"


def why_not():
    if not shutil.which("mpirun"):
        return "mpirun not found (apt-get install openmpi-bin libopenmpi-dev, then rebuild)"
    ldd = subprocess.run(["ldd", TRAIN], capture_output=True, text=True).stdout
    if "libmpi" not in ldd:
        return "train_gpt was built without MPI (the Makefile found no MPI)"
    return None


SKIP = why_not()


def mpirun(n, args, binary=TRAIN, timeout=300, extra=()):
    cmd = ["mpirun", "--oversubscribe", "-np", str(n), *extra, binary, *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=timeout)


def plain(args, binary=TRAIN):
    return subprocess.run([binary, *args], capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=300)


def ok(r):
    assert r.returncode == 0, f"rc {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def out(name):
    p = os.path.join(TMP, name + ".ckpt")
    return p, ["-o", p, "-L", p + ".jsonl"]


def payload(path):
    with open(path, "rb") as f:
        f.seek(HEADER_BYTES)
        return f.read()


def floats(path):
    a = array.array("f")
    a.frombytes(payload(path))
    return a


def steps(path):
    return [json.loads(l) for l in open(path + ".jsonl") if '"loss"' in l]


def vals(path):
    return [json.loads(l)["val_loss"] for l in open(path + ".jsonl") if '"val_loss"' in l]


def close(a, b, rel):
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-30)


def skip_if_needed(what):
    if SKIP:
        SKIPPED.append(f"{what}: {SKIP}")
        return True
    return False


@test
def one_rank_under_mpirun_equals_the_plain_trainer_bitwise():
    if skip_if_needed("mpirun -np 1 == plain"):
        return
    a, oa = out("plain")
    b, ob = out("np1")
    ok(plain([*SMALL, "-x", "5", "-A", "2", *oa]))
    r = ok(mpirun(1, [*SMALL, "-x", "5", "-A", "2", *ob]))
    assert "data parallel: 1 ranks" in r.stdout, r.stdout
    assert payload(a) == payload(b) and payload(a + ".best") == payload(b + ".best")
    assert [s["loss"] for s in steps(a)] == [s["loss"] for s in steps(b)]


@test
def n_ranks_equal_one_process_accumulating_n_micro_batches():
    if skip_if_needed("N ranks == accum N"):
        return
    for ranks, accum in ((2, 1), (2, 2)):
        a, oa = out(f"acc{ranks * accum}")
        b, ob = out(f"dp{ranks}x{accum}")
        ok(plain([*SMALL, "-x", "5", "-A", str(ranks * accum), *oa]))
        r = ok(mpirun(ranks, [*SMALL, "-x", "5", "-A", str(accum), *ob]))
        sa, sb = steps(a), steps(b)
        assert len(sa) == len(sb) == 5
        for x, y in zip(sa, sb):
            assert x["tokens"] == y["tokens"], (x, y)
            assert close(x["loss"], y["loss"], LOSS_REL_TOL), (x, y)
            assert close(x["grad_norm"], y["grad_norm"], NORM_REL_TOL), (x, y)
        for x, y in zip(vals(a), vals(b)):
            assert close(x, y, LOSS_REL_TOL), (vals(a), vals(b))
        fa, fb = floats(a), floats(b)  # parameters, then the AdamW moments (gathered by rank 0)
        assert len(fa) == len(fb)
        n = len(fa) // 3
        worst = max(abs(x - y) for x, y in zip(fa[:n], fb[:n]))
        assert worst <= PARAM_ABS_TOL, f"{ranks} ranks x accum {accum}: parameters differ by up to {worst}"
        assert any(fb[n:]), "rank 0 wrote zero moments: the ZeRO slices were not gathered"
        worst_m = max(abs(x - y) for x, y in zip(fa[n:2 * n], fb[n:2 * n]))
        assert worst_m <= 1e-3, f"first moments differ by up to {worst_m}"
        assert f"accum={accum} x {ranks} ranks" in r.stdout and "ZeRO-1" in r.stdout, r.stdout


@test
def n_rank_runs_repeat_and_resume_bitwise():
    if skip_if_needed("N-rank determinism and resume"):
        return
    a, oa = out("rep_a")
    b, ob = out("rep_b")
    c, oc = out("rep_c")
    ok(mpirun(2, [*SMALL, "-x", "6", *oa]))
    ok(mpirun(2, [*SMALL, "-x", "6", *ob]))
    assert payload(a) == payload(b), "two identical 2-rank runs differ"
    ok(mpirun(2, [*SMALL, "-x", "3", *oc]))
    r = ok(mpirun(2, [*SMALL, "-x", "6", "--resume", c, *oc]))
    # a resume on as many ranks says nothing about the ranks (machine notes, e.g. OpenBLAS's kernels, aside)
    notes = [l for l in r.stdout.splitlines() if l.startswith("note:") and "OpenBLAS" not in l]
    assert not notes, r.stdout
    assert payload(a) == payload(c), "a 2-rank run resumed on 2 ranks differs from the straight run"
    assert payload(a + ".best") == payload(c + ".best")


@test
def resume_on_another_rank_count_says_what_happens():
    if skip_if_needed("resume with another N"):
        return
    c, oc = out("other_n")
    ok(mpirun(2, [*SMALL, "-x", "3", *oc]))
    d, od = out("other_n_1rank")
    r = ok(plain([*SMALL, "-x", "6", "-A", "2", "--resume", c, *od]))
    assert "trained on 2 rank(s), this run has 1: the optimizer state is resharded" in r.stdout, r.stdout
    straight, os_ = out("other_n_straight")
    ok(mpirun(2, [*SMALL, "-x", "6", *os_]))
    fa, fb = floats(straight), floats(d)
    n = len(fa) // 3
    assert max(abs(x - y) for x, y in zip(fa[:n], fb[:n])) <= PARAM_ABS_TOL
    e, oe = out("other_n_batch")
    r = ok(plain([*SMALL, "-x", "6", "--resume", c, *oe]))
    assert "2 rank(s) x accum 1 = 2 micro-batches per step; this run takes 1 x 1 = 1" in r.stdout and "(-A 2 keeps it)" in r.stdout, r.stdout


@test
def rank_zero_alone_prints_logs_and_writes():
    if skip_if_needed("rank 0 output"):
        return
    a, oa = out("rank0")
    r = ok(mpirun(2, [*SMALL, "-x", "3", *oa]))
    rules = [l for l in r.stdout.splitlines() if l.startswith("+---")]
    assert r.stdout.count("step     1/3") == 1 and len(rules) == 2, r.stdout
    lines = open(a + ".jsonl").read().splitlines()
    start = json.loads(lines[0])
    assert sum('"event":"start"' in l for l in lines) == 1 and len([l for l in lines if '"loss"' in l]) == 3
    assert start["ranks"] == 2 and start["tokens_per_step"] == 2 * 2 * 16, start
    assert [s["tokens"] for s in steps(a)] == [64, 128, 192]
    # no per-rank files, no leftover temp files
    assert sorted(f for f in os.listdir(TMP) if f.startswith("rank0.")) == ["rank0.ckpt", "rank0.ckpt.best", "rank0.ckpt.jsonl"]


WRAP = """#!/bin/sh
# rank 1 gets $RANK1_EXTRA appended; every rank leaves its pid in $PID_DIR
[ -n "$PID_DIR" ] && echo $$ > "$PID_DIR/rank$OMPI_COMM_WORLD_RANK.pid"
if [ "$OMPI_COMM_WORLD_RANK" = 1 ]; then exec "$@" $RANK1_EXTRA; else exec "$@"; fi
"""


def wrapper():
    p = os.path.join(TMP, "wrap.sh")
    with open(p, "w") as f:
        f.write(WRAP)
    os.chmod(p, 0o755)
    return p


@test
def a_failing_rank_ends_every_rank_with_its_message():
    if skip_if_needed("a failing rank"):
        return
    bad = os.path.join(TMP, "bad_train.bin")
    with open(bad, "wb") as f:
        f.write(b"\x00" * 2048)  # a shard with a bad magic
    t0 = time.time()
    cmd = ["mpirun", "--oversubscribe", "-np", "2", "-x", "RANK1_EXTRA", wrapper(), TRAIN, *SMALL, "-x", "200"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=dict(ENV, RANK1_EXTRA=f"-i {bad}"), timeout=120)
    both = r.stdout + r.stderr
    assert r.returncode != 0 and "rank 1 of 2: shard" in both and "bad magic" in both and "HINT:" in both, both[-3000:]
    assert time.time() - t0 < 60, "the job took too long to end: a rank was waiting for the failed one"
    # a different learning rate on one rank: the ranks refuse to train together
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=dict(ENV, RANK1_EXTRA="-l 1e-3"), timeout=120)
    assert r.returncode != 0 and "the ranks were started with different arguments" in r.stdout + r.stderr, (r.stdout + r.stderr)[-3000:]


@test
def a_killed_rank_ends_every_rank():
    if skip_if_needed("a killed rank"):
        return
    pid_dir = tempfile.mkdtemp(dir=TMP)
    log = open(os.path.join(TMP, "killed.log"), "w+")
    cmd = ["mpirun", "--oversubscribe", "-np", "2", "-x", "PID_DIR", wrapper(), TRAIN, *SMALL, "-x", "100000", "-n", "0", "-L", "/dev/null"]
    p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=dict(ENV, PID_DIR=pid_dir))
    try:
        for _ in range(600):
            log.seek(0)
            if "step     3/" in log.read():
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the run never reached step 3")
        os.kill(int(open(os.path.join(pid_dir, "rank1.pid")).read()), signal.SIGKILL)
        t0 = time.time()
        rc = p.wait(timeout=60)
        assert rc != 0 and time.time() - t0 < 30, (rc, time.time() - t0)
    finally:
        if p.poll() is None:
            p.kill()
    log.seek(0)
    assert "exited on signal 9" in log.read()


@test
def sigint_to_mpirun_stops_every_rank_at_one_step_and_checkpoints():
    if skip_if_needed("SIGINT to mpirun"):
        return
    a, oa = out("sigint")
    log = open(os.path.join(TMP, "sigint.log"), "w+")
    p = subprocess.Popen(["mpirun", "--oversubscribe", "-np", "2", TRAIN, *SMALL, "-x", "100000", "-n", "0", *oa], stdout=log,
                         stderr=subprocess.STDOUT, cwd=ROOT, env=ENV)
    for _ in range(600):
        log.seek(0)
        if "step     3/" in log.read():
            break
        time.sleep(0.1)
    p.send_signal(signal.SIGINT)
    p.wait(timeout=60)
    log.seek(0)
    text = log.read()
    assert "writing the checkpoint" in text and os.path.exists(a), text[-3000:]
    head = open(a, "rb").read(HEADER_BYTES)
    import struct
    step = struct.unpack_from("<q", head, 4 * 4 + 124 + 4)[0]
    assert step >= 3 and f"checkpoint: {a} (step {step})" in text, (step, text[-2000:])
    r = ok(mpirun(2, [*SMALL, "-x", str(step + 2), "-n", "0", "--resume", a, *oa]))  # and it resumes
    assert f"step {step + 2:5d}/{step + 2}" in r.stdout


@test
def emulated_gpu_ranks_equal_one_device_accumulating():
    if skip_if_needed("GPU ranks on the emulator"):
        return
    emu = os.path.join(ROOT, "train_gpt_emu")
    if not os.path.exists(emu):
        SKIPPED.append("GPU ranks on the emulator: train_gpt_emu is not built (make train_gpt_emu)")
        return
    args = ["-d", "cuda", "--layers", "1", "-b", "2", "-t", "16", "-n", "2", "-v", "1", "-u", "2", "-s", "5", "-x", "2"]
    a, oa = out("emu_acc")
    b, ob = out("emu_dp")
    ok(plain([*args, "-A", "2", *oa], binary=emu))
    r = ok(mpirun(2, [*args, "-A", "1", *ob], binary=emu))
    assert "gradients over MPI (CUDA emulator" in r.stdout and "gradients all-reduced on the GPUs" in r.stdout, r.stdout
    # measured: on the emulator the two agree to the bit (the device kernels add each
    # micro-batch's gradient to the buffer in the order the all-reduce does); not promised on a GPU
    assert payload(a) == payload(b), "2 emulated GPU ranks differ from one device with accum 2"


sys.exit(run_tests(lambda: shutil.rmtree(TMP, ignore_errors=True)))
