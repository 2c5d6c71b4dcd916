"""Optional peers for ``fastbp bench --peers``: PyTorch (CPU) and JAX, each written the way
a user of that library would write it, doing the same arithmetic as fastbp.

Neither is a dependency of fastbp: each is imported only when asked for, and
:func:`peer_status` says whether it can be. Both start from a fastbp model's initial
weights (``get_weights()``, ``W`` of shape (n_in, n_out)), visit the rows in order (no
shuffle), and use PyTorch's update rules with the workload's hyper-parameters, so their
first-epoch loss must match fastbp's and NumPy's; the runner checks it.

- **torch**: ``torch.nn.Sequential`` of ``Linear`` layers and activation modules,
  ``torch.optim.SGD``/``Adam``, and the standard per-batch loop (``zero_grad``, forward,
  ``F.cross_entropy``/``F.mse_loss``, ``backward``, ``step``), float32, on
  ``torch.set_num_threads(n)`` threads.
- **jax**: a whole epoch compiled into one call (``jax.jit`` over ``jax.lax.scan`` across
  the batches), float32, with SGD-momentum and Adam written in ``jax.numpy`` (optax is not
  assumed), on the CPU backend even where a GPU is present. XLA picks its own CPU thread
  count when JAX starts; it cannot be changed after.

A runner is a callable doing one epoch of training (returning the epoch's mean loss, as
fastbp's ``History``) or, for a forward-only workload, one forward pass over all rows
(returning the logits).
"""

from __future__ import annotations

import importlib
import importlib.util
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np

from .workloads import Workload

#: Peer names accepted by ``--peers``, in table order.
PEERS: tuple[str, ...] = ("torch", "jax")


def peer_status(name: str) -> str | None:
    """``None`` when the peer can be imported, else why not (``"not installed"``, ...)."""
    if name not in PEERS:
        raise ValueError(f"unknown peer {name!r}; expected one of {PEERS}")
    if importlib.util.find_spec(name) is None:
        return "not installed"
    try:
        importlib.import_module(name)
    except Exception as exc:  # a broken install: report it, do not stop the benchmark
        return f"import failed: {type(exc).__name__}: {exc}"
    return None


def peer_version(name: str) -> str:
    """The installed version of an importable peer."""
    return str(importlib.import_module(name).__version__)


@contextmanager
def peer_threads(name: str, n: int) -> Iterator[str]:
    """Run a block with the peer on ``n`` threads where it allows; yields a description.

    torch's intra-op pool is set and restored. JAX's is fixed when XLA starts, so it is
    only described.
    """
    if name == "torch":
        import torch

        old = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            yield f"torch.set_num_threads({n})"
        finally:
            torch.set_num_threads(old)
    else:
        yield "XLA default (fixed at start-up)"


def make_runner(name: str, w: Workload, weights: list[np.ndarray], hyper: dict, X: np.ndarray,
                y: np.ndarray) -> Callable[[], object]:  # fmt: skip
    """The peer's callable for one epoch (``w.train``) or one forward pass over ``X``.

    ``weights`` are ``[W0, b0, ...]`` as fastbp returns them; ``hyper`` is the fastbp
    optimizer's ``get_config()`` (``lr``, and ``momentum`` or ``beta1``/``beta2``/``eps``).
    Building the model and moving the data happen here, outside the timed call.
    """
    if name == "torch":
        return _torch_runner(w, weights, hyper, X, y)
    if name == "jax":
        return _jax_runner(w, weights, hyper, X, y)
    raise ValueError(f"unknown peer {name!r}; expected one of {PEERS}")


# ---------------------------------------------------------------------------- PyTorch
def _torch_runner(w: Workload, weights: list[np.ndarray], hyper: dict, X: np.ndarray,
                  y: np.ndarray) -> Callable[[], object]:  # fmt: skip
    import torch
    import torch.nn.functional as F

    acts = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid,
            "leaky_relu": lambda: torch.nn.LeakyReLU(0.01)}  # fmt: skip
    n_layers = len(w.sizes) - 1
    modules: list[torch.nn.Module] = []
    for l, (n_in, n_out) in enumerate(zip(w.sizes[:-1], w.sizes[1:])):
        linear = torch.nn.Linear(n_in, n_out)
        with torch.no_grad():
            # torch stores Linear.weight as (out, in): the transpose of fastbp's W
            linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(weights[2 * l].T)))
            linear.bias.copy_(torch.from_numpy(weights[2 * l + 1]))
        modules.append(linear)
        if l < n_layers - 1 and w.activation != "identity":
            modules.append(acts[w.activation]())
    model = torch.nn.Sequential(*modules).float()
    Xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))

    if not w.train:
        model.eval()

        def forward() -> np.ndarray:
            with torch.inference_mode():
                return model(Xt).numpy()

        return forward

    if w.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=hyper["lr"], momentum=hyper["momentum"])
    else:
        opt = torch.optim.Adam(model.parameters(), lr=hyper["lr"], betas=(hyper["beta1"], hyper["beta2"]),
                               eps=hyper["eps"])  # fmt: skip
    if w.loss == "cross_entropy":
        yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
        loss_fn = F.cross_entropy
    else:
        yt = torch.from_numpy(np.asarray(y, dtype=np.float32).reshape(len(X), -1))
        loss_fn = F.mse_loss
    n = len(X)
    batch = min(w.batch_size, n)

    def epoch() -> float:
        total = 0.0
        for s in range(0, n, batch):  # rows in order, the last batch holds the remainder
            xb, yb = Xt[s : s + batch], yt[s : s + batch]
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            total += loss.item() * xb.shape[0]
        return total / n

    return epoch


# ---------------------------------------------------------------------------- JAX
def _jax_runner(w: Workload, weights: list[np.ndarray], hyper: dict, X: np.ndarray,
                y: np.ndarray) -> Callable[[], object]:  # fmt: skip
    """JAX on its CPU backend, also where a GPU is present (jaxlib with CUDA uses the GPU
    by default, which timed the GPU in a CPU benchmark)."""
    import jax

    cpu = jax.devices("cpu")[0]
    with jax.default_device(cpu):
        run = _jax_build(w, weights, hyper, X, y)

    def on_cpu() -> object:
        with jax.default_device(cpu):
            return run()

    return on_cpu


def _jax_build(w: Workload, weights: list[np.ndarray], hyper: dict, X: np.ndarray,
               y: np.ndarray) -> Callable[[], object]:  # fmt: skip
    """The JAX peer's timed call. Long by design: the loss, the jitted step, the whole
    epoch under ``lax.scan`` and predict are closures over the same parameters, optimizer
    state and data, and read best as one piece beside the other peers' builders."""
    import jax
    import jax.numpy as jnp

    acts = {"relu": jax.nn.relu, "tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid,
            "leaky_relu": lambda z: jax.nn.leaky_relu(z, 0.01), "identity": lambda z: z}  # fmt: skip
    hidden = acts[w.activation]
    params = [(jnp.asarray(weights[i], dtype=jnp.float32), jnp.asarray(weights[i + 1], dtype=jnp.float32))
              for i in range(0, len(weights), 2)]  # fmt: skip

    def forward(params, x):
        for W, b in params[:-1]:
            x = hidden(x @ W + b)
        W, b = params[-1]
        return x @ W + b

    if not w.train:
        forward_jit = jax.jit(forward)
        Xd = jax.device_put(np.ascontiguousarray(X, dtype=np.float32))

        def infer() -> object:
            return forward_jit(params, Xd).block_until_ready()

        return infer

    n, d = X.shape
    batch = min(w.batch_size, n)
    n_batches = math.ceil(n / batch)
    pad = n_batches * batch - n
    # The remainder batch is PADDED, not dropped: lax.scan needs equal-shape steps, so the
    # last batch gets zero rows whose per-row weight is 0, and every batch's loss is the
    # mean over its real rows only. The arithmetic is then exactly fastbp's and NumPy's
    # (all rows trained, same batches, same mean), at the cost of computing `pad` dummy
    # rows per epoch (under 1/n_batches of the work).
    Xp = np.concatenate([X, np.zeros((pad, d), dtype=np.float32)]).reshape(n_batches, batch, d)
    counts = np.full(n_batches, batch, dtype=np.float32)
    counts[-1] = batch - pad
    row_w = np.zeros(n_batches * batch, dtype=np.float32)
    row_w[:n] = 1.0
    row_w = (row_w.reshape(n_batches, batch) / counts[:, None]).astype(np.float32)
    if w.loss == "cross_entropy":
        yp = np.concatenate([np.asarray(y, dtype=np.int32), np.zeros(pad, dtype=np.int32)]).reshape(n_batches, batch)

        def per_row_loss(out, yb):
            return jax.nn.logsumexp(out, axis=1) - jnp.take_along_axis(out, yb[:, None], axis=1)[:, 0]
    else:
        yf = np.asarray(y, dtype=np.float32).reshape(n, -1)
        yp = np.concatenate([yf, np.zeros((pad, yf.shape[1]), dtype=np.float32)]).reshape(n_batches, batch, -1)

        def per_row_loss(out, yb):  # the mean over all B*k outputs, as mse_loss, once summed over rows
            return jnp.mean((out - yb) ** 2, axis=1)

    def batch_loss(params, xb, yb, wb):
        return jnp.sum(wb * per_row_loss(forward(params, xb), yb))

    tree_map = jax.tree_util.tree_map
    lr = float(hyper["lr"])
    if w.optimizer == "sgd":
        mu = float(hyper["momentum"])
        state = tree_map(jnp.zeros_like, params)

        def update(params, grads, velocity):  # torch.optim.SGD: v = mu v + g; p -= lr v
            velocity = tree_map(lambda v, g: mu * v + g, velocity, grads)
            return tree_map(lambda p, v: p - lr * v, params, velocity), velocity
    else:
        b1, b2, eps = float(hyper["beta1"]), float(hyper["beta2"]), float(hyper["eps"])
        state = (jnp.zeros((), jnp.float32), tree_map(jnp.zeros_like, params), tree_map(jnp.zeros_like, params))

        def update(params, grads, state):  # torch.optim.Adam, bias corrections as torch applies them
            t, m, v = state
            t = t + 1.0
            m = tree_map(lambda m, g: b1 * m + (1.0 - b1) * g, m, grads)
            v = tree_map(lambda v, g: b2 * v + (1.0 - b2) * g * g, v, grads)
            step_size = lr / (1.0 - b1**t)
            inv_sqrt_bc2 = 1.0 / jnp.sqrt(1.0 - b2**t)
            params = tree_map(lambda p, m, v: p - step_size * m / (jnp.sqrt(v) * inv_sqrt_bc2 + eps), params, m, v)
            return params, (t, m, v)

    def step(carry, batch_data):
        params, state = carry
        xb, yb, wb, count = batch_data
        loss, grads = jax.value_and_grad(batch_loss)(params, xb, yb, wb)
        params, state = update(params, grads, state)
        return (params, state), loss * count

    @jax.jit
    def train_epoch(params, state, Xp, yp, row_w, counts):
        (params, state), weighted = jax.lax.scan(step, (params, state), (Xp, yp, row_w, counts))
        return params, state, jnp.sum(weighted) / n

    data = tuple(jax.device_put(a) for a in (Xp, yp, row_w, counts))
    carry = {"params": params, "state": state}

    def epoch() -> float:
        params, state, loss = train_epoch(carry["params"], carry["state"], *data)
        carry["params"], carry["state"] = params, state
        return float(loss)  # waits for the result

    return epoch
