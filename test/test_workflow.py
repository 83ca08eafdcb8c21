"""Researcher-workflow tests (stdlib only; the plot checks use the first interpreter that has
matplotlib, else they are skipped): run metadata in train_gpt's log and eval_gpt's JSON, -h
defaults, logs and evaluations never overwritten, progress and ETA lines, the settings box with
long values, eval_report's capped marks, plot_runs.py and its missing-matplotlib message,
summarize_runs.py's seed groups, prepare.py's text / jsonl inputs, scripts/repro/report.py on real
runs. Ends with "N passed, N failed[, N skipped]".
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "test"))
from pytestlib import SKIPPED, run_tests, test  # noqa: E402
TMP = tempfile.mkdtemp(prefix="kvgpt_workflow_test.")
SMALL = ["--layers", "1", "--d-model", "32", "--heads", "2", "--d-ff", "64", "-b", "2", "-t", "16", "-v", "1", "-d", "cpu"]



def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, cwd=ROOT, **kw)


def train(name, *flags):
    out = os.path.join(TMP, name + ".ckpt")
    r = run([os.path.join(ROOT, "train_gpt"), *SMALL, *flags, "-o", out, "-L", out + ".jsonl"])
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return out, r


def mpl_python():
    for py in (sys.executable, "python3", "/usr/bin/python3"):
        try:
            if subprocess.run([py, "-c", "import matplotlib"], capture_output=True).returncode == 0:
                return py
        except OSError:
            pass
    return None


@test
def idle_threads_spin_politely_unless_the_user_says_otherwise():
    # llmc/utils.h: omp_polite_spin re-executes with GOMP_SPINCOUNT=10000 when the user set neither variable
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KVGPT_OMP_REEXEC")}
    def host_of(name, extra):
        p = os.path.join(TMP, name + ".ckpt")
        r = subprocess.run([os.path.join(ROOT, "train_gpt"), *SMALL, "-x", "1", "-o", p, "-L", p + ".jsonl"], capture_output=True,
                           text=True, cwd=ROOT, env=dict(env, **extra))
        assert r.returncode == 0, r.stderr
        return p, json.loads(open(p + ".jsonl").readline())["run"]["host"]
    _, host = host_of("spin_default", {})
    assert host["GOMP_SPINCOUNT"] == "10000" and host["OMP_WAIT_POLICY"] is None, host
    p, host = host_of("spin_user", {"OMP_WAIT_POLICY": "active"})
    assert host["OMP_WAIT_POLICY"] == "active" and host["GOMP_SPINCOUNT"] is None, host
    steps = [json.loads(l) for l in open(p + ".jsonl") if '"loss"' in l]
    assert steps and all(s["cpu_ms"] > 0 for s in steps), steps


@test
def train_log_records_command_flags_code_data_machine():
    out, r = train("meta", "-x", "3", "-a", "gqa", "-g", "1", "-l", "0.0007", "-s", "42")
    start = json.loads(open(out + ".jsonl").readline())
    assert start["event"] == "start"
    run_ = start["run"]
    assert run_["argv"][0].endswith("train_gpt") and "-g" in run_["argv"]
    assert run_["flags"]["--lr"] == 0.0007 and run_["flags"]["--seed"] == 42 and run_["flags"]["--kv-heads"] == 1
    assert set(run_["host"]) >= {"cpu", "cores", "threads", "gpu"} and run_["host"]["threads"] >= 1
    assert "started" in run_ and ("git" in run_)
    if os.path.isdir(os.path.join(ROOT, ".git")):
        assert run_["git"] and len(run_["git"]["commit"]) == 40, run_["git"]
    assert start["config"]["n_kv_head"] == 1 and start["config"]["attn"] == "gqa" and start["config"]["rotary_dim"] == 4
    assert start["train_tokens"] > 0 and start["val_tokens"] > 0 and start["train_data"].endswith("train_*.bin")
    steps = [json.loads(l) for l in open(out + ".jsonl") if '"loss"' in l]
    assert [s["tokens"] for s in steps] == [32, 64, 96] and all("elapsed_s" in s for s in steps)
    lines = [l for l in r.stdout.splitlines() if l.startswith("step ")]
    assert len(lines) == 3 and all("ETA" in l for l in lines), lines
    # the end record carries this process's measured peak memory (no counter shared with other runs)
    end = json.loads(open(out + ".jsonl").read().strip().splitlines()[-1])
    assert end["event"] == "end" and 10 < end["peak_host_mib"] < 64 * 1024 and end["device_mib"] >= 0, end
    assert re.search(r"^peak memory: host [0-9.]+ MiB resident", r.stdout, re.M), r.stdout[-500:]


@test
def x0_leaves_an_existing_log_alone_and_help_shows_defaults():
    log = os.path.join(TMP, "keep.jsonl")
    open(log, "w").write('{"precious": true}\n')
    r = run([os.path.join(ROOT, "train_gpt"), *SMALL, "-x", "0", "-L", log])
    assert r.returncode == 0 and open(log).read() == '{"precious": true}\n'
    r = run([os.path.join(ROOT, "train_gpt"), "-l", "5", "-h"])
    assert r.returncode == 0 and "--lr" in r.stdout and "[default: 0.002]" in r.stdout, r.stdout[:3000]  # -h before -l is parsed
    r = run([os.path.join(ROOT, "eval_gpt"), "-h"])
    assert r.returncode == 0 and "[default: 8]" in r.stdout


@test
def settings_box_wraps_long_values():
    longdir = os.path.join(TMP, "a" * 60, "b" * 60)
    os.makedirs(longdir)
    r = run([os.path.join(ROOT, "train_gpt"), *SMALL, "-x", "0", "-L", os.path.join(longdir, "log.jsonl")])
    assert r.returncode == 0
    box = [l for l in r.stdout.splitlines() if l.startswith(("|", "+"))]
    assert len({len(l) for l in box}) == 1, "the settings box lines differ in width"
    assert max(len(l) for l in box) <= 30 + 72 + 4, "a long value was not wrapped"
    assert sum(1 for l in box if l.startswith("|") and not l.split("|")[1].strip()) >= 1, "no continuation row"


@test
def eval_json_records_run_and_caps_and_a_partial_rerun_keeps_the_full_one():
    out, _ = train("ev", "-x", "2")
    js = out + ".best.eval.json"
    r = run([os.path.join(ROOT, "eval_gpt"), "-c", out + ".best", "--protocols", "disjoint,sliding,kv", "--max-windows", "3"])
    assert r.returncode == 0, r.stdout[-1500:] + r.stderr[-1500:]
    full = open(js).read()
    d = json.loads(full)
    assert d["caps"]["max_windows"] == 3 and d["run"]["flags"]["--max-windows"] == 3 and d["config"]["attn"] == "mha"
    assert d["data"]["val"].endswith("val_*.bin") and "sliding" in d and "kv_cache" in d
    r = run([os.path.join(ROOT, "eval_gpt"), "-c", out + ".best", "--protocols", "disjoint", "--max-windows", "2"])
    assert r.returncode == 0 and "nothing is overwritten" in r.stdout, r.stdout[-1500:]
    assert open(js).read() == full, "a partial rerun overwrote the fuller evaluation"
    second = out + ".best.eval.2.json"
    assert json.load(open(second))["disjoint"]["max_windows"] == 2
    # the same protocols again: that is a rerun of the same measurement, written in place
    r = run([os.path.join(ROOT, "eval_gpt"), "-c", out + ".best", "--protocols", "disjoint", "--json", second])
    assert r.returncode == 0 and "nothing is overwritten" not in r.stdout
    rep = os.path.join(TMP, "rep", "report.md")
    r = run([sys.executable, "scripts/eval_report.py", js, second, "--out", rep])
    assert r.returncode == 0, r.stderr
    text = open(rep).read()
    assert "**capped**: 3 windows" in text and "What each figure was measured on" in text, text[-2000:]


@test
def plot_runs_and_summaries():
    a, _ = train("pr_s1", "-x", "4", "-n", "2")
    b, _ = train("pr_s2", "-x", "4", "-n", "2", "-s", "7")
    r = run([sys.executable, "scripts/summarize_runs.py", a + ".jsonl", b + ".jsonl"])
    assert r.returncode == 0 and "| pr | mha | rope |" in r.stdout and "1,2" in r.stdout, r.stdout + r.stderr
    # without matplotlib: a message naming the interpreter and the Debian package
    fake = os.path.join(TMP, "nompl")
    os.makedirs(os.path.join(fake, "matplotlib"))
    open(os.path.join(fake, "matplotlib", "__init__.py"), "w").write("raise ImportError('test: no matplotlib')\n")
    r = run([sys.executable, "scripts/plot_runs.py", a + ".jsonl", "-o", os.path.join(TMP, "x.png")], env=dict(os.environ, PYTHONPATH=fake))
    assert r.returncode == 1 and "python3-matplotlib" in r.stderr and sys.executable in r.stderr, r.stderr
    py = mpl_python()
    if not py:
        SKIPPED.append("plot_runs PNG (no interpreter with matplotlib)")
        return
    png = os.path.join(TMP, "loss.png")
    r = run([py, "scripts/plot_runs.py", a + ".jsonl", b + ".jsonl", "-o", png, "--x", "tokens", "--logy"])
    assert r.returncode == 0 and open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n", r.stderr


def prepare(*args):
    return run([sys.executable, "data/prepare.py", *args, "--workers", "1"])


@test
def prepare_text_and_jsonl_corpora():
    src = os.path.join(TMP, "corpus")
    os.makedirs(src)
    shakes = open(os.path.join(ROOT, "data", "corpora", "tinyshakespeare.txt"), encoding="utf-8").read()
    for i in range(3):
        open(os.path.join(src, f"doc{i}.txt"), "w").write(shakes[i * 4000:(i + 1) * 4000])
    r = prepare("text", "--path", os.path.join(src, "*.txt"), "--out", os.path.join(TMP, "o_text"))
    assert r.returncode == 0 and "train: 3 documents" in r.stdout, r.stdout + r.stderr
    assert "validation split holds 0 tokens" in r.stderr and "--val-frac" in r.stderr  # under one batch: warned
    open(os.path.join(src, "sep.txt"), "w").write("one\n\n\ntwo\n\n\nthree")
    r = prepare("text", "--path", os.path.join(src, "sep.txt"), "--separator", "\\n\\n\\n", "--out", os.path.join(TMP, "o_sep"))
    assert r.returncode == 0 and "train: 3 documents" in r.stdout, r.stdout + r.stderr
    jl = os.path.join(src, "x.jsonl")
    with open(jl, "w") as f:
        for i in range(40):
            f.write(json.dumps({"content": shakes[i * 500:(i + 1) * 500], "id": i}) + "\n")
    r = prepare("jsonl", "--path", jl, "--field", "content", "--val-frac", "0.5", "--out", os.path.join(TMP, "o_jsonl"))
    assert r.returncode == 0 and "documents" in r.stdout, r.stdout + r.stderr
    n = sum(int(l.split(":")[1].split()[0]) for l in r.stdout.splitlines() if l.startswith(("train:", "val:")))
    assert n == 40, r.stdout
    r = prepare("jsonl", "--path", jl, "--out", os.path.join(TMP, "new", "deep", "o"))
    assert r.returncode == 1 and '"text"' in r.stderr and "--field" in r.stderr, r.stderr
    assert not os.path.exists(os.path.join(TMP, "new")), "a failed run left folders behind"
    if shutil.which("zstd"):
        subprocess.run(["zstd", "-q", jl, "-o", jl + ".zst"], check=True)
        r = prepare("jsonl", "--path", jl + ".zst", "--field", "content", "--val-frac", "0.5", "--out", os.path.join(TMP, "o_zst"))
        assert r.returncode == 0, r.stderr
        for split in ("train", "val"):
            a = open(os.path.join(TMP, "o_jsonl", f"{split}_000000.bin"), "rb").read()
            b = open(os.path.join(TMP, "o_zst", f"{split}_000000.bin"), "rb").read()
            assert a == b, f"{split}: .zst input gave different shards"
    r = prepare("pile", "--path", jl, "--separator", "x", "--out", os.path.join(TMP, "o_bad"))
    assert r.returncode != 0 and "--separator applies to the text dataset" in r.stderr


@test
def repro_report_builds_every_section_from_real_runs():
    # scripts/repro/report.py on small real runs (train_gpt + eval_gpt, every protocol it reads):
    # each recipe's section is written, the index links the plots under results/, and the
    # numbers in the tables are the eval JSON's (not re-derived)
    runs = os.path.join(TMP, "repro_runs")
    docs = os.path.join(TMP, "repro_docs")
    os.makedirs(runs)
    ev = ["--protocols", "disjoint,positions,wikitext,extrap,reversal,qk,kv", "--wiki-docs", "2", "--max-windows", "4",
          "--buckets", "0,4,8", "--extrap", "1,2", "-d", "cpu"]
    for name, flags in (("mha_rope25_s1", ["-p", "rope"]), ("mha_rope25_s2", ["-p", "rope", "-s", "7"]), ("alibi16_s1", ["-p", "alibi", "--alibi-slope", "0.0625"])):
        ck = os.path.join(runs, name + ".ckpt")
        r = run([os.path.join(ROOT, "train_gpt"), *SMALL, *flags, "-x", "4", "-o", ck, "-L", os.path.join(runs, name + ".jsonl")])
        assert r.returncode == 0, r.stdout[-1500:] + r.stderr[-1500:]
        r = run([os.path.join(ROOT, "eval_gpt"), "-c", ck + ".best", *ev, "--json", os.path.join(runs, name + ".eval.json")])
        assert r.returncode == 0, r.stdout[-1500:] + r.stderr[-1500:]
    r = run([os.path.join(ROOT, "eval_gpt"), "-c", os.path.join(runs, "alibi16_s1.ckpt.best"), "--press", "knorm", "--ratio", "0.5",
             "--press-samples", "2", "--press-protocols", "prefill,naive", "-t", "16", "-d", "cpu",
             "--json", os.path.join(runs, "press.eval.json")])
    assert r.returncode == 0, r.stdout[-1500:] + r.stderr[-1500:]
    for recipe in ("1_mla_alibi", "2_positions", "3_kvsplice", "4_presses", "5_variants"):
        r = run([mpl_python() or sys.executable, "scripts/repro/report.py", recipe, "--runs", runs, "--docs", docs])
        assert r.returncode == 0, (recipe, r.stdout[-1500:], r.stderr[-3000:])
        md = open(os.path.join(docs, "results", recipe + ".md")).read()
        assert "**Reported:**" in md and "| mha_rope25 |" in md or recipe == "4_presses", (recipe, md[:1500])
    index = open(os.path.join(docs, "results.md")).read()
    assert index.count("**Reported:**") == 5, index[:2000]
    ppl = json.load(open(os.path.join(runs, "mha_rope25_s1.eval.json")))["disjoint"]["ppl"]
    ppl2 = json.load(open(os.path.join(runs, "mha_rope25_s2.eval.json")))["disjoint"]["ppl"]
    sec1 = open(os.path.join(docs, "results", "1_mla_alibi.md")).read()
    assert f"{(ppl + ppl2) / 2:.1f} ± " in sec1, sec1  # two seeds: mean and spread
    assert "| 1,2 |" in sec1, sec1
    for link in re.findall(r"\]\(([^)]+\.png)\)", index):
        assert link.startswith("results/") and os.path.exists(os.path.join(docs, link)), link
    r = run([sys.executable, "scripts/repro/report.py", "5_variants", "--runs", os.path.join(TMP, "nowhere"), "--docs", docs])
    assert r.returncode == 1 and "no runs" in r.stderr and "HINT" in r.stderr, r.stderr
    for sh in sorted(os.listdir(os.path.join(ROOT, "scripts", "repro"))):
        if sh.endswith(".sh"):
            r = run(["bash", "-n", os.path.join("scripts", "repro", sh)])
            assert r.returncode == 0, (sh, r.stderr)
    r = run(["bash", "scripts/repro/1_mla_alibi.sh"], env=dict(os.environ, SCALE="huge"))
    assert r.returncode == 2 and "SCALE must be cpu or gpu" in r.stderr, r.stderr
    r = run(["bash", "scripts/repro/rehearse_gpu.sh"], env=dict(os.environ, RECIPES="6_nothing", OUTROOT=os.path.join(TMP, "rehearse")))
    assert r.returncode == 2 and "no recipe scripts/repro/6_nothing.sh" in r.stderr, r.stderr


def main():
    return run_tests(lambda: shutil.rmtree(TMP, ignore_errors=True))


if __name__ == "__main__":
    sys.exit(main())
