"""Overfitting, and three ways to fight it: dropout, weight decay, early stopping.

A small noisy data set (400 training rows, 20 features of which 5 matter, 10 % of the
labels flipped) and a wide network (two hidden layers of 256): trained plainly, it
memorises the training set and its validation loss turns up after a few epochs. The same
network with Dropout(0.5), weight decay (AdamW) and EarlyStopping keeps the validation loss
low and stops by itself, with the weights of its best epoch.

Run:  python examples/overfitting.py [--plot docs/overfitting.png]
(the plot needs matplotlib: pip install "fastbp[plot]")
"""

from __future__ import annotations

import argparse

import numpy as np

import fastbp as fb

SEED = 0
EPOCHS = 150


def make_data(n_train: int = 400, n_val: int = 2000, d: int = 20) -> tuple:
    rng = np.random.default_rng(SEED)
    w = np.zeros(d)
    w[:5] = rng.standard_normal(5)
    X = rng.standard_normal((n_train + n_val, d)).astype(np.float32)
    y = (X @ w > 0).astype(np.int64)
    flip = rng.random(len(y)) < 0.1
    y[flip] = 1 - y[flip]  # label noise: no model can be right on these
    return X[:n_train], y[:n_train], X[n_train:], y[n_train:]


def make_model(regularised: bool) -> fb.Sequential:
    if regularised:
        layers = [fb.Dense(256, activation="relu"), fb.Dropout(0.5), fb.Dense(256, activation="relu"),
                  fb.Dropout(0.5), fb.Dense(2)]  # fmt: skip
        optimizer = fb.AdamW(lr=3e-4, weight_decay=0.05)
    else:
        layers = [fb.Dense(256, activation="relu"), fb.Dense(256, activation="relu"), fb.Dense(2)]
        optimizer = fb.Adam(lr=3e-4)
    return fb.Sequential(layers, loss="cross_entropy", optimizer=optimizer, seed=SEED, metrics=["accuracy"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--plot", metavar="PNG", help="save train vs validation loss curves (needs matplotlib)")
    parser.add_argument("--epochs", type=int, default=EPOCHS, help=f"most epochs per run (default {EPOCHS})")
    args = parser.parse_args()

    X, y, Xv, yv = make_data()
    runs = {}
    for name, regularised in (("plain", False), ("regularised", True)):
        model = make_model(regularised)
        callbacks = [fb.EarlyStopping(monitor="val_loss", patience=15)] if regularised else []
        history = model.fit(X, y, epochs=args.epochs, batch_size=32, validation_data=(Xv, yv), callbacks=callbacks,
                            verbose=0)  # fmt: skip
        h = history.history
        best = int(np.argmin(h["val_loss"]))
        final_loss = model.evaluate(Xv, yv)
        final_acc = float(np.mean(model.predict(Xv).argmax(axis=1) == yv))
        runs[name] = h
        print(f"{name:>11}: {len(h['loss'])} epochs; best val_loss {h['val_loss'][best]:.4f} at epoch {best + 1} "
              f"(val accuracy {h['val_accuracy'][best]:.1%}); final train loss {h['loss'][-1]:.4f}, "
              f"model's val_loss {final_loss:.4f}, val accuracy {final_acc:.1%}")  # fmt: skip

    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
        for ax, (name, h) in zip(axes, runs.items()):
            epochs = np.arange(1, len(h["loss"]) + 1)
            ax.plot(epochs, h["loss"], label="train loss")
            ax.plot(epochs, h["val_loss"], label="validation loss")
            ax.set_title({"plain": "plain: overfits", "regularised": "dropout + weight decay + early stopping"}[name])
            ax.set_xlabel("epoch")
            ax.set_xlim(1, args.epochs)
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("cross-entropy")
        axes[0].set_ylim(0, 1.5)
        axes[0].legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)
        print(f"saved {args.plot}")


if __name__ == "__main__":
    main()
