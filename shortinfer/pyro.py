r"""Optional adapter: a Pyro model with one latent per example becomes a ``log_joint``.

Install with ``pip install "shortinfer[pyro]"`` (or ``pip install pyro-ppl``); Pyro is imported
only when `from_pyro` is called.

For a model whose latent sites sit inside a ``pyro.plate`` over the examples,

$$
\log p(x_b, z_b) = \sum_{\text{sites } n} \sum_{\text{non-plate dims}}
\log p_n(v_{n,b} \mid \text{parents}),
$$

summed per example over every sample site (latent and observed), with each site's ``mask``
and ``scale`` applied as Pyro does. `from_pyro` traces the model once on the data to find the
latent sites, their per-example shapes and their prior distributions; its ``log_joint``
re-runs the model under ``poutine.condition`` with the latents given, with Pyro's validation
switched off so that it works under ``torch.func`` transforms (its NaN checks call
``bool(tensor)``, which ``vmap`` refuses).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.distributions import Distribution

__all__ = ["PyroLatentModel", "from_pyro"]


class PyroLatentModel(NamedTuple):
    r"""What `shortinfer.short_run` needs from a Pyro model.

    Attributes:
        log_joint: ``log_joint(x, z) -> (B,)``, with ``x`` the model's keyword arguments (a
            dict of batch-first tensors) and ``z`` a dict of latent site values.
        x: The data, as given to `from_pyro`: pass it to ``short_run`` as ``x``.
        latent_shape: Per-example shape of each latent site, a dict (site name to shape).
        prior: Each latent site's distribution traced at the data, with one distribution per
            example (batch shape led by B); pass it as ``prior=``.

    Examples:
        >>> PyroLatentModel._fields
        ('log_joint', 'x', 'latent_shape', 'prior')
    """

    log_joint: Callable[[Mapping[str, Tensor], Mapping[str, Tensor]], Tensor]
    x: dict[str, Tensor]
    latent_shape: dict[str, torch.Size]
    prior: dict[str, Distribution]


def _import_pyro() -> Any:
    try:
        import pyro  # pyright: ignore[reportMissingImports]  (optional: shortinfer[pyro])
        import pyro.poutine  # pyright: ignore[reportMissingImports]
    except ImportError as err:
        raise ImportError(
            "shortinfer.pyro needs Pyro: pip install 'shortinfer[pyro]' (or pip install pyro-ppl)."
        ) from err
    return pyro


def _sample_sites(trace: Any) -> list[dict[str, Any]]:
    return [
        site
        for site in trace.nodes.values()
        if site["type"] == "sample"
        and isinstance(site["fn"], Distribution)  # not the plates' own subsample sites
        and not site["infer"].get("is_auxiliary", False)
    ]


def _plate_dim(site: dict[str, Any], batch_size: int) -> int | None:
    """The dim of the plate over examples that encloses ``site``, if any."""
    for frame in site["cond_indep_stack"]:
        if frame.size == batch_size and frame.dim is not None:
            return frame.dim
    return None


def _check_latent(site: dict[str, Any], batch_size: int) -> torch.Size:
    name, value, fn = site["name"], site["value"], site["fn"]
    dim = _plate_dim(site, batch_size)
    leading = -len(fn.batch_shape)
    if dim is None or dim != leading or value.shape[0] != batch_size:
        raise ValueError(
            f"latent site {name!r} (value shape {tuple(value.shape)}, batch_shape "
            f"{tuple(fn.batch_shape)}) is not one latent per example: put it inside a "
            f"pyro.plate of size B = {batch_size} over the leftmost batch dimension (e.g. "
            "`with pyro.plate('data', x.shape[0]):` and `.to_event(1)` on vector latents). "
            "Global latents (outside the plate) are not supported: make them parameters."
        )
    return value.shape[1:]


def _log_joint(model: Callable[..., Any], names: list[str]) -> Callable[..., Tensor]:
    pyro = _import_pyro()
    from pyro.distributions.util import scale_and_mask  # pyright: ignore[reportMissingImports]

    def log_joint(x: Mapping[str, Tensor], z: Mapping[str, Tensor] | Tensor) -> Tensor:
        latents = dict(z) if isinstance(z, Mapping) else {names[0]: z}
        batch = next(iter(latents.values())).shape[0]
        with pyro.validation_enabled(False):
            conditioned = pyro.poutine.condition(model, data=latents)
            trace = pyro.poutine.trace(conditioned).get_trace(**x)
            first = latents[names[0]]
            total = torch.zeros((), dtype=first.dtype, device=first.device)
            for site in _sample_sites(trace):
                log_p = site["fn"].log_prob(site["value"])
                log_p = scale_and_mask(log_p, site["scale"], site["mask"])
                if log_p.dim() == 0 or log_p.shape[0] != batch:
                    raise ValueError(
                        f"site {site['name']!r} has log_prob shape {tuple(log_p.shape)}; "
                        f"expected a leading dimension of size B = {batch}: put every sample "
                        "site inside the pyro.plate over the examples."
                    )
                total = total + log_p.reshape(batch, -1).sum(-1)
        return total

    return log_joint


def from_pyro(model: Callable[..., Any], **data: Tensor) -> PyroLatentModel:
    r"""Turn a Pyro model with one latent per example (inside a ``pyro.plate``) into a model.

    The model is called as ``model(**data)``: its observed sites take their values from its
    own ``obs=`` arguments, and every unobserved sample site is a latent. Each latent must
    sit inside a ``pyro.plate`` of size B (the data's batch size) over its leftmost batch
    dimension; the per-example latent shape is the rest of its value's shape. Pyro's random
    number generator is not used for inference: the chains start from the traced prior
    distributions, drawn by `shortinfer.ShortRunPosterior`.

    Arguments:
        model: A Pyro model, e.g. ``def model(x): with pyro.plate("data", x.shape[0]): ...``.
        data: The model's keyword arguments, batch-first tensors of batch size B (they are
            repeated along the batch for several chains per example, so the plate's size
            must come from them, e.g. ``x.shape[0]``).

    Returns:
        A `PyroLatentModel`: ``short_run(m.log_joint, m.x, latent_shape=m.latent_shape,
        prior=m.prior, ...)``; ``z`` is a dict keyed by site name.

    Raises:
        ImportError: If Pyro is not installed.
        ValueError: If no data is given, the model has no latent site, or a latent is not one
            per example inside a plate.

    Examples:
        >>> import pyro, pyro.distributions as dist
        >>> import shortinfer
        >>> weight = torch.randn(5, 2)
        >>> def model(x):
        ...     with pyro.plate("data", x.shape[0]):
        ...         z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        ...         pyro.sample("x", dist.Normal(z @ weight.T, 0.5).to_event(1), obs=x)
        >>> m = from_pyro(model, x=torch.randn(8, 5))
        >>> m.latent_shape
        {'z': torch.Size([2])}
        >>> post = shortinfer.short_run(m.log_joint, m.x, latent_shape=m.latent_shape,
        ...                             prior=m.prior, num_steps=10, step_size=0.05)
        >>> post.sample()["z"].shape
        torch.Size([8, 2])
    """
    pyro = _import_pyro()
    if not data:
        raise ValueError(
            "from_pyro needs the model's data as keyword arguments, e.g. from_pyro(model, x=x)."
        )
    leaves = list(data.values())
    batch_size = leaves[0].shape[0] if leaves[0].dim() > 0 else 0
    with pyro.validation_enabled(False), torch.no_grad():
        trace = pyro.poutine.trace(model).get_trace(**data)
    latents = [site for site in _sample_sites(trace) if not site["is_observed"]]
    if not latents:
        raise ValueError(
            "the Pyro model has no latent (unobserved) sample site: every site has obs=. "
            "Leave the latent's obs unset."
        )
    shapes = {site["name"]: _check_latent(site, batch_size) for site in latents}
    priors = {site["name"]: site["fn"] for site in latents}
    names = list(shapes)
    return PyroLatentModel(_log_joint(model, names), dict(data), shapes, priors)
