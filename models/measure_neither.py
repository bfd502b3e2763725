#!/usr/bin/env python3
"""How well fine-tuned models say `neither`: pet accuracy on test/ and the
share of photos of other things answered `neither`, for the zero-shot base,
the forced two-way head (--no-neither), the default (a threshold from the
pets' own photos) and, with photos of other things (--neither DIR), a
threshold fitted on them or a trained third class.

No figure comes from a threshold fitted on the photos it scores: the default
never sees the other photos; the --neither variants are cross-validated over
them (fit on the other folds, score the held-out one, every photo scored
once per seed). test/ is never fitted on.

    python3 models/measure_neither.py --catdog target/release/catdog \
        --data ../shared/data --seeds 0 1 2

prints a Markdown table (docs/models.md has the one measured).

    python3 models/measure_neither.py --pets-cv ...

cross-validates the default rule (fitted on the pets' photos alone) over
the pets instead: all 140 shared cat and dog photos in 5 folds; each fold's
model is fine-tuned on the other 4 (originals only: the rule is fitted on
originals) and scored on the held-out pets (kept: answered cat or dog) and
on the 40 photos of other things (rejected: answered `neither`).
"""

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path


def data_dir():
    """The shared data folder: what scripts/data_dir.sh says, the one place its
    default is written ($CATDOG_DATA, else shared/data beside the checkout)."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts", "data_dir.sh")
    return subprocess.run([script], check=True, capture_output=True, text=True).stdout.strip()


def run(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"failed: {' '.join(map(str, cmd))}\n{out.stderr}")
    return out.stdout


def evaluate(catdog, model, test, others, extra=()):
    """(pets right, pets, others answered neither, others) of one model."""
    png = Path(tempfile.gettempdir()) / "measure-neither-confusion.png"
    report = json.loads(run([catdog, "eval", "--json", "--png", png, *extra,
                             "--model", model, "--neither", others, test]))
    pets = [a for a in report["answers"] if a["label"] != "neither"]
    rest = [a for a in report["answers"] if a["label"] == "neither"]
    return (sum(a["predicted"] == a["label"] for a in pets), len(pets),
            sum(a["predicted"] == "neither" for a in rest), len(rest))


def folds(files, k, seed):
    files = sorted(files)
    random.Random(seed).shuffle(files)
    return [files[i::k] for i in range(k)]


def linked(root, name, files):
    d = root / name
    d.mkdir(parents=True)
    for f in files:
        os.symlink(f.resolve(), d / f.name)
    return d


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--catdog", default="target/release/catdog")
    ap.add_argument("--data", type=Path, help="the shared data folder (default: scripts/data_dir.sh's)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--pets-cv", action="store_true", help="cross-validate the default rule over the pets")
    a = ap.parse_args()
    a.data = a.data or Path(data_dir())
    base = a.data / "models/mobilenetv2-12-int8.onnx"
    photos, test = a.data / "catsdogs", a.data / "catsdogs/test"
    neither = a.data / "neither"
    others = sorted(p for p in neither.iterdir() if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
    if a.pets_cv:
        return pets_cv(a, base, photos, neither)
    rows = {}

    def add(name, seed, figures):
        rows.setdefault(name, []).append((seed, figures))

    zero = evaluate(a.catdog, base, test, neither, ["--preprocessing", "torch"])
    for seed in a.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)

            def finetune(out, *flags):
                run([a.catdog, "finetune", "--base", base, "--preprocessing", "torch",
                     "--data", photos, "--out", out, "--seed", str(seed), *flags])
                return out

            add("forced two-way (`--no-neither`)", seed,
                evaluate(a.catdog, finetune(tmp / "forced.onnx", "--no-neither"), test, neither))
            add("**default**: threshold from the pets' photos alone", seed,
                evaluate(a.catdog, finetune(tmp / "default.onnx"), test, neither))
            for mode in ("threshold", "class"):
                total = [0, 0, 0, 0]
                pets = []
                for f, held in enumerate(folds(others, a.folds, seed)):
                    fit = linked(tmp / f"{mode}{f}", "fit", [o for o in others if o not in held])
                    out_dir = linked(tmp / f"{mode}{f}", "held", held)
                    model = finetune(tmp / f"{mode}{f}.onnx", "--neither", fit, "--neither-mode", mode)
                    got = evaluate(a.catdog, model, test, out_dir)
                    pets.append(got[0])
                    total[2] += got[2]
                    total[3] += got[3]
                total[0], total[1] = min(pets), 46
                add(f"`--neither DIR --neither-mode {mode}` ({a.folds}-fold over the 40)", seed,
                    (min(pets), max(pets), total[2], total[3]))

    print("| head on MobileNetV2 int8 | test/ pets right (of 46) | other photos answered `neither` (of 40) |")
    print("| --- | --- | --- |")
    print(f"| the base's zero-shot groups (ImageNet mode, `neither` below 0.2) | {zero[0]} | {zero[2]} |")
    for name, results in rows.items():
        if "fold" in name:
            pets = " / ".join(f"{lo}–{hi}" if lo != hi else f"{lo}" for _, (lo, hi, _, _) in results)
            rest = " / ".join(str(r[2]) for _, r in results)
        else:
            pets = " / ".join(str(r[0]) for _, r in results)
            rest = " / ".join(str(r[2]) for _, r in results)
        print(f"| {name} | {pets} | {rest} |")
    print(f"\n(seeds {' / '.join(map(str, a.seeds))}; a fold row's pets are the range over its {a.folds} models)")


def link_as(d, files):
    """Links `files` into `d`, named by split and name (train/ and test/
    share names)."""
    d.mkdir(parents=True)
    for f in files:
        os.symlink(f.resolve(), d / f"{f.parent.parent.name}-{f.name}")


def pets_cv(a, base, photos, neither):
    """The default rule cross-validated over the pets (see the module's doc)."""
    pets = sorted(p for split in ("train", "test") for label in ("cat", "dog")
                  for p in (photos / split / label).iterdir())
    kept = rejected = scored = 0
    per_seed = []
    for seed in a.seeds:
        seed_kept = seed_rejected = 0
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            for f, held in enumerate(folds(pets, a.folds, seed)):
                root = tmp / f"fold{f}"
                for label in ("cat", "dog"):
                    fit = [p for p in pets if p not in held and p.parent.name == label]
                    link_as(root / "data/train" / label, fit)
                    link_as(root / "held" / label, [p for p in held if p.parent.name == label])
                model = root / "m.onnx"
                run([a.catdog, "finetune", "--base", base, "--preprocessing", "torch",
                     "--data", root / "data", "--out", model, "--seed", str(seed),
                     "--mirror", "false", "--crop", "false"])
                got = evaluate(a.catdog, model, root / "held", neither)
                report = json.loads(run([a.catdog, "eval", "--json", "--png", root / "cm.png",
                                         "--model", model, root / "held"]))
                seed_kept += sum(x["predicted"] != "neither" for x in report["answers"])
                seed_rejected += got[2]
                scored += len(held)
        per_seed.append((seed_kept, seed_rejected))
        kept += seed_kept
        rejected += seed_rejected
    n = len(pets)
    print("| rule | held-out pets kept (of %d) | other photos rejected (of 40, per fold) |" % n)
    print("| --- | --- | --- |")
    print("| %s | %s | %s |" % (a.catdog, " / ".join(str(k) for k, _ in per_seed),
                                " / ".join("%.1f" % (r / a.folds) for _, r in per_seed)))
    print(f"\n(seeds {' / '.join(map(str, a.seeds))}; {a.folds} folds over the {n} pets)")


if __name__ == "__main__":
    main()
