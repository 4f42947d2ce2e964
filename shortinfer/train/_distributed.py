r"""Data-parallel glue for `shortinfer.train.Trainer` (``torchrun`` + DDP).

Under ``torchrun --nproc_per_node=P``, each process trains on its own shard of the data, with
its own batches of ``batch_size`` examples (one update sees $P \times$ ``batch_size``):

- **Sharding.** `shard_indices` gives each rank a disjoint slice of one shared random
  permutation per epoch, padded by wrapping around as ``torch.utils.data.DistributedSampler``
  does, so every rank sees the same number of batches.
- **Inference.** The short-run chains call ``model.log_joint`` on the *unwrapped* model (and
  with the parameters' ``requires_grad`` switched off), so the many backward passes of the
  Langevin steps never reach DistributedDataParallel's gradient hooks.
- **Update.** Only the θ-step goes through DDP: `LogJointModule` makes
  ``log_joint(x, z)`` the ``forward`` of a module that DDP can wrap, and DDP averages
  $\nabla_\theta$ over ranks during ``backward``.
- **Step size.** The tuning objective (grid) or its gradient (gradient search) is averaged over
  ranks with `mean_all_reduce`, so every rank selects the same step size; the result is
  then broadcast from rank 0 (`broadcast_from_main`) to rule out rounding differences.
- **Randomness.** `derive_seed` gives each (seed, purpose, iteration, rank) its own seed,
  so the chains of different ranks are independent and a resumed run redraws exactly the same
  noise without storing generator states per rank.

Only rank 0 writes checkpoints and logs (`is_main_process`).
"""

from __future__ import annotations

import datetime
import hashlib
import os
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from shortinfer._checks import ArgumentError, ShortinferError
from shortinfer._modules import model_method as _model_method  # trainer imports it here

__all__ = [
    "LogJointModule",
    "broadcast_from_main",
    "derive_seed",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_distributed",
    "is_main_process",
    "DEFAULT_PROCESS_GROUP_TIMEOUT",
    "DistributedTimeoutError",
    "mean_all_reduce",
    "shard_indices",
]


def is_distributed() -> bool:
    """Whether a ``torch.distributed`` process group with more than one process is running.

    Examples:
        >>> is_distributed()
        False
    """
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    """This process's rank (0 without a process group).

    Examples:
        >>> get_rank()
        0
    """
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    """Number of processes (1 without a process group).

    Examples:
        >>> get_world_size()
        1
    """
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    """Whether this process is rank 0, the one that writes checkpoints and logs.

    Examples:
        >>> is_main_process()
        True
    """
    return get_rank() == 0


#: Seconds a process waits in a collective for the others before it gives up (gloo and NCCL).
#: torch's default is 30 minutes (10 for NCCL), so a stopped process (SIGSTOP, a hung data
#: loader) leaves the others blocked that long. In `shortinfer train` the longest legitimate
#: gap between two collectives is one training iteration plus a step-size search plus a
#: checkpoint write, seconds to a minute on the reference models; 5 minutes leaves wide margin
#: and still frees a wedged job quickly. Raise it (``--process-group-timeout``) for models whose
#: single iteration takes longer.
DEFAULT_PROCESS_GROUP_TIMEOUT: float = 300.0


class DistributedTimeoutError(ShortinferError, RuntimeError):
    """Another process did not reach a collective within the process-group timeout."""


def _translate_timeout(err: RuntimeError) -> DistributedTimeoutError | RuntimeError:
    text = str(err)
    if "timed out" in text.lower() or "timeout" in text.lower():
        return DistributedTimeoutError(
            f"rank {get_rank()}: another process did not reach this collective within the "
            "process-group timeout (it stopped, hung or crashed): "
            f"{text.strip().splitlines()[0] if text.strip() else type(err).__name__}. "
            "This process stops too; look at the other processes' output. For models whose "
            "iterations take longer, raise --process-group-timeout."
        )
    return err


def init_distributed(
    backend: str | None = None, *, timeout: float = DEFAULT_PROCESS_GROUP_TIMEOUT
) -> torch.device | None:
    r"""Join the process group described by ``torchrun``'s environment, if there is one.

    Reads ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` (set by ``torchrun``). With
    ``WORLD_SIZE > 1`` it calls ``torch.distributed.init_process_group`` with ``backend``
    (default ``"nccl"`` when CUDA is available, else ``"gloo"``) and returns this process's
    device (``cuda:LOCAL_RANK`` for NCCL, else CPU). Without ``torchrun`` it does nothing.

    Arguments:
        backend: ``"gloo"``, ``"nccl"`` or ``None`` for the default.
        timeout: Seconds a process waits in a collective for the others before it raises
            (`DEFAULT_PROCESS_GROUP_TIMEOUT`), so that one stopped process cannot block the
            rest for torch's 30-minute default.

    Returns:
        The device for this rank, or ``None`` when not launched by ``torchrun`` (or when a
        process group already exists).

    Examples:
        >>> init_distributed() is None   # not under torchrun
        True
    """
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ArgumentError(
            f"timeout must be a positive number of seconds; received {timeout!r}. The default "
            f"is {DEFAULT_PROCESS_GROUP_TIMEOUT:g} (--process-group-timeout)."
        )
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1 or (dist.is_available() and dist.is_initialized()):
        return None
    if not dist.is_available():
        raise RuntimeError(
            "WORLD_SIZE > 1 but this torch build has no torch.distributed support; run a "
            "single process, or install a torch build with distributed support."
        )
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cpu")
    if backend == "nccl":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout))
    return device


def _communication_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def mean_all_reduce(tensor: Tensor) -> Tensor:
    r"""The mean of ``tensor`` over all processes, $\frac1P \sum_{p=1}^P t_p$.

    This is the ``all_reduce`` that `shortinfer.ShortRunPosterior.tune_step_size`
    expects. Without a process group it returns ``tensor`` unchanged.

    Arguments:
        tensor: A tensor of any shape; not modified.

    Returns:
        The mean, with the shape, dtype and device of ``tensor``.

    Examples:
        >>> mean_all_reduce(torch.tensor([1.0, 2.0]))
        tensor([1., 2.])
    """
    if not is_distributed():
        return tensor
    work = tensor.detach().to(_communication_device(), copy=True)
    try:
        dist.all_reduce(work, op=dist.ReduceOp.SUM)
    except RuntimeError as err:
        raise _translate_timeout(err) from err
    return (work / dist.get_world_size()).to(device=tensor.device, dtype=tensor.dtype)


def broadcast_from_main(tensor: Tensor) -> Tensor:
    """Rank 0's value of ``tensor`` on every process (unchanged without a process group).

    Arguments:
        tensor: A tensor of the same shape and dtype on every rank; not modified.

    Returns:
        Rank 0's tensor, on ``tensor``'s device.

    Examples:
        >>> broadcast_from_main(torch.tensor(0.05))
        tensor(0.0500)
    """
    if not is_distributed():
        return tensor
    work = tensor.detach().to(_communication_device(), copy=True)
    try:
        dist.broadcast(work, src=0)
    except RuntimeError as err:
        raise _translate_timeout(err) from err
    return work.to(device=tensor.device, dtype=tensor.dtype)


def derive_seed(seed: int, *keys: Any) -> int:
    r"""A 63-bit seed determined by ``seed`` and ``keys`` (e.g. purpose, iteration, rank).

    Uses BLAKE2b of the keys' ``repr``, so it is the same in every process and Python session
    (unlike ``hash``). Nearby keys give unrelated seeds.

    Arguments:
        seed: The run's seed.
        keys: Further ints or strings that identify the stream.

    Returns:
        An int in $[0, 2^{63})$ for ``torch.Generator.manual_seed``.

    Examples:
        >>> derive_seed(0, "chain", 5, 0) == derive_seed(0, "chain", 5, 0)
        True
        >>> derive_seed(0, "chain", 5, 0) == derive_seed(0, "chain", 5, 1)
        False
    """
    digest = hashlib.blake2b(repr((int(seed), *keys)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def shard_indices(
    num_examples: int, *, epoch: int, seed: int, rank: int = 0, world_size: int = 1
) -> Tensor:
    r"""This rank's example order for one epoch: a slice of a shared random permutation.

    The permutation $\pi$ of $\{0, \dots, N-1\}$ depends only on ``(seed,
    epoch)``; it is padded by wrapping to $P\lceil N/P \rceil$ entries and rank
    $r$ takes entries $r, r + P, r + 2P, \dots$ (as ``DistributedSampler``).

    Arguments:
        num_examples: $N$.
        epoch: The epoch number (a new permutation per epoch).
        seed: The run's seed.
        rank: $r$.
        world_size: $P$.

    Returns:
        Indices into the data set, with shape ``(ceil(N / P),)``.

    Raises:
        ValueError: If ``num_examples < 1`` or ``rank`` is not in ``[0, world_size)``.

    Examples:
        >>> a = shard_indices(5, epoch=0, seed=0, rank=0, world_size=2)
        >>> b = shard_indices(5, epoch=0, seed=0, rank=1, world_size=2)
        >>> a.shape, b.shape, sorted(set(a.tolist()) | set(b.tolist()))
        (torch.Size([3]), torch.Size([3]), [0, 1, 2, 3, 4])
    """
    if num_examples < 1:
        raise ArgumentError(f"num_examples must be >= 1; received {num_examples}.")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ArgumentError(f"rank must be in [0, {world_size}); received rank={rank}.")
    generator = torch.Generator().manual_seed(derive_seed(seed, "data", epoch))
    order = torch.randperm(num_examples, generator=generator)
    per_rank = -(-num_examples // world_size)
    total = per_rank * world_size
    if total > num_examples:
        order = order.repeat(-(-total // num_examples))[:total]
    return order[rank:total:world_size]


class LogJointModule(nn.Module):
    r"""A module whose ``forward(x, z)`` is ``model.log_joint(x, z)``, for wrapping in DDP.

    DistributedDataParallel only synchronises gradients of computations that pass through its
    ``forward``; this adapter routes the θ-update's ``log_joint`` call there. It shares the
    model's parameters (it holds ``model`` as a submodule).

    Arguments:
        model: A module with ``log_joint(x, z) -> (B,)``.

    Examples:
        >>> class Model(torch.nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.weight = torch.nn.Parameter(torch.ones(2))
        ...     def log_joint(self, x, z):
        ...         return -(x - self.weight * z).square().sum(-1)
        >>> LogJointModule(Model())(torch.zeros(3, 2), torch.ones(3, 2))
        tensor([-2., -2., -2.], grad_fn=<NegBackward0>)
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Any, z: Any) -> Tensor:
        r"""$\log p_\theta(x, z)$ with shape ``(B,)``."""
        return _model_method(self.model, "log_joint")(x, z)
