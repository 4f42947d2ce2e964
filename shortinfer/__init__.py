r"""shortinfer: short-run Langevin posteriors for any latent-variable model.

Wrap a ``log_joint(x, z)`` in `short_run` to get a `ShortRunPosterior` with
``sample``, an exact ``entropy`` and ``tune_step_size`` (Nijkamp et al., ECCV 2020).
"""

from shortinfer._checks import (
    ArgumentError,
    ArgumentTypeError,
    ChainDivergenceError,
    LogJointError,
    ShortinferError,
)
from shortinfer._version import __version__
from shortinfer.entropy import jacobian, log_abs_det_jacobian
from shortinfer.langevin import delta_from_step_size, langevin_step, rollout, step_size_from_delta
from shortinfer.likelihoods import (
    gaussian_log_likelihood,
    observation_log_prob,
    standard_normal_log_prob,
)
from shortinfer.posterior import (
    ChainNoise,
    GridEdgeWarning,
    ShortRunPosterior,
    TuningTrace,
    short_run,
)
from shortinfer.tuning import (
    DEFAULT_GRID,
    DEFAULT_OBJECTIVE,
    PAPER_DELTA_GRID,
    PAPER_GRID,
    gradient_search,
    grid_search,
)

__all__ = [
    "DEFAULT_GRID",
    "DEFAULT_OBJECTIVE",
    "PAPER_DELTA_GRID",
    "PAPER_GRID",
    "ArgumentError",
    "ArgumentTypeError",
    "ChainDivergenceError",
    "ChainNoise",
    "GridEdgeWarning",
    "LogJointError",
    "ShortRunPosterior",
    "ShortinferError",
    "TuningTrace",
    "__version__",
    "delta_from_step_size",
    "gaussian_log_likelihood",
    "gradient_search",
    "grid_search",
    "jacobian",
    "langevin_step",
    "log_abs_det_jacobian",
    "observation_log_prob",
    "rollout",
    "short_run",
    "standard_normal_log_prob",
    "step_size_from_delta",
]
