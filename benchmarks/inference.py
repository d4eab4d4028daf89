"""Model throughput on this machine's device: the plain path against mapgen's fast path, in one run.

    python benchmarks/inference.py [--config full|small] [--device auto] [--batches 64,256] [--record]

For each batch size, windows/s of STSR-Seg's forward pass (random 64×64 windows, 4 bands):
  reference : float32, contiguous tensors, batch of 64 (the CPU path)
  mapgen    : what `predict_windows` runs on this device: bf16 autocast + channels-last on CUDA, with
              batches padded to the size given
and the ratio of the two. With --record, the best mapgen figure is written to
pipeline/throughput.json, where `mapgen plan` reads it to estimate GPU-hours (or CPU-hours) for a plan.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mapgen.models import STSRSegConfig, save_checkpoint
from mapgen.models.stsr_seg import STSRSeg
from mapgen.pipeline.inference import ModelRef, predict_windows

RECORD = Path(__file__).resolve().parents[1] / "pipeline" / "throughput.json"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def rate(ref: ModelRef, windows: np.ndarray, batch: int, seconds: float) -> float:
    """Windows/s of predict_windows over `windows`, repeated for at least `seconds` after a warm-up."""
    predict_windows(ref, windows[:batch], batch)
    if ref.device.startswith("cuda"):
        torch.cuda.synchronize()
    done, start = 0, time.perf_counter()
    while True:
        predict_windows(ref, windows, batch)
        if ref.device.startswith("cuda"):
            torch.cuda.synchronize()
        done += len(windows)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=["full", "small"], default="full")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batches", default="64,256")
    parser.add_argument("--windows", type=int, default=512, help="windows per timed call")
    parser.add_argument("--seconds", type=float, default=10.0, help="time per measurement")
    parser.add_argument("--record", action="store_true", help="write the best figure to pipeline/throughput.json")
    args = parser.parse_args()

    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    device = "cpu" if device == "auto" else device
    config = STSRSegConfig.full() if args.config == "full" else STSRSegConfig.small()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"stsr-seg-{args.config}.safetensors"
        sha256 = save_checkpoint(STSRSeg(config).eval(), config, path, meta={"note": "random weights (benchmark)"})
        rng = np.random.default_rng(0)
        windows = rng.standard_normal((args.windows, 4, 64, 64), dtype=np.float32)
        name = device_name(torch.device(device))
        print(f"STSR-Seg {args.config} on {name}; torch {torch.__version__}; {args.windows} windows per call")
        plain = ModelRef(str(path), sha256, "stsr-seg", device, "fp32")
        reference = rate(plain, windows, 64, args.seconds)
        print(f"reference : fp32, contiguous, batch 64          {reference:9.1f} windows/s")
        fast_precision = "bf16" if device.startswith("cuda") else "fp32"
        best = (reference, 64, "fp32")
        for batch in (int(b) for b in args.batches.split(",")):
            ref = ModelRef(str(path), sha256, "stsr-seg", device, fast_precision)
            got = rate(ref, windows, batch, args.seconds)
            layout = "channels-last" if fast_precision == "bf16" else "contiguous"
            print(f"mapgen    : {fast_precision}, {layout}, batch {batch:<4d} {got:9.1f} windows/s  "
                  f"({got / reference:.2f}× reference)")
            if got > best[0]:
                best = (got, batch, fast_precision)
    if args.record:
        records = json.loads(RECORD.read_text()) if RECORD.exists() else {}
        records[f"{device.split(':')[0]}:{args.config}"] = {
            "device": name, "kind": "gpu" if device.startswith("cuda") else "cpu", "config": args.config,
            "precision": best[2], "batch": best[1], "windows_per_s": round(best[0], 2),
            "date": datetime.date.today().isoformat(), "torch": torch.__version__,
            "command": f"python benchmarks/inference.py --config {args.config} --device {args.device} --record",
        }
        RECORD.write_text(json.dumps(records, indent=2, sort_keys=True) + "\n")
        print(f"recorded in {RECORD}")


if __name__ == "__main__":
    main()
