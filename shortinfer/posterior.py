r"""The short-run posterior $q_s(z \mid x)$: the thin object users hold.

`short_run` binds a user's ``log_joint(x, z)``, the observations ``x`` and the chain's
hyperparameters; the algorithms are the pure functions of `shortinfer.langevin`,
`shortinfer.entropy` and `shortinfer.tuning`.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, NamedTuple, cast

import torch
from torch import Tensor
from torch.distributions import Distribution

from shortinfer._checks import (
    MAX_ABS_LATENT,
    ArgumentError,
    ArgumentTypeError,
    ChainDivergenceError,
    ChainMonitor,
    LogJointError,
    check_choice,
    check_finite_observations,
    check_generator,
    check_int,
    check_num_steps,
    check_sample_shape,
    check_step_size_not_trainable,
    check_x_unchanged,
    find_divergence,
    probe_log_joint,
    warn_if_training_batch_norm,
)
from shortinfer._compile import CompileOption, check_compile, step_fn
from shortinfer._constraints import LatentTransform
from shortinfer._latents import Latent, LatentLayout, ShapeLike
from shortinfer._step_size import (
    StepSize,
    canonical_step_size,
    expand_step_size,
    public_step_size,
)
from shortinfer.entropy import JacobianMode, LogDetMethod
from shortinfer.langevin import (
    autograd_score,
    delta_from_step_size,
    functional_score,
    langevin_step,
    max_curvature,
    rollout,
)
from shortinfer.likelihoods import standard_normal_log_prob
from shortinfer.objectives import DEFAULT_NUM_MIXTURE, OBJECTIVES, EntropyEstimator, ObjectiveName
from shortinfer.tuning import (
    DEFAULT_GRID,
    DEFAULT_OBJECTIVE,
    STABILITY_GROWTH,
    STABILITY_QUANTILE,
    bracket_final,
    bracket_init,
    bracket_update,
    common_random_numbers,
    default_derivative,
    golden_section_search,
    gradient_search,
    grid_edge,
    grid_search,
    step_amplification,
)

__all__ = [
    "ChainNoise",
    "GridEdgeWarning",
    "Observations",
    "ShortRunPosterior",
    "TuningTrace",
    "short_run",
]

#: The default tuning chains (``num_samples=None``, ``num_examples=None``): about this many
#: latent coordinates in all, ``ceil(TUNING_COORDINATES / D)`` chains clamped to
#: `TUNING_CHAINS`, spread over as many of the first examples.
TUNING_COORDINATES = 320
#: The fewest and most chains in all of the default tuning objective.
TUNING_CHAINS = (8, 64)
#: ``tune_step_size(progress=None)`` prints one evaluation line per this many seconds of search.
PROGRESS_AFTER_SECONDS = 5.0
#: Chains per example of the stability check after tuning: this many times the tuning's.
STABILITY_CHAINS_FACTOR = 8
#: ... and at least this many chains in all.
STABILITY_MIN_CHAINS = 64


class GridEdgeWarning(UserWarning):
    """The tuned step size is the smallest or largest candidate of its grid.

    Examples:
        >>> issubclass(GridEdgeWarning, UserWarning)
        True
    """


Observations = Tensor | Sequence[Tensor] | Mapping[str, Tensor]
"""``x``: a tensor, or a tuple/list/dict of tensors that share the leading batch dimension."""

LogJoint = Callable[[Any, Any], Tensor]
Prior = Distribution | Mapping[str, Distribution] | None
Init = Distribution | Mapping[str, Distribution] | None


class ChainNoise(NamedTuple):
    r"""All the randomness of a batch of short-run chains, drawn before the rollout.

    Attributes:
        z0: Initial flat latents in the chain's coordinates, with shape ``(S·B, D)``:
            $z_0$ drawn from ``init`` (or the prior), mapped to $u_0 = T^{-1}(z_0)$ for
            blocks whose prior has a constrained support (identical to $z_0$ otherwise).
        noise: Injected noise $\epsilon$, with shape ``(K, S·B, D)``.

    Examples:
        >>> post = short_run(lambda x, z: -0.5 * (z - x).square().sum(-1), torch.zeros(4, 2),
        ...                  latent_shape=(2,), num_steps=3, step_size=0.1)
        >>> chains = post.draw_noise(num_samples=2)
        >>> chains.z0.shape, chains.noise.shape
        (torch.Size([8, 2]), torch.Size([3, 8, 2]))
    """

    z0: Tensor
    noise: Tensor


class TuningTrace(NamedTuple):
    r"""The search behind a tuned step size, kept for plotting.

    Attributes:
        method: ``"grid"`` or ``"gradient"``.
        step_sizes: The step size at each grid point or iteration, with shape ``(G, *shape)``
            where ``shape`` is ``()`` for a scalar, ``(K,)`` per step, ``(N,)`` per block
            and ``(K, N)`` for both.
        objectives: The objective $J(s)$ there, with shape ``(G,)`` (a gradient trace
            has one fewer objective than step sizes: the last step size is not evaluated).
        objective: The entropy estimate that defined $J$ (e.g. ``"linearized"``); `elbo`
            uses it by default.
        rejected: Step sizes the stability check refused, each ``(step_size, reason)``:
            their chains diverged on more chains than the tuning saw, or
            the K steps would amplify the stiffest direction more than
            `shortinfer.tuning.STABILITY_GROWTH`-fold (`shortinfer.tuning.step_amplification`).
        dropped: For a grid: one line per candidate scored ``inf`` (its chain diverged, or
            ``log_joint`` raised there), saying why; empty when none was.

    Examples:
        >>> post = short_run(lambda x, z: -0.5 * (z - x).square().sum(-1), torch.zeros(4, 2),
        ...                  latent_shape=(2,), num_steps=3, step_size=0.1,
        ...                  generator=torch.Generator().manual_seed(0))
        >>> grid = [0.05, 0.1, 0.2, 0.4, 0.8, 1.6]
        >>> trace = post.tune_step_size("grid", grid=grid, refine=0).trace
        >>> trace.method, trace.step_sizes.shape, trace.objectives.shape, trace.objective
        ('grid', torch.Size([6]), torch.Size([6]), 'linearized')
    """

    method: str
    step_sizes: Tensor
    objectives: Tensor
    objective: str = DEFAULT_OBJECTIVE
    rejected: tuple[tuple[float, str], ...] = ()
    dropped: tuple[str, ...] = ()


def _leaves(x: Observations) -> list[Tensor]:
    if isinstance(x, Tensor):
        return [x]
    values = list(x.values()) if isinstance(x, Mapping) else list(x)
    if not values or not all(isinstance(v, Tensor) for v in values):
        raise ArgumentTypeError(
            f"x must be a tensor or a non-empty tuple/list/dict of tensors; received "
            f"{type(x).__name__}. Pack extra inputs such as masks as x=(images, mask)."
        )
    return values


_NUM_SAMPLES_HINT = "num_samples is S, the chains per example; pass 1 or more."


def _check_grid(grid: Sequence[float] | Tensor | None) -> Tensor:
    """The grid as a flat float64 tensor of positive, finite step sizes, or raise."""
    values = DEFAULT_GRID if grid is None else grid
    try:
        candidates = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ArgumentError(
            f"grid must be a non-empty sequence of positive step sizes (floats); received "
            f"{values!r}. Pass e.g. grid=[0.01, 0.02, 0.05], or None for the default grid."
        ) from err
    if candidates.numel() == 0 or not bool((torch.isfinite(candidates) & (candidates > 0)).all()):
        raise ArgumentError(
            f"grid must be a non-empty sequence of finite, positive step sizes; received "
            f"{candidates.tolist()}. Pass e.g. grid=[0.01, 0.02, 0.05]."
        )
    return candidates


def _copy(x: Observations) -> Observations:
    """A copy of every leaf of ``x``, for the validation probe."""
    if isinstance(x, Tensor):
        return x.clone()
    if isinstance(x, Mapping):
        return {k: v.clone() for k, v in x.items()}
    return type(x)(v.clone() for v in x)  # type: ignore[call-arg]


def _repeat(x: Observations, times: int) -> Observations:
    """Repeat every leaf ``times`` times along a new leading axis, folded into the batch."""
    if times == 1:
        return x

    def rep(leaf: Tensor) -> Tensor:
        return leaf.unsqueeze(0).expand(times, *leaf.shape).reshape(-1, *leaf.shape[1:])

    if isinstance(x, Tensor):
        return rep(x)
    if isinstance(x, Mapping):
        return {k: rep(v) for k, v in x.items()}
    return type(x)(rep(v) for v in x)  # type: ignore[call-arg]


class ShortRunPosterior:
    r"""The distribution of the short-run chain's output $z_K$, given ``x``.

    $$
    z_0 \sim q_0(z \mid x), \quad
    z_{k+1} = z_k + s_k \nabla_z \log p(x, z_k) + \sqrt{2 s_k}\,\epsilon_k, \quad
    q_s(z \mid x) = \text{law of } z_K,
    $$

    with $q_0$ = ``init`` if given, else the prior $p(z)$. For a prior with a constrained
    support the chain runs on $u = T^{-1}(z)$, see `short_run`.

    Build it with `short_run`. It speaks the ``torch.distributions`` vocabulary:
    `sample` and `rsample` take a ``sample_shape``; `entropy` returns one value
    per example. It is immutable: `tune_step_size` and `with_step_size` return new
    posteriors.

    Arguments:
        log_joint: ``log_joint(x, z) -> (B,)``, see `short_run`.
        x: Observations, batch first (``B`` examples).
        latent_shape: Per-example latent shape, or a dict of block name to shape.
        num_steps: K.
        step_size: s (scalar, per step, or per block).
        prior: The model's prior $p(z)$ (default standard normal): the start distribution
            when ``init`` is not given, and its ``support`` decides the transform.
        init: The start distribution $q_0(z_0 \mid x)$, shared or one per example (e.g. an
            encoder's output); see `short_run`.
        generator: A ``torch.Generator`` for reproducible draws.
        validate: Probe ``log_joint`` once at construction (without advancing ``generator``).
        compile: Run `sample`'s chain compiled (``torch.compile``), see `short_run`.

    Examples:
        >>> def log_joint(x, z):  # x = 2 z + noise, z ~ N(0, I)
        ...     return -0.5 * z.square().sum(-1) - 0.5 * (x - 2 * z).square().sum(-1)
        >>> posterior = ShortRunPosterior(log_joint, torch.ones(4, 3), latent_shape=(3,),
        ...                               num_steps=10, step_size=0.05)
        >>> posterior.sample((2,)).shape, posterior.entropy().shape
        (torch.Size([2, 4, 3]), torch.Size([4]))
    """

    def __init__(
        self,
        log_joint: LogJoint,
        x: Observations,
        *,
        latent_shape: ShapeLike | Mapping[str, ShapeLike],
        num_steps: int = 25,
        step_size: StepSize = 0.05,
        prior: Prior = None,
        init: Init = None,
        generator: torch.Generator | None = None,
        validate: bool = True,
        compile: CompileOption = False,
    ) -> None:
        if not callable(log_joint):
            raise ArgumentTypeError(
                f"log_joint must be callable as log_joint(x, z); received "
                f"{type(log_joint).__name__}."
            )
        leaves = _leaves(x)
        self.log_joint = log_joint
        self.x = x
        self.layout = LatentLayout(latent_shape)
        self.num_steps = check_num_steps(num_steps)
        check_step_size_not_trainable(step_size)
        self._table = canonical_step_size(step_size, self.num_steps, self.layout)
        self.generator = check_generator(generator)
        self.compile_mode = check_compile(compile)
        self.trace: TuningTrace | None = None
        self.batch_size = leaves[0].shape[0] if leaves[0].dim() > 0 else 0
        if self.batch_size < 1 or any(
            leaf.dim() == 0 or leaf.shape[0] != self.batch_size for leaf in leaves
        ):
            shapes = [tuple(leaf.shape) for leaf in leaves]
            raise ArgumentError(
                f"x must have a leading batch dimension of size >= 1 shared by all its tensors; "
                f"received shapes {shapes}. For a single observation use x.unsqueeze(0)."
            )
        self.prior = self._check_prior(prior)
        self.init = self._check_init(init)
        self._transform = LatentTransform(self.layout, self._blocks_of(self.prior))
        floating = [leaf for leaf in leaves if leaf.is_floating_point()]
        self.dtype = floating[0].dtype if floating else torch.get_default_dtype()
        self.device = leaves[0].device
        warn_if_training_batch_norm(log_joint)
        if validate:
            check_finite_observations(leaves)
            self._probe()

    # -- construction helpers -------------------------------------------------------------

    def _probe(self) -> None:
        """Probe ``log_joint`` on one start draw per example, in the user's coordinates.

        The probe runs on a copy of x, so that a log_joint writing into x is caught before it
        has changed the caller's tensor (cost: one copy of x, once).
        """
        z0 = self._probe_latents()
        self._check_in_support(z0)
        copy = _copy(self.x)
        try:
            probe_log_joint(self._user_log_joint(1, x=copy), z0, self.batch_size)
            check_x_unchanged(_leaves(self.x), _leaves(copy))
        except LogJointError as err:
            hint = self._event_dims_hint(str(err))
            if hint is None:
                raise
            raise LogJointError(f"{err}\n{hint}") from err.__cause__

    def _event_dims_hint(self, message: str) -> str | None:
        """Say what happened when a matrix latent meets a helper that sums one dimension."""
        matrix = {n: s for n, s in self.layout.shapes.items() if len(s) > 1}
        mismatch = "must match the size" in message or "returned shape" in message
        if not matrix or not mismatch:
            return None
        shapes = ", ".join(f"{n!r}: {tuple(s)}" for n, s in matrix.items())
        return (
            f"Likely cause: the latent has several dimensions per example ({shapes}), but "
            "a log density summed only its last one, "
            "leaving a (B, ...) tensor that does not add up with the (B,) terms. Helpers such "
            "as standard_normal_log_prob(z) and gaussian_log_likelihood sum `event_dims` "
            "trailing dimensions: pass event_dims=len(latent_shape) (e.g. "
            "standard_normal_log_prob(z, event_dims=2)), or sum with .flatten(1).sum(-1)."
        )

    def _check_in_support(self, z0: Tensor) -> None:
        """Refuse a start distribution whose draws fall outside the prior's support."""
        if self.init is None or self.prior is None:
            return
        priors = self._blocks_of(self.prior)
        blocks = self.layout.unflatten(z0)
        blocks = blocks if isinstance(blocks, dict) else {"z": blocks}
        for name, dist in (priors or {}).items():
            try:
                support = dist.support
            except NotImplementedError:
                continue
            if support is None or not bool(support.check(blocks[name]).all()):
                label = "init" if not self.layout.is_dict else f"init[{name!r}]"
                raise ArgumentError(
                    f"{label} draws values outside the prior's support {support}. The start "
                    "distribution must live on the prior's support: e.g. a LogNormal for a "
                    "Gamma prior, a Beta or a Kumaraswamy for a Beta prior."
                )

    def _probe_latents(self) -> Tensor:
        """One start draw per example for the validation probe, leaving every stream as it was.

        The draw uses ``generator`` (or the global generator) like any other, then restores its
        state, so ``validate=True`` does not shift the chains' randomness: the same seed gives
        the same samples with and without validation.
        """
        generator = self.generator
        state = generator.get_state() if generator is not None else None
        # The global CPU stream (and the device's, for CUDA), which the prior may draw from.
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            z0 = self._start_sample(self.batch_size)
        if generator is not None and state is not None:
            generator.set_state(state)
        return z0

    def _blocks_of(self, dists: Prior) -> dict[str, Distribution] | None:
        if dists is None:
            return None
        return dict(dists) if isinstance(dists, Mapping) else {"z": dists}

    def _distribution_blocks(self, dists: Prior, argument: str) -> dict[str, Distribution]:
        if self.layout.is_dict:
            if not isinstance(dists, Mapping) or set(dists) != set(self.layout.names):
                raise ArgumentTypeError(
                    f"for dict latents, {argument} must be None or a dict of Distributions with "
                    f"keys {self.layout.names}; received {dists!r}."
                )
            blocks = dict(dists)
        else:
            if not isinstance(dists, Distribution):
                raise ArgumentTypeError(
                    f"{argument} must be a torch.distributions.Distribution over the latent of "
                    f"shape {self.layout.describe()}, or None; received {dists!r}."
                )
            blocks = {"z": dists}
        for name, dist in blocks.items():
            if not isinstance(dist, Distribution):
                raise ArgumentTypeError(
                    f"{argument}[{name!r}] must be a Distribution; received {dist!r}."
                )
        return blocks

    def _check_shapes(self, dists: Prior, argument: str) -> Prior:
        """Each block's distribution covers one example's latent, or one per example."""
        if dists is None:
            return None
        for name, dist in self._distribution_blocks(dists, argument).items():
            shape = tuple(dist.batch_shape + dist.event_shape)
            latent = tuple(self.layout.shapes[name])
            if shape not in (latent, (self.batch_size, *latent)):
                raise ArgumentError(
                    f"{argument} for {name!r} has batch_shape + event_shape {shape}; expected "
                    f"the per-example latent shape {latent} (shared by all examples; wrap it in "
                    "torch.distributions.Independent or expand it) or "
                    f"{(self.batch_size, *latent)} (one distribution per example, e.g. "
                    f"Independent(Normal(loc, scale), {len(latent)}) with loc of shape "
                    f"{(self.batch_size, *latent)})."
                )
        return dists

    def _check_prior(self, prior: Prior) -> Prior:
        prior = self._check_shapes(prior, "prior")
        # The support decides the chain's coordinates; refuse unsupported ones here.
        LatentTransform(self.layout, self._blocks_of(prior))
        return prior

    def _check_init(self, init: Init) -> Init:
        return self._check_shapes(init, "init")

    def _copy_with(self, **changes: Any) -> ShortRunPosterior:
        """A shallow copy with some attributes replaced (no validation, no probe)."""
        new = object.__new__(ShortRunPosterior)
        new.__dict__.update(self.__dict__, **changes)
        return new

    def _replace(self, table: Tensor, trace: TuningTrace | None) -> ShortRunPosterior:
        return self._copy_with(_table=table.detach().to(torch.float64).cpu(), trace=trace)

    def _user_log_joint(
        self, num_samples: int, *, x: Observations | None = None
    ) -> Callable[[Tensor], Tensor]:
        """``log_joint`` on flat latents in the user's (constrained) coordinates."""
        x = _repeat(self.x if x is None else x, num_samples)
        unflatten = self.layout.unflatten
        return lambda z: self.log_joint(x, unflatten(z))

    def _flat_log_joint(self, num_samples: int) -> Callable[[Tensor], Tensor]:
        r"""The chain's target on flat latents: $\log p(x, T(u)) + \log|\det T'(u)|$."""
        log_joint = self._user_log_joint(num_samples)
        transform = self._transform
        if transform.is_identity:
            return log_joint
        return lambda u: log_joint(transform.forward(u)) + transform.log_abs_det(u)

    def _step_table(self, table: Tensor | None = None) -> Tensor:
        table = self._table if table is None else table
        table = table.to(dtype=self.dtype, device=self.device)
        return expand_step_size(table, self.num_steps, self.layout)

    # -- public properties ----------------------------------------------------------------

    @property
    def step_size(self) -> float | Tensor | dict[str, object]:
        """The step size: a float, a ``(K,)`` tensor per step, or a dict per latent block."""
        return public_step_size(self._table, self.layout)

    @property
    def latent_shape(self) -> torch.Size | dict[str, torch.Size]:
        """Per-example latent shape (a dict of shapes for multi-block latents)."""
        return dict(self.layout.shapes) if self.layout.is_dict else self.layout.shapes["z"]

    @property
    def latent_dim(self) -> int:
        """D, the total number of latent coordinates per example."""
        return self.layout.dim

    def __repr__(self) -> str:
        return (
            f"ShortRunPosterior(batch_size={self.batch_size}, latent_shape="
            f"{self.layout.describe()}, num_steps={self.num_steps}, "
            f"step_size={self.step_size!r})"
        )

    # -- randomness -----------------------------------------------------------------------

    def _randn(self, *shape: int) -> Tensor:
        generator = self.generator
        device = generator.device if generator is not None else self.device
        out = torch.randn(*shape, generator=generator, device=device, dtype=self.dtype)
        return out.to(self.device)

    def _start(self) -> dict[str, Distribution] | None:
        """The start distribution per block: ``init`` if given, else the prior."""
        return self._blocks_of(self.init if self.init is not None else self.prior)

    def _is_per_example(self, dist: Distribution, name: str) -> bool:
        """Whether ``dist`` holds one distribution per example (batch shape led by B)."""
        return tuple(dist.batch_shape + dist.event_shape) != tuple(self.layout.shapes[name])

    def _start_sample(self, count: int) -> Tensor:
        """``count`` flat start draws $z_0$ (user coordinates), row i for example i % B."""
        start = self._start()
        if start is None:
            return self._randn(count, self.layout.dim)
        seed = None
        if self.generator is not None:
            # torch.distributions cannot take a generator: derive a seed from it instead.
            draw = torch.randint(
                2**62, (1,), generator=self.generator, device=self.generator.device
            )
            seed = int(draw)
        devices = [self.device] if self.device.type == "cuda" else []
        blocks = {}
        with torch.random.fork_rng(devices=devices, enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            for name in self.layout.names:
                shape = self.layout.shapes[name]
                if self._is_per_example(start[name], name):
                    # (S, B, *shape) -> (S·B, *shape): row s·B + b is example b.
                    draw = start[name].sample((count // self.batch_size,))
                else:
                    draw = start[name].sample((count,))
                blocks[name] = draw.reshape(count, *shape)
        z = blocks if self.layout.is_dict else blocks["z"]
        return self.layout.flatten(z).to(dtype=self.dtype, device=self.device)

    def _log_prob(self, dists: dict[str, Distribution] | None, z: Tensor) -> Tensor:
        if dists is None:
            return standard_normal_log_prob(z)
        count = z.shape[0]
        blocks = self.layout.unflatten(z)
        blocks = blocks if isinstance(blocks, dict) else {"z": blocks}
        total = torch.zeros(count, dtype=z.dtype, device=z.device)
        for name in self.layout.names:
            block = blocks[name]
            if self._is_per_example(dists[name], name):
                block = block.reshape(count // self.batch_size, self.batch_size, *block.shape[1:])
            total = total + dists[name].log_prob(block).reshape(count, -1).sum(-1)
        return total

    def prior_log_prob(self, z: Tensor) -> Tensor:
        r"""Log density of the model's prior $\log p(z)$ (standard normal without ``prior``).

        Arguments:
            z: Flat latents in the user's (constrained) coordinates, with shape ``(N, D)``;
                for a prior with one distribution per example, $N = S \cdot B$ and row $i$
                belongs to example $i \bmod B$.

        Returns:
            $\log p(z)$ with shape ``(N,)``.

        Examples:
            >>> post = short_run(lambda x, z: -0.5 * (z - x).square().sum(-1),
            ...                  torch.zeros(3, 2), latent_shape=(2,))
            >>> post.prior_log_prob(torch.zeros(5, 2))
            tensor([-1.8379, -1.8379, -1.8379, -1.8379, -1.8379])
        """
        return self._log_prob(self._blocks_of(self.prior), z)

    def init_log_prob(self, z0: Tensor) -> Tensor:
        r"""Log density of the start distribution $\log q_0(z_0 \mid x)$ (``init``, else prior).

        Arguments:
            z0: Flat start latents in the user's (constrained) coordinates, with shape
                ``(S·B, D)``; row $i$ belongs to example $i \bmod B$ (as in `draw_noise`).

        Returns:
            $\log q_0(z_0 \mid x)$ with shape ``(S·B,)``.

        Examples:
            >>> from torch.distributions import Independent, Normal
            >>> loc = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])  # (B, D)
            >>> post = short_run(lambda x, z: -0.5 * (z - x).square().sum(-1),
            ...                  torch.zeros(3, 2), latent_shape=(2,),
            ...                  init=Independent(Normal(loc, 1.0), 1))
            >>> post.init_log_prob(loc.repeat(2, 1))  # S = 2 chains per example, at the means
            tensor([-1.8379, -1.8379, -1.8379, -1.8379, -1.8379, -1.8379])
        """
        if self.init is None:
            return self.prior_log_prob(z0)
        return self._log_prob(self._blocks_of(self.init), z0)

    def _chain_log_prob(self, u0: Tensor) -> Tensor:
        r"""The start density in the chain's coordinates, $\log q_0(T(u_0)) + \log|T'(u_0)|$."""
        if self._transform.is_identity:
            return self.init_log_prob(u0)
        transform = self._transform
        return self.init_log_prob(transform.forward(u0)) + transform.log_abs_det(u0)

    def draw_noise(self, num_samples: int = 1) -> ChainNoise:
        r"""Draw $z_0 \sim p(z)$ and $\epsilon$ for ``num_samples`` chains per example.

        Arguments:
            num_samples: S, chains per example.

        Returns:
            A `ChainNoise` with ``z0`` of shape ``(S·B, D)`` and ``noise`` of shape
            ``(K, S·B, D)``; chain ``i`` belongs to example ``i % B``.

        Examples:
            >>> post = short_run(lambda x, z: -0.5 * (z - x).square().sum(-1),
            ...                  torch.zeros(3, 2), latent_shape=(2,), num_steps=4)
            >>> chain = post.draw_noise(num_samples=5)
            >>> chain.z0.shape, chain.noise.shape
            (torch.Size([15, 2]), torch.Size([4, 15, 2]))
        """
        num_samples = check_int("num_samples", num_samples, 1, hint=_NUM_SAMPLES_HINT)
        count = num_samples * self.batch_size
        u0 = self._transform.inverse(self._start_sample(count))
        return ChainNoise(u0, self._randn(self.num_steps, count, self.layout.dim))

    # -- sampling -------------------------------------------------------------------------

    def run_chain(
        self, chain: ChainNoise, *, differentiable: bool = False, table: Tensor | None = None
    ) -> Tensor:
        r"""Run the K-step map $z_K = F(z_0, \epsilon)$ on given noise.

        Arguments:
            chain: The noise, from `draw_noise` (or built by hand with the same shapes).
            differentiable: Keep the graph, so that $z_K$ can be differentiated with
                respect to model parameters and the step size.
            table: An alternative step-size table (internal use by tuning).

        Returns:
            Flat $z_K$ with shape ``(S·B, D)``, in the user's coordinates: $T(u_K)$ for
            blocks with a constrained prior.

        Raises:
            ChainDivergenceError: If some $z_k$ is non-finite; the message names the
                first such step.
        """
        num_samples = chain.z0.shape[0] // self.batch_size
        log_joint = self._flat_log_joint(num_samples)
        step_sizes = self._step_table(table)
        # The monitor folds "log p finite, |u| bounded" into one device flag per chain, read
        # once at the end (no sync per step); a bad chain is replayed to say where it went wrong.
        monitor = ChainMonitor(log_joint)
        score = autograd_score(monitor, create_graph=differentiable)
        u_k = rollout(score, chain.z0, chain.noise, step_sizes)
        if not monitor.healthy(u_k):
            self._raise_divergence(log_joint, chain, step_sizes.detach())
        return self._transform.forward(u_k)

    def _raise_divergence(
        self, log_joint: Callable[[Tensor], Tensor], chain: ChainNoise, step_sizes: Tensor
    ) -> None:
        # torch.func's grad, not autograd: this may run inside a transform (forward-mode tuning).
        score = functional_score(log_joint)

        def step(k: int, z: Tensor) -> Tensor:
            return langevin_step(score, z.detach(), chain.noise[k], step_sizes[k]).detach()

        first, count, what = find_divergence(step, chain.z0, self.num_steps, log_joint)
        raise ChainDivergenceError(
            f"the short-run chain diverged: {what} at step {first} of "
            f"{self.num_steps} in {count} of {chain.z0.shape[0]} chains, with step sizes up to "
            f"{float(step_sizes.max()):.4g}. "
            "Use a smaller step size (stable steps satisfy s < 2 / lambda_max, lambda_max the "
            "largest curvature of -log p), or call tune_step_size(), or check that "
            "log_joint's gradient is bounded and that the chain cannot leave the support of "
            "p(x, z)."
        )

    def _structured(self, z_flat: Tensor, sample_shape: torch.Size) -> Latent:
        z = z_flat.reshape(*sample_shape, self.batch_size, self.layout.dim)
        return self.layout.unflatten(z)

    def sample(self, sample_shape: Sequence[int] = torch.Size()) -> Latent:
        r"""Draw $z_K \sim q_s(z \mid x)$, without gradients.

        Arguments:
            sample_shape: Leading shape S of independent draws per example.

        Returns:
            $z_K$ with shape ``(*sample_shape, B, *latent_shape)``, or a dict of such
            tensors for dict latents.

        Examples:
            >>> post = short_run(lambda x, z: -0.5 * (z - x).square().sum(-1),
            ...                  torch.zeros(3, 2), latent_shape=(2,), num_steps=10,
            ...                  generator=torch.Generator().manual_seed(0))
            >>> post.sample().shape, post.sample((4,)).shape
            (torch.Size([3, 2]), torch.Size([4, 3, 2]))
        """
        sample_shape = check_sample_shape(sample_shape)
        chain = self.draw_noise(max(math.prod(sample_shape), 1))
        if self.compile_mode is not None:
            return self._structured(self._run_compiled(chain), sample_shape)
        return self._structured(self.run_chain(chain).detach(), sample_shape)

    def _run_compiled(self, chain: ChainNoise) -> Tensor:
        """`run_chain` without gradients, each step one ``torch.compile``-d function."""
        transform = self._transform
        layout_key = (self.layout.describe(), "identity" if transform.is_identity else transform)
        step = step_fn(
            self.log_joint,
            self.layout.unflatten,
            transform,
            layout_key=layout_key,
            mode=cast(str, self.compile_mode),
        )
        num_samples = chain.z0.shape[0] // self.batch_size
        x = _repeat(self.x, num_samples)
        step_sizes = self._step_table().detach()
        graphs = self.compile_mode == "reduce-overhead" and self.device.type == "cuda"
        u_k, healthy = chain.z0.detach(), None
        with torch.no_grad():
            for k in range(self.num_steps):
                if graphs:  # CUDA graphs: each step is a new replay of the recorded graphs
                    torch.compiler.cudagraph_mark_step_begin()
                u_k, ok = step(x, u_k, chain.noise[k], step_sizes[k])
                healthy = ok.clone() if healthy is None else healthy & ok
                if graphs:  # a replay overwrites its outputs: keep z_k out of the graphs' pool
                    u_k = u_k.clone()
        log_joint = self._flat_log_joint(num_samples)
        monitor = ChainMonitor(log_joint)
        monitor.flag = healthy
        if not monitor.healthy(u_k):
            self._raise_divergence(log_joint, chain, step_sizes)
        return self._transform.forward(u_k).detach()

    def rsample(self, sample_shape: Sequence[int] = torch.Size()) -> Latent:
        r"""Draw $z_K$ with the graph kept (reparameterised through the K steps).

        Gradients flow to model parameters inside ``log_joint`` and through every step. This
        costs a second-order graph; use `sample` inside training steps (Algorithm 1
        detaches $z_K$).

        Arguments:
            sample_shape: Leading shape S of independent draws per example.

        Returns:
            Same as `sample`, differentiable.

        Examples:
            >>> mu = torch.zeros(2, requires_grad=True)
            >>> post = short_run(lambda x, z: -0.5 * (z - mu).square().sum(-1),
            ...                  torch.zeros(1, 2), latent_shape=(2,), num_steps=3)
            >>> post.rsample().sum().backward()
            >>> mu.grad.shape
            torch.Size([2])
        """
        sample_shape = check_sample_shape(sample_shape)
        chain = self.draw_noise(max(math.prod(sample_shape), 1))
        return self._structured(self.run_chain(chain, differentiable=True), sample_shape)

    # -- entropy, ELBO --------------------------------------------------------------------

    def _terms(
        self, chain: ChainNoise, table: Tensor | None, estimator: EntropyEstimator
    ) -> tuple[Tensor, Tensor]:
        """Per-chain ``(log p(x, z_K), entropy estimate)``, each with shape ``(S·B,)``."""
        start = self._start() or {}
        if OBJECTIVES[estimator.objective].pools_start_entropy and any(
            self._is_per_example(dist, name) for name, dist in start.items()
        ):
            raise ArgumentError(
                f"objective={estimator.objective!r} pools the start distribution's entropy over "
                "all examples, so it needs a start distribution shared by all examples; this "
                "one has one per example. Use 'conditional', 'linearized' or 'semi_implicit'."
            )
        num_samples = chain.z0.shape[0] // self.batch_size
        log_joint = self._flat_log_joint(num_samples)
        step_sizes = self._step_table(table)
        z_k, entropy = estimator(
            log_joint,
            chain.z0,
            chain.noise,
            step_sizes,
            self._chain_log_prob,
            num_examples=self.batch_size,  # chain i is example i % B (see draw_noise)
            generator=self.generator,
        )
        log_p = log_joint(z_k)
        # The chain's states live inside torch.func transforms here, so only its end is checked
        # (z_K and log p(x, z_K), both at hand); `run_chain` checks every state.
        ends = torch.isfinite(log_p).all() & (z_k.abs().amax() <= MAX_ABS_LATENT)
        if not bool(ends):
            self._raise_divergence(log_joint, chain, step_sizes.detach())
        if not bool(torch.isfinite(entropy).all()):
            raise ChainDivergenceError(
                "the log-determinant of the short-run map is not finite: the map is singular "
                "at this step size (s·curvature hit 1). Use a smaller step size."
            )
        if self._transform.is_identity:
            return log_p, entropy
        # z_K = T(u_K): H(z_K) = H(u_K) + E log|T'(u_K)|, and log p(x, z_K) drops that term.
        log_det = self._transform.log_abs_det(z_k)
        return log_p - log_det, entropy + log_det

    def _per_example(self, values: Tensor) -> Tensor:
        return values.reshape(-1, self.batch_size).mean(0)

    def entropy(
        self,
        *,
        num_samples: int = 1,
        method: LogDetMethod = "exact",
        mode: JacobianMode = "reverse",
        chunk_size: int | None = None,
    ) -> Tensor:
        r"""Per-example estimate of the entropy of $z_K$ given the injected noise.

        $$
        \hat H_b = \frac1S \sum_{i=1}^S \Big[-\log p(z_0^{(i)})
        + \log\Big|\det \frac{\partial F}{\partial z_0}(z_0^{(i)}, \epsilon^{(i)})\Big|\Big]
        $$

        an unbiased estimate of $H(z_K \mid \epsilon) \le H(z_K)$, with the exact
        Jacobian from ``torch.func`` (see `shortinfer.entropy`).

        Arguments:
            num_samples: S, chains per example.
            method: Log-determinant estimator, see `shortinfer.entropy.estimate_log_det`.
            mode: ``"reverse"`` (vjp rows) or ``"forward"`` (jvp columns) for exact Jacobians.
            chunk_size: How many Jacobian rows/columns to push at once (``None``: all D).

        Returns:
            The estimate, with shape ``(B,)``.

        Examples:
            >>> def log_joint(x, z):
            ...     return -0.5 * z.square().sum(-1) - 0.5 * (x - z).square().sum(-1)
            >>> post = short_run(
            ...     log_joint, torch.zeros(2, 3), latent_shape=(3,), num_steps=5, step_size=0.1
            ... )
            >>> post.entropy().shape
            torch.Size([2])
        """
        estimator = EntropyEstimator("conditional", method, mode, chunk_size)
        _, entropy = self._terms(self.draw_noise(num_samples), None, estimator)
        return self._per_example(entropy)

    def elbo(
        self,
        *,
        num_samples: int = 1,
        objective: ObjectiveName | None = None,
        entropy_method: LogDetMethod = "exact",
        mode: JacobianMode = "reverse",
        chunk_size: int | None = None,
        num_mixture: int = DEFAULT_NUM_MIXTURE,
        estimator: EntropyEstimator | None = None,
        differentiable: bool = False,
    ) -> Tensor:
        r"""Per-example ELBO estimate under the short-run posterior.

        $$
        \mathrm{ELBO}_b = \mathbb{E}_q[\log p(x_b, z_K)] + \hat H_b
        $$

        with $\hat H_b$ the entropy estimate named by ``objective``
        (`shortinfer.objectives`). Whether it bounds $\log p(x_b)$ depends on that estimate:

        - ``"conditional"`` (the paper's), ``"epi"`` and ``"semi_implicit"`` estimate a
          lower bound on $H(z_K)$, so the ELBO is a **lower bound** on $\log p(x)$ in
          expectation (``"conditional"`` is looser by $I(z_K; \epsilon)$, which grows with
          $s$);
        - ``"linearized"`` and ``"sandwich"`` are **not bounds**: they estimate $H(z_K)$
          itself (exactly, in expectation, for affine chains), so the ELBO estimates
          $\log p(x) - \mathrm{KL}(q_s \| p(z \mid x))$ and may exceed $\log p(x)$.

        Its negative mean over examples is the step-size objective $J(s)$ (equation (20)
        for ``"conditional"``).

        Arguments:
            num_samples: S, chains per example.
            objective: The entropy estimate, see `shortinfer.objectives.OBJECTIVES`. ``None``
                (default): the one this posterior's step size was tuned with
                (``trace.objective``), or the paper's ``"conditional"`` lower bound for an
                untuned posterior.
            entropy_method: Log-determinant estimator, see `entropy`.
            mode: See `entropy`.
            chunk_size: See `entropy`.
            num_mixture: For ``objective="semi_implicit"`` or ``"sandwich"``: $M$, the most
                other chains of an example in each chain's mixture, used as
                $\min(M, S - 1)$ (default `shortinfer.objectives.DEFAULT_NUM_MIXTURE`). Larger
                $M$ tightens the semi-implicit lower bound (in expectation) at
                $O(S M)$ kernel evaluations per example; other objectives ignore it.
            estimator: All of the above bound once (`shortinfer.objectives.EntropyEstimator`);
                it replaces ``objective``, ``entropy_method``, ``mode``, ``chunk_size`` and
                ``num_mixture``.
            differentiable: ``False`` (default): evaluate under ``torch.no_grad()``, so no
                graph is kept for the model's parameters (or any other tensor ``log_joint``
                captures). The chain's own gradients and the exact Jacobian still run:
                ``torch.func`` transforms ignore an outer ``no_grad``. ``True``: keep that
                graph, so the result can be back-propagated to the parameters. The graph
                holds every step's activations, times $D$ Jacobian rows with
                ``entropy_method="exact"``, so it costs far more memory than the value.

        Returns:
            The ELBO estimate, with shape ``(B,)``; it requires grad only with
            ``differentiable=True``.

        Raises:
            ValueError: For an invalid option (`shortinfer.objectives.EntropyEstimator`), both
                ``estimator`` and ``objective``, or ``num_samples < 2`` with a semi-implicit
                objective.

        Examples:
            >>> def log_joint(x, z):
            ...     return -0.5 * z.square().sum(-1) - 0.5 * (x - z).square().sum(-1)
            >>> post = short_run(
            ...     log_joint, torch.zeros(2, 3), latent_shape=(3,), num_steps=5, step_size=0.1
            ... )
            >>> post.elbo(num_samples=4).shape
            torch.Size([2])
        """
        if estimator is None:
            name: str = objective or (self.trace.objective if self.trace else "conditional")
            estimator = EntropyEstimator(name, entropy_method, mode, chunk_size, num_mixture)
        elif objective is not None:
            raise ArgumentError(
                f"pass the objective either as estimator= or as objective=, not both; received "
                f"estimator={estimator!r} and objective={objective!r}."
            )
        with torch.set_grad_enabled(differentiable and torch.is_grad_enabled()):
            log_p, entropy = self._terms(self.draw_noise(num_samples), None, estimator)
            elbo = self._per_example(log_p + entropy)
        if not bool(torch.isfinite(elbo).all()):
            raise ChainDivergenceError(
                f"elbo() is not finite: {elbo.detach().cpu().tolist()} (log p(x, z_K) and the "
                "entropy were each finite, but their sum overflowed). Check the scale of "
                "log_joint, or use float64."
            )
        return elbo

    def step_size_objective(
        self,
        chain: ChainNoise,
        table: Tensor,
        *,
        objective: ObjectiveName = "conditional",
        entropy_method: LogDetMethod = "exact",
        mode: JacobianMode = "reverse",
        chunk_size: int | None = None,
        num_mixture: int = DEFAULT_NUM_MIXTURE,
        estimator: EntropyEstimator | None = None,
    ) -> Tensor:
        r"""The step-size objective $J(s) = -\frac1B\sum_b \mathrm{ELBO}_b$ on fixed noise.

        Arguments:
            chain: Noise from `draw_noise`, shared by every evaluation.
            table: The step-size table, shape ``(K or 1, N or 1)``; may require grad.
            objective: See `elbo` (here the default is the paper's ``"conditional"``).
            entropy_method: See `elbo`.
            mode: See `entropy`.
            chunk_size: See `entropy`.
            num_mixture: See `elbo`.
            estimator: The five options above bound once
                (`shortinfer.objectives.EntropyEstimator`); it replaces them.

        Returns:
            A scalar tensor, differentiable with respect to ``table``.

        Raises:
            ValueError: As `elbo`.

        Examples:
            >>> post = short_run(lambda x, z: -0.5 * z.square().sum(-1), torch.zeros(2, 1),
            ...                  latent_shape=(3,), num_steps=5)
            >>> post.step_size_objective(post.draw_noise(), torch.tensor([[0.1]])).shape
            torch.Size([])
        """
        if estimator is None:
            estimator = EntropyEstimator(objective, entropy_method, mode, chunk_size, num_mixture)
        log_p, entropy = self._terms(chain, table, estimator)
        return -(log_p + entropy).mean()

    # -- tuning ---------------------------------------------------------------------------

    def with_step_size(self, step_size: StepSize) -> ShortRunPosterior:
        """A copy of this posterior with another step size (validated as in `short_run`).

        Examples:
            >>> post = short_run(lambda x, z: -0.5 * (z - x).square().sum(-1),
            ...                  torch.zeros(1, 2), latent_shape=(2,))
            >>> post.with_step_size(0.1).step_size
            0.1
        """
        return self._replace(canonical_step_size(step_size, self.num_steps, self.layout), None)

    def tune_step_size(
        self,
        method: Literal["bracket", "grid", "gradient"] | None = None,
        *,
        grid: Sequence[float] | Tensor | None = None,
        num_samples: int | None = None,
        num_examples: int | None = None,
        num_iterations: int = 50,
        learning_rate: float = 0.05,
        objective: ObjectiveName = DEFAULT_OBJECTIVE,
        entropy_method: LogDetMethod = "exact",
        mode: JacobianMode = "reverse",
        chunk_size: int | None = None,
        all_reduce: Callable[[Tensor], Tensor] | None = None,
        num_mixture: int = DEFAULT_NUM_MIXTURE,
        check_stability: bool = True,
        refine: int | None = None,
        estimator: EntropyEstimator | None = None,
        progress: bool | None = None,
    ) -> ShortRunPosterior:
        r"""Return a posterior whose step size minimises the objective $J(s)$.

        $$
        J(s) = \frac1B \sum_b \mathbb{E}\big[\log q_s(z_K \mid x_b)
        - \log p(x_b, z_K)\big] = \frac1B \sum_b \big[\mathrm{KL}(q_s \| p(z \mid x_b))
        - \log p(x_b)\big]
        $$

        with $-\log q_s$ replaced by the entropy estimate ``objective``, estimated on one
        draw of $(z_0, \epsilon)$ per chain shared by all candidates (common random numbers).
        The default, ``"linearized"`` (`shortinfer.tuning.DEFAULT_OBJECTIVE`), is the one
        our study supports; the paper's equation (20) is ``objective="conditional"``, whose
        minimiser is biased towards small step sizes (``docs/objectives.md``).

        - ``method="bracket"`` (the default without ``grid``) walks in $\log s$ from the
          current step size by factors of $\sqrt{10}$ until the best point has worse
          neighbours on both sides, then takes ``refine`` interpolation steps
          (`shortinfer.tuning.bracket_init`): about 7-10 evaluations, 3 + ``refine`` from a
          warm start. It stays within $10^{-6} \le s \le 10$.
        - ``method="grid"`` (the default with ``grid``) evaluates a scalar $s$ at each grid
          point (`shortinfer.tuning.DEFAULT_GRID`: $10^{-5}$ to 1, four per decade; the
          paper's grid, read in the authors' $\delta$ units, is
          `shortinfer.tuning.PAPER_GRID`), then ``refine`` golden-section steps between the
          best point's neighbours.
        - ``method="gradient"`` runs Adam on $\log s$, differentiating through the K
          steps and the log-determinant. It keeps the current step size's shape: scalar, per
          step ``(K,)``, or per block. The derivative is taken in forward or reverse mode by
          `shortinfer.tuning.default_derivative`.
        - Every candidate's chain is first run without a Jacobian; a diverging candidate
          scores $+\infty$ at that cost. With ``entropy_method="stochastic"`` (or
          ``"auto"``) every candidate sees the same Hutchinson probes.
        - A best candidate at an edge of the grid or the search's bounds raises a
          `GridEdgeWarning` that says how to widen it.
        - ``check_stability=True`` guards against step sizes that look fine on the tuning
          chains but diverge on others: the chosen $s$ is rerun on
          ``STABILITY_CHAINS_FACTOR`` times as many chains (at least
          ``STABILITY_MIN_CHAINS``), and refused if any diverges or if on the median chain
          the K steps would amplify its stiffest direction more than
          `shortinfer.tuning.STABILITY_GROWTH`-fold,
          $\prod_k \max(1, |1 - s_k\hat\lambda_{\max}|) > G$
          (`shortinfer.tuning.step_amplification`; for one step size,
          $s\,\hat\lambda_{\max} >$ `shortinfer.tuning.stable_step_bound` ``(K)``), with
          $\hat\lambda_{\max}$ the largest curvature of $-\log p$ at their end points
          (`shortinfer.langevin.max_curvature`). A refused candidate gives way to the
          next best; a refused gradient result is halved until it passes. Refusals are
          listed in ``trace.rejected``.

        **Cost.** The objective's Jacobian costs about $D$ backward passes through the chain
        per chain, while its signal grows with $D$ faster than its noise, so the default
        tunes on $C = \operatorname{clip}(\lceil 320 / D \rceil, 8, 64)$ chains in all
        (``TUNING_COORDINATES``, ``TUNING_CHAINS``): the first $\min(B, C)$ examples with
        $\lceil C / \min(B, C) \rceil$ chains each (``docs/performance.md`` has the
        measured cost). A ``log_joint`` that needs the whole batch (it closes over a tensor
        with the batch dimension) is tuned on all of it.

        Arguments:
            method: ``"bracket"``, ``"grid"``, ``"gradient"``, or ``None`` (``"grid"`` when a
                ``grid`` is given, else ``"bracket"``).
            grid: Candidate step sizes for the grid (positive floats).
            num_samples: S, chains per example in the objective (``None``: enough for $C$
                chains in all, see **Cost**; fewer chains make the objective noisier).
            num_examples: Tune on the first this many examples (``None``: $\min(B, C)$ when
                the start distribution is shared by all examples, else all of them).
            num_iterations: Gradient iterations.
            learning_rate: Adam's learning rate on $\log s$.
            objective: The entropy estimate that defines $J$, see `elbo`.
            entropy_method: Log-determinant estimator, see `elbo`.
            mode: Jacobian mode, see `entropy`.
            chunk_size: See `entropy`.
            all_reduce: For data-parallel training: maps a local tensor to its mean over
                processes (e.g. ``torch.distributed.all_reduce`` then divide by the world
                size), so that every process selects the same step size.
            num_mixture: The semi-implicit mixture size for ``objective="semi_implicit"`` or
                ``"sandwich"``, see `elbo`.
            check_stability: Run the stability check described above.
            refine: Refinement steps after the search, each one evaluation (``None``: 4
                interpolation steps for ``"bracket"``, 6 golden-section steps for ``"grid"``; 0:
                none). The refined points join the trace.
            estimator: ``objective``, ``entropy_method``, ``mode``, ``chunk_size`` and
                ``num_mixture`` bound once (`shortinfer.objectives.EntropyEstimator`); it
                replaces them.
            progress: Print one line per evaluation to standard error (``None``: one line per
                ``PROGRESS_AFTER_SECONDS`` of search, none for a faster search).

        Returns:
            A new `ShortRunPosterior` with the tuned step size; its ``trace`` is a
            `TuningTrace` of the search, and `elbo` then uses ``objective`` by default.
            ``self`` is unchanged.

        Raises:
            ValueError: For an unknown method, a bad grid or option.
            FloatingPointError: If every candidate diverges or is refused as unstable.

        Examples:
            >>> def log_joint(x, z):
            ...     return -0.5 * z.square().sum(-1) - 2 * (x - z).square().sum(-1)
            >>> post = short_run(log_joint, torch.zeros(4, 2), latent_shape=(2,), num_steps=10,
            ...                  step_size=0.01, generator=torch.Generator().manual_seed(0))
            >>> tuned = post.tune_step_size()
            >>> 0.01 < tuned.step_size < 0.1, tuned.trace.method, tuned.trace.objective
            (True, 'bracket', 'linearized')
            >>> tuned = post.tune_step_size(grid=[0.01, 0.05, 0.1, 0.2, 0.4])
            >>> tuned.trace.step_sizes.shape  # 5 grid points, 7 evaluations of the refinement
            torch.Size([12])
        """
        if estimator is None:
            estimator = EntropyEstimator(objective, entropy_method, mode, chunk_size, num_mixture)
        if method is None:
            method = "grid" if grid is not None else "bracket"
        check_choice("method", method, ("bracket", "grid", "gradient"))
        if method == "gradient":
            check_int("num_iterations", num_iterations, 1, hint="Try num_iterations=50.")
        if refine is not None:
            check_int("refine", refine, 0, hint="Pass 0 for no refinement.")
        candidates = _check_grid(grid).sort().values if method == "grid" else None
        chains = min(
            max(-(-TUNING_COORDINATES // self.latent_dim), TUNING_CHAINS[0]), TUNING_CHAINS[1]
        )
        target = self._tuning_examples(num_examples, chains)
        if num_samples is None:
            num_samples = -(-chains // target.batch_size)
        check_int("num_samples", num_samples, 1, hint=_NUM_SAMPLES_HINT)
        search = _Search(target, estimator, num_samples, all_reduce, progress)
        if method == "gradient":
            table, trace = search.gradient(self._table, num_iterations, learning_rate)
            if check_stability:
                rejected: list[tuple[float, str]] = []
                table = target._stabilized(table, num_samples, rejected)
                trace = trace._replace(rejected=tuple(rejected))
            return self._replace(table, trace)
        if method == "grid":
            assert candidates is not None
            found = search.grid(candidates, 6 if refine is None else refine)
        else:
            start = float(torch.exp(torch.log(self._table).mean()))  # geometric mean
            found = search.bracket(start, 4 if refine is None else refine)
        step_sizes, objectives, edge = found
        rejected = []
        chosen = step_sizes[int(torch.argmin(objectives))].reshape(1, 1)
        if check_stability:
            chosen = target._most_stable(step_sizes, objectives, num_samples, rejected)
        trace = TuningTrace(
            method, step_sizes, objectives, estimator.objective, tuple(rejected), search.dropped
        )
        self._warn_edge(edge, float(chosen), rejected, step_sizes)
        return self._replace(chosen, trace)

    def _tuning_examples(self, num_examples: int | None, chains: int) -> ShortRunPosterior:
        """This posterior on its first ``num_examples`` examples (see `tune_step_size`)."""
        start = self._start() or {}
        shared = not any(self._is_per_example(dist, name) for name, dist in start.items())
        if num_examples is None:
            if not shared:
                return self
            num_examples = min(self.batch_size, chains)
        check_int("num_examples", num_examples, 1, what=" or None")
        if num_examples >= self.batch_size:
            return self
        if not shared:
            raise ArgumentError(
                f"num_examples={num_examples} tunes on a subset of the batch, which needs a "
                "start distribution shared by all examples; this one has one per example. "
                "Pass num_examples=None to tune on all of them."
            )
        sub = self._copy_with(x=_first(self.x, num_examples), batch_size=num_examples)
        try:
            probe_log_joint(sub._user_log_joint(1), sub._probe_latents(), num_examples)
        except LogJointError:
            # log_joint needs the whole batch (it closes over a batch-sized tensor).
            return self
        return sub

    def _most_stable(
        self,
        step_sizes: Tensor,
        objectives: Tensor,
        num_samples: int,
        rejected: list[tuple[float, str]],
    ) -> Tensor:
        """The best candidate that passes `_instability`, else the smallest one halved."""
        finite = [i for i in torch.argsort(objectives).tolist() if math.isfinite(objectives[i])]
        for index in finite:
            reason = self._instability(step_sizes[index], num_samples)
            if reason is None:
                return step_sizes[index].reshape(1, 1)
            rejected.append((float(step_sizes[index]), reason))
        smallest = step_sizes[min(finite)].reshape(1, 1)
        chosen = self._stabilized(smallest * 0.5, num_samples, rejected)
        warnings.warn(
            f"the stability check refused every finite candidate ({rejected}); using "
            f"s = {float(chosen):.4g}, below them. Pass a grid of smaller step sizes.",
            GridEdgeWarning,
            stacklevel=3,
        )
        return chosen

    def _stabilized(
        self, table: Tensor, num_samples: int, rejected: list[tuple[float, str]]
    ) -> Tensor:
        """``table``, halved until it passes `_instability` (refusals appended to ``rejected``)."""
        for _ in range(12):
            reason = self._instability(table, num_samples)
            if reason is None:
                return table
            rejected.append((float(table.max()), reason))
            table = table * 0.5
        raise FloatingPointError(
            f"no stable step size found after halving 12 times: {rejected}. Check that "
            "log_joint's gradient is bounded, or start from a much smaller step size."
        )

    def _instability(self, table: Tensor, num_samples: int) -> str | None:
        """Why step-size ``table`` is unsafe on many fresh chains, or ``None`` if it is safe."""
        per_example = max(
            STABILITY_CHAINS_FACTOR * num_samples, -(-STABILITY_MIN_CHAINS // self.batch_size)
        )
        table = table.reshape(1, 1) if table.dim() < 2 else table
        chain = self.draw_noise(per_example)
        step_sizes = self._step_table(table)
        count = chain.z0.shape[0]
        try:
            z_k = self.run_chain(chain, table=table)
        except FloatingPointError as err:
            return f"diverged on {count} check chains ({err})"
        u_k = self._transform.inverse(z_k)  # the chain's own coordinates
        per_chain = max_curvature(self._flat_log_joint(per_example), u_k, num_iterations=10)
        curvature = float(torch.quantile(per_chain.double(), STABILITY_QUANTILE))
        amplification = step_amplification(step_sizes, curvature)
        if not amplification <= STABILITY_GROWTH:  # a NaN curvature is refused too
            worst = float(step_sizes.max()) * curvature
            return (
                f"K = {self.num_steps} steps at s * lambda_max up to {worst:.3g} would amplify "
                f"the stiffest direction {amplification:.3g}x, more than the "
                f"{STABILITY_GROWTH:g}x allowed, on more than {1 - STABILITY_QUANTILE:.0%} of "
                f"{count} check chains (lambda_max at the {STABILITY_QUANTILE:.0%} quantile: "
                f"{curvature:.4g})"
            )
        return None

    def _warn_edge(
        self,
        edge: str | None,
        chosen: float,
        rejected: list[tuple[float, str]],
        step_sizes: Tensor,
    ) -> None:
        """Warn when the chosen step size is the smallest or largest one the search tried."""
        if edge == "upper" and rejected:
            return  # the chosen value is below a refused, larger one: not the search's edge
        if edge is None or chosen not in (float(step_sizes[0]), float(step_sizes[-1])):
            return
        delta = float(delta_from_step_size(chosen))
        exponent = math.log10(chosen)
        if edge == "lower":
            hint = (
                f"the optimum may be smaller: extend the grid downwards, e.g. "
                f"grid=torch.logspace({exponent - 2:.1f}, {exponent:.1f}, 9)"
            )
        else:
            hint = (
                f"the optimum may be larger: extend the grid upwards, e.g. "
                f"grid=torch.logspace({exponent:.1f}, {exponent + 2:.1f}, 9)"
            )
        warnings.warn(
            f"the tuned step size s = {chosen:.4g} (delta = {delta:.4g}) is the "
            f"{'smallest' if edge == 'lower' else 'largest'} candidate the search tried "
            f"[{float(step_sizes[0]):.4g} ... {float(step_sizes[-1]):.4g}]; {hint} "
            "(or call tune_step_size() without grid= for the bracketing search).",
            GridEdgeWarning,
            stacklevel=3,
        )


def _first(x: Observations, count: int) -> Observations:
    """The first ``count`` examples of every leaf of ``x``."""
    if isinstance(x, Tensor):
        return x[:count]
    if isinstance(x, Mapping):
        return {k: v[:count] for k, v in x.items()}
    return type(x)(v[:count] for v in x)  # type: ignore[call-arg]


class _Progress:
    """Evaluation lines on standard error: every one (``True``), none (``False``), or
    (``None``) one line every `PROGRESS_AFTER_SECONDS` once the search has run that long."""

    def __init__(self, enabled: bool | None) -> None:
        self.enabled = enabled
        self.start = time.perf_counter()
        self.printed = self.start
        self.count = 0

    def report(self, table: Tensor, value: Tensor) -> None:
        """Count one evaluation of $J$ at ``table``; print it when due (only then read it)."""
        self.count += 1
        now = time.perf_counter()
        if self.enabled is False or (
            self.enabled is None and now - self.printed < PROGRESS_AFTER_SECONDS
        ):
            return
        self.printed = now
        step_size = float(table.detach().double().mean())
        delta = float(delta_from_step_size(step_size))
        print(
            f"tune_step_size: evaluation {self.count} ({now - self.start:.1f} s): "
            f"s = {step_size:.4g} (delta = {delta:.4g}), J = {float(value.detach()):.6g}",
            file=sys.stderr,
            flush=True,
        )


class _Search:
    """$J(s)$ for one `ShortRunPosterior.tune_step_size` call, and the searches over it.

    It fixes the chains' noise (common random numbers), replays the same probes for stochastic
    log-determinants, screens every candidate with a plain rollout, scores failures ``inf``,
    averages over processes and reports progress; the search rules themselves are
    `shortinfer.tuning`'s.
    """

    def __init__(
        self,
        posterior: ShortRunPosterior,
        estimator: EntropyEstimator,
        num_samples: int,
        all_reduce: Callable[[Tensor], Tensor] | None,
        progress: bool | None,
    ) -> None:
        self.posterior = posterior
        self.estimator = estimator
        self.chain = posterior.draw_noise(num_samples)
        self.all_reduce = all_reduce
        self.progress = _Progress(progress)
        self.dropped: tuple[str, ...] = ()
        self.replay = (
            common_random_numbers(posterior.generator)
            if estimator.log_det in ("stochastic", "auto")
            else None
        )

    def objective(self, table: Tensor) -> Tensor:
        """$J$ at a step-size table, differentiable."""
        posterior = self.posterior
        if self.replay is not None:
            posterior = posterior._copy_with(generator=self.replay())
        value = posterior.step_size_objective(self.chain, table, estimator=self.estimator)
        self.progress.report(table, value)
        return value

    def screened(self, table: Tensor) -> Tensor:
        # A plain rollout (no Jacobian) finds most diverging candidates cheaply; it raises
        # ChainDivergenceError, which scores the candidate +inf.
        self.posterior.run_chain(self.chain, table=table)
        return self.objective(table)

    def value(self, step_size: float) -> float:
        """$J$ at a scalar step size: ``inf`` where it diverges, averaged over processes."""
        result = grid_search(
            self.screened,
            torch.tensor([[[step_size]]], dtype=torch.float64),
            all_reduce=self.all_reduce,
            strict=False,
        )
        self.dropped += result.dropped
        return float(result.objectives[0])

    def grid(self, candidates: Tensor, refine: int) -> tuple[Tensor, Tensor, str | None]:
        """Grid search, then golden-section refinement between the best point's neighbours."""
        result = grid_search(
            self.screened, candidates.reshape(-1, 1, 1), all_reduce=self.all_reduce
        )
        self.dropped += result.dropped
        objectives = result.objectives
        best = int(torch.argmin(objectives))
        edge = grid_edge(candidates, objectives)
        if refine > 0 and 0 < best < candidates.numel() - 1:
            lower, upper = float(candidates[best - 1]), float(candidates[best + 1])
            points = golden_section_search(self.value, lower, upper, num_iterations=refine)
            extra = torch.tensor(points, dtype=torch.float64)
            candidates = torch.cat([candidates, extra[:, 0]])
            objectives = torch.cat([objectives, extra[:, 1]])
        order = torch.argsort(candidates)
        return candidates[order], objectives[order], edge

    def bracket(self, start: float, refine: int) -> tuple[Tensor, Tensor, str | None]:
        """The bracketing search of `shortinfer.tuning.bracket_init` from ``start``."""
        state = bracket_init(start, refine=refine)
        while state.proposal is not None:
            state = bracket_update(state, self.value(state.proposal))
        bracket_final(state)  # raises if every point diverged
        points = torch.tensor(sorted(state.points), dtype=torch.float64)
        return points[:, 0], points[:, 1], state.edge

    def gradient(
        self, table: Tensor, num_iterations: int, learning_rate: float
    ) -> tuple[Tensor, TuningTrace]:
        """Adam on $\\log s$ (`shortinfer.tuning.gradient_search`)."""
        found = gradient_search(
            self.objective,
            table,
            num_iterations=num_iterations,
            learning_rate=learning_rate,
            all_reduce=self.all_reduce,
            derivative=default_derivative(table.numel(), self.chain.noise.numel()),
        )
        # Trace shape: () scalar, (K,) per step, (N,) per block, (K, N) for both.
        kept = [n for n in table.shape if n > 1]
        steps = found.step_sizes.reshape(found.step_sizes.shape[0], *kept)
        trace = TuningTrace("gradient", steps, found.objectives, self.estimator.objective)
        return found.step_size, trace


def short_run(
    log_joint: LogJoint,
    x: Observations,
    *,
    latent_shape: ShapeLike | Mapping[str, ShapeLike],
    num_steps: int = 25,
    step_size: StepSize = 0.05,
    prior: Prior = None,
    init: Init = None,
    generator: torch.Generator | None = None,
    validate: bool = True,
    compile: CompileOption = False,
) -> ShortRunPosterior:
    r"""Wrap any ``log_joint(x, z)`` into a short-run Langevin posterior $q_s(z \mid x)$.

    $$
    z_0 \sim q_0(z \mid x), \qquad
    z_{k+1} = z_k + s\,\nabla_z \log p(x, z_k) + \sqrt{2s}\,\epsilon_k,
    \qquad k = 0, \dots, K-1
    $$

    with $q_0$ = ``init``, by default the prior $p(z)$ (Nijkamp et al. 2020, equation
    (10)). In the authors' code's notation $\tfrac{\delta^2}{2}\nabla + \delta\epsilon$,
    $s = \delta^2/2$.

    Arguments:
        log_joint: ``log_joint(x, z)`` returns $\log p(x, z)$ per example, a tensor of
            shape ``(B,)``; ``z`` has shape ``(B, *latent_shape)`` (a dict of such tensors for
            dict latents). Examples must not interact, and the function must be traceable by
            ``torch.func`` (no ``.item()``, no data-dependent ``if``, no in-place writes to
            captured tensors): see ``docs/log_joint.md``.
        x: Observations with a leading batch dimension B; a tensor, or a tuple/list/dict of
            tensors (e.g. ``(images, mask)``) passed to ``log_joint`` as given.
        latent_shape: Per-example latent shape, e.g. ``(64,)``, or a dict of block name to
            shape for multi-layer latents.
        num_steps: K, the number of Langevin steps (the paper uses 25).
        step_size: s: a float, a ``(K,)`` tensor (one per step), or a dict of block name to
            float or ``(K,)`` tensor (per latent block).
        prior: The model's prior $p(z)$: ``None`` for $\mathcal{N}(0, I)$, a
            ``torch.distributions.Distribution`` whose ``batch_shape + event_shape`` is
            ``latent_shape`` (or ``(B, *latent_shape)``, one per example, for a conditional
            prior), or a dict of those for dict latents. It should be the prior inside
            ``log_joint``. The chain starts from it unless ``init`` is given. If its
            ``support`` is not the real line (Gamma, LogNormal, Beta, Uniform, ...), the
            chain runs on $u = T^{-1}(z)$ with $T$ = ``biject_to(support)``, element-wise
            per block, targeting $\log p(x, T(u)) + \log|\det \partial T/\partial u|$;
            ``log_joint``, `sample` and `rsample` see the constrained $z = T(u)$ and
            `entropy` is that of the constrained $z_K$ (see ``docs/concepts.md`` for the
            handled supports; others raise `ValueError`).
        init: The chain's start distribution $q_0(z_0 \mid x)$, for refining an amortized
            posterior (e.g. an encoder's): ``None`` starts from ``prior``; a
            ``Distribution`` whose ``batch_shape + event_shape`` is ``(B, *latent_shape)``
            (one per example, e.g. ``Independent(Normal(loc, scale), 1)`` with ``loc`` and
            ``scale`` of shape ``(B, D)``) or ``latent_shape`` (shared); a dict of those for
            dict latents. Its draws must lie in the prior's support. The entropy uses
            $-\log q_0(z_0 \mid x)$.
        generator: ``torch.Generator`` making every draw reproducible.
        validate: Check ``x`` for non-finite values and probe ``log_joint`` once (recommended).
            The probe's latent is a prior draw after which ``generator`` (or the global random
            state, without one) is restored, so validation does not change later samples.
        compile: ``False`` (default) runs eagerly. ``True`` or a ``torch.compile`` mode
            (``"default"``, ``"reduce-overhead"``, ``"max-autotune"``,
            ``"max-autotune-no-cudagraphs"``) makes `ShortRunPosterior.sample` run each step
            $(x, z_k, \epsilon_k, s_k) \mapsto z_{k+1}$ compiled: the forward of
            ``log_joint`` with its compiled backward (the score), and the update. They are
            cached per ``log_joint`` and mode: the first call compiles (seconds to minutes)
            and later posteriors of the same ``log_joint`` reuse it; batch sizes, and floats
            the model reads (an annealed ``sigma``), become graph inputs after their first
            change. Same chains as eager up to float round-off. On CUDA,
            ``"reduce-overhead"`` also records CUDA graphs, replayed once per step.
            `ShortRunPosterior.rsample`, `ShortRunPosterior.entropy`,
            `ShortRunPosterior.elbo` and `ShortRunPosterior.tune_step_size` stay eager (they
            differentiate through the chain or run it under ``torch.func`` transforms, which
            compiled steps do not support), with the same results. Needs a working
            ``torch.compile`` (on a CPU, a C++ compiler: see
            ``shortinfer._compile.compile_available``); ``docs/performance.md`` says what it
            gains.

    Returns:
        A `ShortRunPosterior`.

    Raises:
        LogJointError: If ``log_joint`` returns the wrong shape, non-finite values, or a value
            that does not depend on ``z``.
        TypeError: If ``compile`` is not a bool or a string.
        ValueError: For a non-positive or mis-shaped ``step_size``, ``num_steps < 1``, an
            unknown ``compile`` mode,
            non-finite ``x``, a mis-shaped ``prior`` or ``init``, a prior support that
            ``biject_to`` does not map element-wise, or ``init`` draws outside it.

    Examples:
        >>> decoder = torch.nn.Linear(8, 20)
        >>> def log_joint(x, z):
        ...     return -0.5 * z.square().sum(-1) - 0.5 * (x - decoder(z)).square().sum(-1) / 0.3**2
        >>> x = torch.randn(16, 20)
        >>> post = short_run(log_joint, x, latent_shape=(8,), num_steps=25, step_size=0.01)
        >>> post.sample().shape
        torch.Size([16, 8])
    """
    return ShortRunPosterior(
        log_joint,
        x,
        latent_shape=latent_shape,
        num_steps=num_steps,
        step_size=step_size,
        prior=prior,
        init=init,
        generator=generator,
        validate=validate,
        compile=compile,
    )
