"""Re-measure the fast figures the docs quote, in one go (about 5 minutes on a quiet 2-core CPU).

    python bench/quick.py [--only load,inference,predict,export] [--timeout 900] [--dry-run]
    make bench-quick

Runs each benchmark as its own command line (the same command the docs print beside the
figure), shows its output without TensorFlow's log noise, and ends with a summary of the
lines the docs quote:
  load       python bench/load_speed.py                        docs/kaggle-data.md
  inference  python bench/inference_speed.py                   docs/export.md
  predict    python bench/predict_speed.py                     docs/predict.md (needs ../shared/data)
  export     python export.py --model <shipped> --format onnx, and --format tflite --quantize int8
             (parity with the Keras model on 100 real faces when ../shared/data is there, cut
             into a temporary folder by input_data.py convert-68; else synthetic faces; int8
             is refused for v6)                                  docs/export.md
Timing figures on a shared machine are noisy: the summary prints the load average beside
them; compare ratios measured in one run, not absolute times across days.
Writes only to a temporary folder.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import cli  # noqa: E402

STEPS = ("load", "inference", "predict", "export")
SHIPPED = "models/v6_resnet_integral/model.keras"     # models.shipped_model_path(), without importing keras
SHARED_FACES = ROOT.parent / "shared" / "data" / "cvnd_youtube_faces"
# TensorFlow / absl / oneDNN start-up chatter and progress bars: not figures.
NOISE = re.compile(r"^(W0000|I0000|E0000|WARNING: All log|.*oneDNN|.*absl|.*cuda|.*TF_ENABLE|.*rebuild TensorFlow"
                   r"|.*tensorflow/core|.*\d+%\|)")
# The lines each step's summary keeps (what the docs quote).
QUOTED = {
    "load": re.compile(r"^(nouri load|input_data\.load|speed-up)"),
    "inference": re.compile(r"faces/s"),
    "predict": re.compile(r".*(ms|photos|photo/s|per photo|<-)"),
    "export": re.compile(r"^(exported|parity|RMSE|export\.py: refused|error:)"),
}


def commands(tmp, faces_csv=None):
    """step -> [(command argv, what a non-zero exit means)]: 'fail' or 'refusal expected'."""
    py = sys.executable
    data = ["--data", str(faces_csv)] if faces_csv else []
    return {
        "load": [([py, "bench/load_speed.py", "--repeat", "3"], "fail")],
        "inference": [([py, "bench/inference_speed.py"], "fail")],
        "predict": [([py, "bench/predict_speed.py"], "fail")],
        "export": [([py, "export.py", "--model", SHIPPED, "--format", "onnx", *data, "--out", str(tmp)], "fail"),
                   ([py, "export.py", "--model", SHIPPED, "--format", "tflite", "--quantize", "int8", *data,
                     "--out", str(tmp)], "refusal expected")],
    }


def load_average():
    try:
        return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    except OSError:
        return f"{os.cpu_count()} CPUs"


def run(argv, timeout):
    """(exit status or 'timeout', seconds, the output lines that are not noise)."""
    started = time.perf_counter()
    try:
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"})
        status, text = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as expired:
        status = "timeout"
        text = "".join(t.decode() if isinstance(t, bytes) else (t or "") for t in (expired.stdout, expired.stderr))
    lines = [line.rstrip() for chunk in text.splitlines() for line in chunk.split("\r")[-1:]]
    return status, time.perf_counter() - started, [line for line in lines if line and not NOISE.match(line)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default=",".join(STEPS), help=f"comma list of steps to run ({', '.join(STEPS)})")
    parser.add_argument("--timeout", type=cli.positive_float, default=900.0,
                        help="seconds allowed per command (a busy machine needs far more than a quiet one)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands and run nothing")
    args = parser.parse_args(argv)
    steps = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(steps) - set(STEPS))
    if unknown or not steps:
        raise cli.UsageError(f"--only: got {args.only!r}; must be a comma list of {', '.join(STEPS)}")

    summary, failed = [], 0
    with tempfile.TemporaryDirectory(prefix="bench-quick-") as tmp:
        faces_csv = None
        if "export" in steps and SHARED_FACES.is_dir() and not args.dry_run:
            faces_csv = Path(tmp) / "faces.csv"       # the real faces, in a folder that is deleted
            status, _, lines = run([sys.executable, "input_data.py", "convert-68", "--csv",
                                    str(SHARED_FACES / "training_frames_keypoints.csv"), "--images",
                                    str(SHARED_FACES / "training"), "--out", str(faces_csv)], args.timeout)
            if status != 0:
                print("\n".join(["convert-68 failed; export parity on synthetic faces"] + lines[-3:]))
                faces_csv = None
        for step in steps:
            missing = step == "predict" and not SHARED_FACES.is_dir()
            for command, on_error in commands(tmp, faces_csv)[step]:
                shown = " ".join(["python"] + command[1:]).replace(str(tmp), "TMP")
                print(f"\n=== {step}: {shown}" + (" (skipped: no held-out photos)" if missing else ""), flush=True)
                if missing:
                    summary.append((step, "skipped", f"{SHARED_FACES} not found (the held-out photos)"))
                if args.dry_run or missing:
                    continue
                status, seconds, lines = run(command, args.timeout)
                lines = [line.replace(str(tmp), "TMP") for line in lines]
                print("\n".join(lines + ([f"(stopped after --timeout {args.timeout:g} s)"] if status == "timeout" else [])))
                quoted = [line.strip() for line in lines if QUOTED[step].search(line)]
                if status == 0:
                    outcome = f"ok in {seconds:.0f} s"
                elif on_error == "refusal expected" and status == 1:
                    outcome = f"refused, as the docs say ({seconds:.0f} s)"
                else:
                    outcome = f"FAILED ({status}) after {seconds:.0f} s"
                    failed += 1
                summary.append((step, outcome, shown, *quoted))
    if args.dry_run:
        return 0
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"\n=== summary ({now}, {load_average()}; compare with the docs' figures and their noise)")
    for step, outcome, *lines in summary:
        print(f"{step}: {outcome}")
        for line in lines:
            print(f"    {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    cli.run(main)
