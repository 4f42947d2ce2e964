"""Tests for shortinfer.train._trainer: Algorithm 1, schedules, logging, checkpoints, resuming."""

import json
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import shortinfer.posterior
from shortinfer.models import MultiLayerGenerator
from shortinfer.objectives import EntropyEstimator
from shortinfer.train import (
    CheckpointError,
    LearningRateSchedule,
    SigmaSchedule,
    StepSizeTuning,
    Trainer,
    TrainingDivergedError,
    annealed_sigma,
    load_checkpoint,
    step_decay_learning_rate,
    train_step,
)

torch.set_num_threads(1)


class FactorModel(nn.Module):
    """A user's own model: linear-Gaussian factor analysis, log p(x, z) in nats."""

    def __init__(self, data_dim: int = 6, latent_dim: int = 2) -> None:
        super().__init__()
        self.decoder = nn.Linear(latent_dim, data_dim)

    def log_joint(self, x, z):
        return -0.5 * z.square().sum(-1) - 0.5 * (x - self.decoder(z)).square().sum(-1) / 0.25


def _factor_data(count=64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    loadings = torch.randn(2, 6, generator=generator)
    z = torch.randn(count, 2, generator=generator)
    return z @ loadings + 0.5 * torch.randn(count, 6, generator=generator)


def _generator(seed=0, **kwargs):
    torch.manual_seed(seed)
    options = {"image_size": 28, "channels": 1, "latent_sizes": (2, 3), "num_filters": 4}
    options.update(kwargs)
    return MultiLayerGenerator(**options)


def _images(count=16, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.tanh(2 * torch.randn(count, 1, 28, 28, generator=generator))


def _tiny_trainer(output_dir=None, *, num_iterations=6, model=None, **kwargs):
    options = {
        "num_iterations": num_iterations,
        "batch_size": 4,
        "num_steps": 3,
        "step_size": 0.02,
        "tuning": StepSizeTuning(interval=3, grid=(0.01, 0.02), batch_size=2),
        "learning_rate": 1e-3,
        "output_dir": output_dir,
        "checkpoint_interval": 2,
        "log_interval": 1,
        "progress": False,
    }
    options.update(kwargs)
    return Trainer(model if model is not None else _generator(), _images(), **options)


def _rows(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


# -- train_step ------------------------------------------------------------------------------


def test_train_step_gradient_is_that_of_the_loss_at_detached_samples():
    model = FactorModel()
    x = _factor_data(8)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # keeps θ: grads stay inspectable
    out = train_step(
        model,
        optimizer,
        x,
        latent_shape=(2,),
        num_steps=4,
        step_size=0.05,
        generator=torch.Generator().manual_seed(0),
    )
    assert out.z.shape == (8, 2) and not out.z.requires_grad
    reference = FactorModel()
    reference.load_state_dict(model.state_dict())
    loss = -reference.log_joint(x, out.z).mean()
    loss.backward()
    assert float(out.loss) == pytest.approx(float(loss.detach()), rel=1e-6)
    # The Langevin steps' backward passes must not leak into the parameter gradients.
    for ours, theirs in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(ours.grad, theirs.grad)
        assert ours.requires_grad  # restored after inference


def test_train_step_refuses_a_nonfinite_loss_without_updating():
    class Broken(FactorModel):
        def log_joint(self, x, z):
            # NaN only in the loss (grad on, z detached): the chain and its monitor see finite
            # values, so this reaches the loss check.
            value = super().log_joint(x, z)
            loss_pass = torch.is_grad_enabled() and not z.requires_grad
            return value * float("nan") if loss_pass else value

    model = Broken()
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    with pytest.raises(TrainingDivergedError, match="the loss is nan"):
        train_step(model, optimizer, _factor_data(4), latent_shape=(2,), num_steps=2)
    for parameter, old in zip(model.parameters(), before, strict=True):
        assert torch.equal(parameter, old)


# -- Trainer on a user's model ------------------------------------------------------------------


def test_trainer_learns_a_custom_model_with_explicit_latent_shape(tmp_path):
    torch.manual_seed(0)
    model = FactorModel()
    trainer = Trainer(
        model,
        _factor_data(256),
        num_iterations=60,
        batch_size=32,
        latent_shape=(2,),
        num_steps=10,
        step_size=0.05,
        tuning=None,
        learning_rate=3e-2,
        output_dir=tmp_path,
        log_interval=1,
        progress=False,
    )
    assert trainer.sigma_schedule is None  # no sigma attribute: nothing annealed
    result = trainer.fit()
    losses = [row["loss"] for row in _rows(tmp_path / "metrics.jsonl")]
    assert result.iterations == 60 and len(losses) == 60
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10 - 5.0
    assert all(row.get("mse") is None for row in _rows(tmp_path / "metrics.jsonl"))


def test_trainer_input_errors():
    def factor_trainer(data=None, **options):
        # A valid one-update Trainer on the factor model but for what the case passes.
        data = _factor_data() if data is None else data
        return Trainer(FactorModel(), data, num_iterations=1, latent_shape=(2,), **options)

    with pytest.raises(TypeError, match="no attribute latent_shapes.*latent_shape="):
        Trainer(FactorModel(), _factor_data(), num_iterations=1)
    with pytest.raises(TypeError, match="log_joint"):
        Trainer(nn.Linear(2, 2), _factor_data(), num_iterations=1, latent_shape=(2,))
    with pytest.raises(ValueError, match="data is empty"):
        factor_trainer(torch.zeros(0, 6))
    with pytest.raises(ValueError, match="batch_size=64 is larger than the 10 examples"):
        factor_trainer(_factor_data(10))
    with pytest.raises(TypeError, match="has no float attribute sigma"):
        factor_trainer(sigma=SigmaSchedule())
    with pytest.raises(ValueError, match="tuning.method must be .*'grid' or 'gradient'"):
        factor_trainer(tuning=StepSizeTuning(method="newton"))  # type: ignore[arg-type]


# -- Algorithm 1 with the reference generator ----------------------------------------------


def test_tuning_runs_every_interval_and_passes_the_objective_through(monkeypatch, tmp_path):
    calls = []
    original = shortinfer.posterior.ShortRunPosterior.tune_step_size

    def spy(self, method=None, **kwargs):
        calls.append((method, kwargs, self.batch_size))
        return original(self, method, **kwargs)

    monkeypatch.setattr(shortinfer.posterior.ShortRunPosterior, "tune_step_size", spy)
    trainer = _tiny_trainer(tmp_path, num_iterations=7)
    result = trainer.fit()
    assert [record.iteration for record in result.history] == [0, 3, 6]
    assert [(m, k["estimator"].objective, k["grid"], b) for m, k, b in calls] == [
        (None, "linearized", (0.01, 0.02), 2)
    ] * 3
    rows = _rows(tmp_path / "metrics.jsonl")
    tuned_rows = [row["iteration"] for row in rows if "objective" in row]
    assert tuned_rows == [1, 4, 7]
    assert all(row["step_size"] in (0.01, 0.02) for row in rows)
    assert [trace["iteration"] for trace in trainer.traces] == [0, 3, 6]
    assert trainer.traces[0]["objectives"].shape == (2,)
    # An unknown objective is refused when the configuration is built.
    with pytest.raises(ValueError, match="objective must be one of"):
        StepSizeTuning(interval=3, estimator=EntropyEstimator("bogus"), grid=(0.01,))


def test_stability_refusals_reach_the_traces_the_log_and_the_checkpoint(monkeypatch, tmp_path):
    original = shortinfer.posterior.ShortRunPosterior.tune_step_size

    def refusing(self, method=None, **kwargs):  # as if the check refused the argmin 0.02
        tuned = original(self, method, **kwargs)
        assert tuned.trace is not None
        return tuned._replace(tuned._table, tuned.trace._replace(rejected=((0.02, "unstable"),)))

    monkeypatch.setattr(shortinfer.posterior.ShortRunPosterior, "tune_step_size", refusing)
    trainer = _tiny_trainer(tmp_path, num_iterations=4)
    trainer.fit()
    assert [trace["rejected"] for trace in trainer.traces] == [[[0.02, "unstable"]]] * 2
    rows = [row for row in _rows(tmp_path / "metrics.jsonl") if "objective" in row]
    assert [row["tuning_rejected"] for row in rows] == [[[0.02, "unstable"]]] * 2
    resumed = _tiny_trainer(tmp_path, num_iterations=4)
    resumed.fit(resume=True)  # the checkpoint keeps them (weights_only=True load)
    assert [trace["rejected"] for trace in resumed.traces] == [[[0.02, "unstable"]]] * 2


def test_gradient_tuning_of_a_per_step_step_size(tmp_path):
    trainer = _tiny_trainer(
        tmp_path,
        num_iterations=2,
        step_size=torch.full((3,), 0.02),
        tuning=StepSizeTuning(method="gradient", interval=2, num_iterations=1, batch_size=2),
    )
    result = trainer.fit()
    assert isinstance(result.step_size, torch.Tensor) and result.step_size.shape == (3,)
    assert not torch.equal(result.step_size, torch.full((3,), 0.02, dtype=torch.float64))
    assert len(result.history[0].step_size) == 3
    stored = load_checkpoint(tmp_path)
    torch.testing.assert_close(stored["step_size"], result.step_size)


def test_learning_rate_and_sigma_follow_their_schedules(tmp_path):
    schedule = LearningRateSchedule(base=1e-3)
    sigma = SigmaSchedule(start=0.4, end=0.2, anneal_fraction=0.5)
    model = _generator()
    trainer = _tiny_trainer(
        tmp_path, num_iterations=9, model=model, learning_rate=schedule, sigma=sigma, tuning=None
    )
    trainer.fit()
    rows = _rows(tmp_path / "metrics.jsonl")
    assert [row["iteration"] for row in rows] == list(range(1, 10))
    for row in rows:
        t = row["iteration"] - 1
        assert row["lr"] == pytest.approx(step_decay_learning_rate(t, 9, base=1e-3))
        assert row["sigma"] == pytest.approx(annealed_sigma(t, 9, start=0.4, end=0.2))
    assert model.sigma == pytest.approx(0.2)
    assert {"loss", "mse", "step_size", "images_per_second", "lr", "sigma"} <= set(rows[0])
    assert all(row["mse"] > 0 and row["images_per_second"] > 0 for row in rows)


def test_resume_in_process_matches_uninterrupted_run(tmp_path):
    straight = _tiny_trainer(tmp_path / "a")
    straight.fit()
    interrupted = _tiny_trainer(tmp_path / "b")
    for _ in range(4):
        interrupted.step()
    interrupted.save_checkpoint()
    # A fresh process would build the model with another initialisation: resuming must not care.
    resumed = _tiny_trainer(tmp_path / "b", model=_generator(seed=123))
    result = resumed.fit(resume=True)
    assert result.iterations == 6
    for ours, theirs in zip(resumed.model.parameters(), straight.model.parameters(), strict=True):
        assert torch.equal(ours, theirs)
    assert resumed.history == straight.history
    assert resumed.step_size == straight.step_size


def test_resuming_with_another_process_count_warns(tmp_path):
    trainer = _tiny_trainer(tmp_path, num_iterations=2)
    trainer.fit()
    state = trainer.state_dict()
    state["data_position"]["world_size"] = 2  # as if written by a 2-process torchrun
    with pytest.warns(UserWarning, match="2 process.*resumed with 1.*not an exact"):
        trainer.load_state_dict(state)
    assert trainer.iteration == 2


# -- failures ------------------------------------------------------------------------------------


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    trainer = _tiny_trainer(tmp_path, num_iterations=4)
    trainer.fit()
    good = (tmp_path / "latest.pt").read_bytes()
    trainer.num_iterations = 8
    with torch.no_grad():
        trainer.model.output.bias.fill_(float("nan"))
    message = "stopped at iteration 4.*last good checkpoint"
    with pytest.raises(TrainingDivergedError, match=message):
        trainer.fit()
    assert (tmp_path / "latest.pt").read_bytes() == good
    assert load_checkpoint(tmp_path)["iteration"] == 4
    assert _rows(tmp_path / "metrics.jsonl")[-1]["event"] == "diverged"


def test_nonfinite_parameters_are_never_checkpointed(tmp_path):
    trainer = _tiny_trainer(tmp_path)
    with torch.no_grad():
        trainer.model.output.weight[0, 0, 0, 0] = float("inf")
    with pytest.raises(TrainingDivergedError, match="output.weight.*not written"):
        trainer.save_checkpoint()
    assert not (tmp_path / "latest.pt").exists()


def test_resuming_with_another_configuration_names_the_differences(tmp_path):
    _tiny_trainer(tmp_path, num_iterations=2).fit()
    other = _tiny_trainer(tmp_path, num_iterations=4, model=_generator(num_filters=8))
    with pytest.raises(CheckpointError, match="num_filters: checkpoint 4 vs model 8"):
        other.fit(resume=True)


def test_fit_refuses_to_overwrite_an_existing_run(tmp_path):
    _tiny_trainer(tmp_path, num_iterations=2).fit()
    with pytest.raises(FileExistsError, match="pass resume=True"):
        _tiny_trainer(tmp_path, num_iterations=2).fit()


def test_progress_falls_back_to_plain_lines_without_tqdm(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    _tiny_trainer(None, num_iterations=2, tuning=None, progress=True).fit()
    err = capsys.readouterr().err
    assert "[train] 1/2 loss=" in err and "[train] 2/2" in err
    _tiny_trainer(None, num_iterations=2, tuning=None, progress=False).fit()
    assert capsys.readouterr().err == ""


def test_step_size_tuning_passes_num_mixture_and_rejects_bad_values(monkeypatch):
    from shortinfer.posterior import ShortRunPosterior

    with pytest.raises(ValueError, match="num_mixture"):
        Trainer(
            FactorModel(),
            _factor_data(8),
            num_iterations=1,
            latent_shape=(2,),
            tuning=StepSizeTuning(estimator=EntropyEstimator(num_mixture=0)),
        )
    seen = []
    original = ShortRunPosterior.tune_step_size

    def spy(self, *args, **kwargs):
        seen.append(kwargs["estimator"].num_mixture)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ShortRunPosterior, "tune_step_size", spy)
    tuning = StepSizeTuning(
        interval=1,
        grid=(0.01, 0.02),
        estimator=EntropyEstimator("semi_implicit", num_mixture=3),
        num_samples=4,
    )
    trainer = Trainer(
        FactorModel(),
        _factor_data(8),
        num_iterations=1,
        batch_size=4,
        num_steps=2,
        step_size=0.01,
        tuning=tuning,
        latent_shape=(2,),
    )
    trainer.fit()
    assert seen == [3]


def test_a_mixture_objective_with_one_chain_per_example_is_refused_up_front():
    with pytest.raises(ValueError, match="num_samples >= 2.*--tune-samples"):
        StepSizeTuning(estimator=EntropyEstimator("sandwich"), num_samples=1)
