"""The README's headline training command, measured: wall time, held-out clean accuracy and PGD-40 robust accuracy.

    OMP_NUM_THREADS=2 python benchmarks/readme_training.py [--epochs 3] [--out runs/readme-at] [--json FILE]

Runs ``robustlens train --model smallcnn --data mnist-embedded --epochs E --objective pgd --eps 0.3`` as the README
writes it (a fresh process, the command's defaults, its eps warm-up included), times it, then evaluates the saved
model on the command's held-out split (``mnist-embedded/test``, 1,000 images): clean accuracy and robust accuracy
under robustlens's PGD with 40 steps of 0.01 (Madry et al.'s evaluation) from a random start, Linf eps = 0.3.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> dict[str, object]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("runs/readme-at"))
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    cmd = [sys.executable, "-m", "robustlens", "train", "--model", "smallcnn", "--data", "mnist-embedded",
           "--epochs", str(args.epochs), "--objective", "pgd", "--eps", "0.3", "--out", str(args.out),
           "--no-progress", "--overwrite", "--seed", str(args.seed)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    print(proc.stdout + proc.stderr)

    from robustlens import Classifier
    from robustlens.attacks import PGD
    from robustlens.data import load_dataset
    from robustlens.zoo import load_model

    held = load_dataset("mnist-embedded", "test")
    clf = Classifier(load_model(args.out / "model.safetensors"))
    clean = float((clf.predict(held.x) == held.y).float().mean())
    t1 = time.perf_counter()
    res = PGD(eps=0.3, steps=40, alpha=0.01, random_start=True)(clf, held.x, held.y, seed=0)
    robust = float((res.clean_correct & ~res.success).float().mean())
    out = {
        "command": " ".join(["robustlens", *cmd[3:]]),
        "exit_code": proc.returncode,
        "wall_s": round(wall, 1),
        "eval_s": round(time.perf_counter() - t1, 1),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "load_average": os.getloadavg(),
        "held_out": held.name,
        "samples": int(held.x.shape[0]),
        "clean_accuracy": clean,
        "pgd40_robust_accuracy": robust,
        "torch": torch.__version__,
    }
    print(json.dumps(out, indent=2))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
