"""Backpropagation by hand: every factor of the chain rule for a 2-2-1 sigmoid network.

The lesson fastbp comes from writes, for the last layer L,

    dC/dW^L = dC/da^L * da^L/dz^L * dz^L/dW^L     (cost * activation * weighted sum)

with delta^L = dC/da^L * da^L/dz^L, and then repeats the same three factors one layer down
with dC/da^(L-1) = delta^L (W^L)^T. ``fb.backprop_trace`` returns each of these arrays for
every layer. This script prints them for one sample and checks every number against finite
differences computed here with plain NumPy, independently of fastbp's kernels.

Run:  python examples/backprop_by_hand.py
"""

from __future__ import annotations

import numpy as np

import fastbp as fb

H = 1e-6  # finite-difference step


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def forward(x: np.ndarray, W1: np.ndarray, b1: np.ndarray, W2: np.ndarray, b2: np.ndarray) -> tuple:
    z1 = x @ W1 + b1
    a1 = sigmoid(z1)
    z2 = a1 @ W2 + b2
    return z1, a1, z2, sigmoid(z2)


def cost(a2: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean((a2 - y) ** 2))  # fastbp's "mse": the mean over outputs


def numeric(f, x: np.ndarray) -> np.ndarray:
    """Central differences of the scalar function f at every entry of x."""
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[i] += H
        down[i] -= H
        grad[i] = (f(up) - f(down)) / (2 * H)
    return grad


def main() -> None:
    model = fb.Sequential(
        [fb.Dense(2, activation="sigmoid"), fb.Dense(1, activation="sigmoid")], loss="mse", dtype="float64"
    )
    W1 = np.array([[0.15, 0.25], [0.20, 0.30]])
    b1 = np.array([0.35, 0.35])
    W2 = np.array([[0.40], [0.50]])
    b2 = np.array([0.60])
    model.set_weights([W1, b1, W2, b2])
    x = np.array([[0.05, 0.10]])
    y = np.array([[0.01]])

    trace = fb.backprop_trace(model, x, y)
    print(trace)

    # ---- check every number independently
    z1, a1, z2, a2 = forward(x, W1, b1, W2, b2)
    out, hidden = trace.layers[1], trace.layers[0]
    checks = {
        "z, a of both layers (forward)": (np.r_[hidden.z.ravel(), hidden.a.ravel(), out.z.ravel(), out.a.ravel()],
                                          np.r_[z1.ravel(), a1.ravel(), z2.ravel(), a2.ravel()]),  # fmt: skip
        "output dC/da": (out.dC_da, numeric(lambda a: cost(a, y), a2)),
        # sigmoid acts element by element, so d(sum sigmoid(z))/dz_i = sigmoid'(z_i)
        "output da/dz": (out.da_dz, numeric(lambda z: float(sigmoid(z).sum()), z2)),
        "output delta = dC/dz": (out.delta, numeric(lambda z: cost(sigmoid(z), y), z2)),
        "output dC/dW": (out.dC_dW, numeric(lambda W: cost(forward(x, W1, b1, W, b2)[3], y), W2)),
        "output dC/db": (out.dC_db, numeric(lambda b: cost(forward(x, W1, b1, W2, b)[3], y), b2)),
        "hidden dC/da": (hidden.dC_da, numeric(lambda a: cost(sigmoid(a @ W2 + b2), y), a1)),
        "hidden da/dz": (hidden.da_dz, numeric(lambda z: float(sigmoid(z).sum()), z1)),
        "hidden delta": (hidden.delta, numeric(lambda z: cost(sigmoid(sigmoid(z) @ W2 + b2), y), z1)),
        "hidden dC/dW": (hidden.dC_dW, numeric(lambda W: cost(forward(x, W, b1, W2, b2)[3], y), W1)),
        "hidden dC/db": (hidden.dC_db, numeric(lambda b: cost(forward(x, W1, b, W2, b2)[3], y), b1)),
    }
    print("\nchecked against finite differences (NumPy, step 1e-6):")
    worst = 0.0
    for name, (got, expected) in checks.items():
        err = float(np.max(np.abs(np.asarray(got) - expected) / np.maximum(np.abs(expected), 1e-8)))
        worst = max(worst, err)
        print(f"  {name:<32} max relative error {err:.1e}")
    assert worst < 1e-6, f"a factor disagrees with finite differences: {worst:.2e}"
    print(f"all factors agree (worst relative error {worst:.1e})")

    loss, grads = model.loss_and_gradients(x, y)
    print(f"\none SGD step with lr = 0.5 moves W2 from {W2.ravel()} to {(W2 - 0.5 * grads[2]).ravel()}")


if __name__ == "__main__":
    main()
