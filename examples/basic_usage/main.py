#!/usr/bin/env python3
"""A stand-in for a training script: takes a network's settings, prints metrics.

    ./main.py NEURONS ACTIVATION [PREPROCESSING]

It trains nothing. It makes up accuracies that depend on its inputs plus noise, so a sweep over
it has a best configuration to find, and prints them as a real script would, in lines that the
`patas parse` patterns of the README match.
"""

import math
import random
import sys

ACTIVATIONS = {"relu": 0.95, "leaky_relu": 0.93, "sigmoid": 0.80, "tanh": 0.86}
PREPROCESSING = {"fast": 0.96, "medium": 1.0, "intense": 0.98}
EPOCHS = 20


def main() -> int:
    if len(sys.argv) not in (3, 4):
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    neurons = int(sys.argv[1])
    activation = sys.argv[2]
    preprocessing = sys.argv[3] if len(sys.argv) == 4 else "medium"
    if activation not in ACTIVATIONS or preprocessing not in PREPROCESSING:
        print(f"unknown activation or preprocessing: {activation} {preprocessing}", file=sys.stderr)
        return 2

    # Capacity grows with neurons and saturates; too many neurons overfit a little.
    capacity = 1 - math.exp(-neurons / 8)
    overfit = max(0.0, (neurons - 30) / 400)
    ceiling = ACTIVATIONS[activation] * PREPROCESSING[preprocessing]
    train_acc = min(0.999, ceiling * capacity + random.gauss(0, 0.01))
    test_acc = max(0.0, train_acc - overfit - abs(random.gauss(0.02, 0.01)))

    for epoch in range(1, EPOCHS + 1):
        loss = (1 - train_acc) + (1 / epoch) * 0.5 + random.uniform(0, 0.01)
        print(f"Epoch {epoch:2d}/{EPOCHS}: loss {loss:.4f}")
    print(f"Time to train (ms): {neurons * 3.5 + random.uniform(50, 70):.3f}")
    print(f"Time to test (ms):  {neurons * 0.1 + random.uniform(2, 4):.3f}")
    print(f"Train accuracy:     {train_acc:.3f}")
    print(f"Test accuracy:      {test_acc:.3f}")
    print(f"Final Loss:         {1 - train_acc + random.uniform(0, 0.05):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
