#!/usr/bin/env python3
"""A stand-in for a training script, for docs/search.md: deterministic, fast, with a known optimum.

    ./train.py HIDDEN ACTIVATION ALPHA

prints `epoch N loss X` once per epoch, then `Test accuracy: V`. The accuracy is highest,
0.98, at HIDDEN=64, ACTIVATION=tanh, ALPHA=0.001, and falls off smoothly around it; every
epoch's loss is (1 - accuracy) * (1 + 3 / N), so a worse configuration has a higher loss at
every epoch (what a pruner needs). EPOCHS (default 10) and EPOCH_SECONDS (default 0.05) set the
length of a run.
"""

import math
import os
import sys
import time

BEST_ACCURACY = 0.98
ACTIVATION_PENALTY = {"relu": 0.02, "tanh": 0.0, "logistic": 0.05}


def accuracy(hidden: int, activation: str, alpha: float) -> float:
    penalty = 0.02 * (math.log2(hidden) - 6) ** 2 + ACTIVATION_PENALTY[activation] + 0.01 * (math.log10(alpha) + 3) ** 2
    return max(0.0, BEST_ACCURACY - penalty)


def main() -> None:
    hidden, activation, alpha = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    epochs = int(os.environ.get("EPOCHS", "10"))
    pause = float(os.environ.get("EPOCH_SECONDS", "0.05"))
    final = accuracy(hidden, activation, alpha)
    for epoch in range(1, epochs + 1):
        time.sleep(pause)
        print(f"epoch {epoch} loss {(1 - final) * (1 + 3 / epoch):.6f}", flush=True)
    print(f"Test accuracy: {final:.6f}")


if __name__ == "__main__":
    main()
