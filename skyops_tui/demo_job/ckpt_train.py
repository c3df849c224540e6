#!/usr/bin/env python3
"""A training-like loop that keeps the Skyops checkpoint contract (stdlib only).

    python3 ckpt_train.py --steps 100 --step-seconds 0.5 --checkpoint-every 10

- Saves {"step": N} to $SKYOPS_CHECKPOINT_DIR/checkpoint.json every K steps.
- On the checkpoint signal (SIGUSR1) or SIGTERM: saves at once and exits 0.
- With SKYOPS_RESUME=1: starts from the saved step ("resumed from step N").
- Exits 0 when all steps are done.
"""

import argparse
import json
import os
import select
import signal
import sys
import time

CHECKPOINT_FILE = "checkpoint.json"


def log(message):
    print(message, flush=True)


def save(directory, step):
    """Atomic: a reader (or a preemption mid-write) never sees half a checkpoint."""
    path = os.path.join(directory, CHECKPOINT_FILE)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"step": step, "saved_at": time.time()}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load(directory):
    try:
        with open(os.path.join(directory, CHECKPOINT_FILE)) as f:
            return int(json.load(f)["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--step-seconds", type=float, default=0.5)
    parser.add_argument("--checkpoint-every", type=int, default=10)
    args = parser.parse_args()

    for name in ("SKYOPS_JOB_ID", "SKYOPS_MODE", "SKYOPS_CHECKPOINT_DIR", "SKYOPS_RESUME"):
        log("{}={}".format(name, os.environ.get(name, "")))
    log("CUDA_VISIBLE_DEVICES={}".format(os.environ.get("CUDA_VISIBLE_DEVICES", "")))

    ckpt_dir = os.environ.get("SKYOPS_CHECKPOINT_DIR") or os.path.join(os.getcwd(), "ckpt")
    os.makedirs(ckpt_dir, exist_ok=True)

    step = 0
    if os.environ.get("SKYOPS_RESUME") == "1":
        saved = load(ckpt_dir)
        if saved is None:
            log(f"SKYOPS_RESUME=1 but no checkpoint in {ckpt_dir}: starting from step 0")
        else:
            step = saved
            log(f"resumed from step {step}")

    # The signal handler only records the signal; writing a byte to this pipe wakes the
    # step's wait at once, so the job checkpoints promptly even with long steps.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    received = []
    for signum in (signal.SIGUSR1, signal.SIGTERM):
        signal.signal(signum, lambda s, f: received.append(s))

    while step < args.steps:
        select.select([wake_r], [], [], args.step_seconds)  # one step of "work"
        if received:
            save(ckpt_dir, step)
            name = signal.Signals(received[0]).name
            log(f"checkpoint saved at step {step} on {name}; exiting")
            return 0
        step += 1
        log(f"step {step}/{args.steps}")
        if args.checkpoint_every > 0 and step % args.checkpoint_every == 0:
            save(ckpt_dir, step)
            log(f"checkpoint saved at step {step}")

    save(ckpt_dir, step)
    log(f"done: {step} steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
