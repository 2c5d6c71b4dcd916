"""Slow, obvious, plain-NumPy twins of every fastbp kernel: the test oracle.

Everything here is written from the textbook definition, in float64, with no fused
tricks: activation derivatives are taken from the pre-activation ``z`` (the kernels use
the output ``a`` where they can), losses are written as their definitions with only the
standard log-sum-exp / softplus rewrites needed to stay finite, and the optimizers follow
the algorithm boxes of the ``torch.optim`` documentation step by step.

Conventions (as PyTorch):

* derivatives at the kink ``z == 0``: relu 0, leaky_relu 0.01, elu 1;
* losses use mean reduction: cross-entropy over samples, the others over all n*k outputs;
* weight decay applies to ``theta[:n_decay]`` only (fastbp decays weights, not biases).

Registries: :data:`ACTIVATIONS` ``{name: (f, df)}``, :data:`LOSSES` ``{name: fn}``,
:data:`LINKS` ``{loss name: link}``, :data:`OPTIMIZERS` ``{name: step function}``.
"""

from __future__ import annotations

import math

import numpy as np

_erfc = np.vectorize(math.erfc, otypes=[np.float64])

LEAKY_SLOPE = 0.01
ELU_ALPHA = 1.0
HUBER_DELTA = 1.0


def _f64(x):
    return np.asarray(x, dtype=np.float64)


# --------------------------------------------------------------------------- activations
def sigmoid(z):
    """1 / (1 + e^-z), evaluated without overflow: e^-|z| is never larger than 1."""
    z = _f64(z)
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def identity(z):
    return _f64(z).copy()


def d_identity(z):
    return np.ones_like(_f64(z))


def d_sigmoid(z):
    s = sigmoid(z)
    return s * (1.0 - s)


def tanh(z):
    return np.tanh(_f64(z))


def d_tanh(z):
    # 1 / cosh^2, from z; cosh overflows to inf for |z| > 710, giving the right limit 0
    with np.errstate(over="ignore"):
        return 1.0 / np.cosh(_f64(z)) ** 2


def relu(z):
    z = _f64(z)
    return np.where(z > 0, z, 0.0)


def d_relu(z):
    return np.where(_f64(z) > 0, 1.0, 0.0)


def leaky_relu(z):
    z = _f64(z)
    return np.where(z > 0, z, LEAKY_SLOPE * z)


def d_leaky_relu(z):
    return np.where(_f64(z) > 0, 1.0, LEAKY_SLOPE)


def elu(z):
    z = _f64(z)
    return np.where(z > 0, z, ELU_ALPHA * np.expm1(np.minimum(z, 0.0)))


def d_elu(z):
    z = _f64(z)
    return np.where(z > 0, 1.0, ELU_ALPHA * np.exp(np.minimum(z, 0.0)))


def _Phi(z):
    """Standard normal CDF, as 0.5 erfc(-z / sqrt 2): accurate in the left tail too, where
    1 + erf(z / sqrt 2) cancels."""
    return 0.5 * _erfc(-_f64(z) / math.sqrt(2.0))


def _phi(z):
    """Standard normal density."""
    z = _f64(z)
    return np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)


def gelu(z):
    """Exact gelu: z Phi(z)."""
    z = _f64(z)
    return z * _Phi(z)


def d_gelu(z):
    """Product rule on z Phi(z): Phi(z) + z phi(z)."""
    z = _f64(z)
    return _Phi(z) + z * _phi(z)


def softplus(z):
    """log(1 + e^z) = logaddexp(0, z)."""
    return np.logaddexp(0.0, _f64(z))


def d_softplus(z):
    return sigmoid(z)


def silu(z):
    z = _f64(z)
    return z * sigmoid(z)


def d_silu(z):
    """Product rule on z s(z): s(z) + z s(z) (1 - s(z))."""
    z = _f64(z)
    s = sigmoid(z)
    return s + z * s * (1.0 - s)


ACTIVATIONS = {
    "identity": (identity, d_identity),
    "sigmoid": (sigmoid, d_sigmoid),
    "tanh": (tanh, d_tanh),
    "relu": (relu, d_relu),
    "leaky_relu": (leaky_relu, d_leaky_relu),
    "elu": (elu, d_elu),
    "gelu": (gelu, d_gelu),
    "softplus": (softplus, d_softplus),
    "silu": (silu, d_silu),
}


# --------------------------------------------------------------------------- losses
def softmax(a):
    a = _f64(a)
    e = np.exp(a - a.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _onehot(y, k):
    out = np.zeros((len(y), k))
    out[np.arange(len(y)), np.asarray(y)] = 1.0
    return out


def cross_entropy(a, y):
    """Mean over samples of -log softmax(a)[y]; y holds integer labels.

    Returns (loss, dL/da) with dL/da = (softmax(a) - onehot(y)) / n.
    """
    a = _f64(a)
    n, k = a.shape
    mx = a.max(axis=1, keepdims=True)
    log_p = a - mx - np.log(np.exp(a - mx).sum(axis=1, keepdims=True))
    y = np.asarray(y)
    loss = -log_p[np.arange(n), y].mean()
    grad = (softmax(a) - _onehot(y, k)) / n
    return float(loss), grad


def binary_cross_entropy(a, y):
    """Mean over all n*k of -[y log s(a) + (1 - y) log(1 - s(a))], s the sigmoid.

    Uses -log s(a) = softplus(-a) and -log(1 - s(a)) = softplus(a), so log(0) never
    happens. Returns (loss, dL/da) with dL/da = (s(a) - y) / (n k).
    """
    a, y = _f64(a), _f64(y)
    per = y * softplus(-a) + (1.0 - y) * softplus(a)
    return float(per.mean()), (sigmoid(a) - y) / a.size


def mse(a, y):
    """Mean over all n*k of (a - y)^2; dL/da = 2 (a - y) / (n k)."""
    a, y = _f64(a), _f64(y)
    r = a - y
    return float((r * r).mean()), 2.0 * r / a.size


def huber(a, y):
    """Mean over all n*k of Huber(a - y) with delta 1 (PyTorch's HuberLoss).

    Huber(r) = r^2 / 2 for |r| <= delta, delta (|r| - delta / 2) otherwise; its
    derivative is r clipped to [-delta, delta].
    """
    a, y = _f64(a), _f64(y)
    r = a - y
    ar = np.abs(r)
    per = np.where(ar <= HUBER_DELTA, 0.5 * r * r, HUBER_DELTA * (ar - 0.5 * HUBER_DELTA))
    return float(per.mean()), np.clip(r, -HUBER_DELTA, HUBER_DELTA) / a.size


def poisson(a, y):
    """Mean over all n*k of exp(a) - y a (Poisson negative log-likelihood with a log link,
    without the terms in y alone); dL/da = (exp(a) - y) / (n k)."""
    a, y = _f64(a), _f64(y)
    e = np.exp(np.minimum(a, 50.0))  # fastbp clips the log-rate at 50
    return float((e - y * a).mean()), (e - y) / a.size


LOSSES = {
    "cross_entropy": cross_entropy,
    "binary_cross_entropy": binary_cross_entropy,
    "mse": mse,
    "huber": huber,
    "poisson": poisson,
}

#: The output link each loss applies in ``predict``.
LINKS = {
    "cross_entropy": softmax,
    "binary_cross_entropy": sigmoid,
    "mse": identity,
    "huber": identity,
    "poisson": lambda a: np.exp(np.minimum(a, 50.0)),
}


# --------------------------------------------------------------------------- dense layer
def dense_forward(x, w, b, act):
    """Returns (z, a) with z = x @ w + b, a = f(z)."""
    z = _f64(x) @ _f64(w) + _f64(b)
    return z, ACTIVATIONS[act][0](z)


def dense_backward(x, w, z, act, g):
    """Backward pass of one dense layer from dL/da ``g``.

    Returns (delta, dw, db, dx) with delta = g * f'(z), dw = x^T delta, db = column sums
    of delta, dx = delta w^T.
    """
    delta = _f64(g) * ACTIVATIONS[act][1](z)
    return delta, _f64(x).T @ delta, delta.sum(axis=0), delta @ _f64(w).T


# --------------------------------------------------------------------------- network
def network_forward(X, weights, acts):
    """Forward pass; ``weights`` is [W0, b0, W1, b1, ...]. Returns (inputs, zs, output)."""
    inputs, zs = [], []
    h = _f64(X)
    for l, act in enumerate(acts):
        inputs.append(h)
        z, h = dense_forward(h, weights[2 * l], weights[2 * l + 1], act)
        zs.append(z)
    return inputs, zs, h


def network_loss_and_gradients(X, y, weights, acts, loss):
    """Mean loss and [dW0, db0, dW1, db1, ...] by plain backpropagation in float64."""
    inputs, zs, out = network_forward(X, weights, acts)
    value, g = LOSSES[loss](out, y)
    grads = [None] * len(weights)
    for l in range(len(acts) - 1, -1, -1):
        _, dw, db, g = dense_backward(inputs[l], weights[2 * l], zs[l], acts[l], g)
        grads[2 * l], grads[2 * l + 1] = dw, db
    return value, grads


# --------------------------------------------------------------------------- optimizers
# Each step function follows the algorithm box of the torch.optim documentation. It takes
# the parameters ``theta`` (1-D), the full gradient ``grad``, a ``state`` dict (start with
# {} and pass the same dict to every step), the 1-based ``step`` number and ``n_decay``
# (weight decay applies to theta[:n_decay]), and returns the new theta. Nothing is
# modified in place except ``state``.


def _decay_mask(theta, n_decay):
    mask = np.zeros(theta.shape)
    mask[:n_decay] = 1.0
    return mask


def sgd(theta, grad, state, step, n_decay, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    """torch.optim.SGD with dampening 0."""
    theta, g = _f64(theta).copy(), _f64(grad).copy()
    g = g + weight_decay * _decay_mask(theta, n_decay) * theta
    if momentum != 0:
        if "momentum_buffer" not in state:
            buf = g.copy()  # first step: b_1 = g_1
        else:
            buf = momentum * state["momentum_buffer"] + g
        state["momentum_buffer"] = buf
        g = g + momentum * buf if nesterov else buf
    return theta - lr * g


def adam(theta, grad, state, step, n_decay, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
    """torch.optim.Adam (L2 weight decay added to the gradient, amsgrad off)."""
    theta, g = _f64(theta).copy(), _f64(grad).copy()
    g = g + weight_decay * _decay_mask(theta, n_decay) * theta
    m = beta1 * state.get("exp_avg", 0.0) + (1.0 - beta1) * g
    v = beta2 * state.get("exp_avg_sq", 0.0) + (1.0 - beta2) * g * g
    state["exp_avg"], state["exp_avg_sq"] = m, v
    m_hat = m / (1.0 - beta1**step)
    v_hat = v / (1.0 - beta2**step)
    return theta - lr * m_hat / (np.sqrt(v_hat) + eps)


def adamw(theta, grad, state, step, n_decay, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01):
    """torch.optim.AdamW: theta <- theta - lr * wd * theta first, then the Adam step."""
    theta = _f64(theta).copy()
    theta = theta - lr * weight_decay * _decay_mask(theta, n_decay) * theta
    return adam(theta, grad, state, step, n_decay, lr, beta1, beta2, eps, weight_decay=0.0)


def rmsprop(theta, grad, state, step, n_decay, lr=0.01, alpha=0.99, eps=1e-8, momentum=0.0, weight_decay=0.0):
    """torch.optim.RMSprop, not centered."""
    theta, g = _f64(theta).copy(), _f64(grad).copy()
    g = g + weight_decay * _decay_mask(theta, n_decay) * theta
    v = alpha * state.get("square_avg", 0.0) + (1.0 - alpha) * g * g
    state["square_avg"] = v
    if momentum > 0:
        buf = momentum * state.get("momentum_buffer", 0.0) + g / (np.sqrt(v) + eps)
        state["momentum_buffer"] = buf
        return theta - lr * buf
    return theta - lr * g / (np.sqrt(v) + eps)


OPTIMIZERS = {"sgd": sgd, "adam": adam, "adamw": adamw, "rmsprop": rmsprop}
