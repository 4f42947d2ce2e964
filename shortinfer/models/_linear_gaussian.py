r"""The linear-Gaussian model: a latent-variable model whose short-run posterior is closed-form.

$$
z \sim \mathcal{N}(0, I_D), \qquad x \mid z \sim \mathcal{N}(Wz + b, \sigma^2 I_P).
$$

The exact posterior is $\mathcal{N}(A^{-1} c, A^{-1})$ with
$A = I + W^\top W / \sigma^2$ and $c = W^\top (x - b) / \sigma^2$. Short-run
Langevin is affine, $z_{k+1} = M_k z_k + s_k c + \sqrt{2 s_k}\,\epsilon_k$ with
$M_k = I - s_k A$, so its output is Gaussian with

$$
m_{k+1} = M_k m_k + s_k c, \qquad C_{k+1} = M_k C_k M_k^\top + 2 s_k I,
\qquad m_0 = 0,\ C_0 = I,
$$

and $\partial z_K / \partial z_0 = \prod_k M_k$. This makes it the oracle for every test of
sampling, log-determinants, entropies, ELBOs and step-size objectives.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from shortinfer._checks import ArgumentError
from shortinfer.likelihoods import gaussian_log_likelihood, standard_normal_log_prob

__all__ = ["LinearGaussian"]


class LinearGaussian(nn.Module):
    r"""The linear-Gaussian latent-variable model, with its closed forms.

    The closed forms (posterior, evidence, the short-run Jacobian, moments, ELBO, KL and the
    three entropies) are library API: ``examples/linear_gaussian.py`` and
    ``benchmarks/estimators.py`` compare estimates against them, and the test suite uses them
    as its oracle. All are exact, in the dtype of ``weight`` (use float64 for tight checks).

    Arguments:
        weight: $W$, with shape ``(P, D)``.
        bias: $b$, with shape ``(P,)``.
        sigma: Observation noise standard deviation $\sigma > 0$.

    Examples:
        >>> model = LinearGaussian(torch.randn(5, 2, dtype=torch.float64),
        ...                        torch.zeros(5, dtype=torch.float64), sigma=0.5)
        >>> x = model.sample_observations(3, generator=torch.Generator().manual_seed(0))
        >>> mean, cov = model.posterior(x)
        >>> mean.shape, cov.shape
        (torch.Size([3, 2]), torch.Size([2, 2]))
    """

    def __init__(self, weight: Tensor, bias: Tensor, sigma: float) -> None:
        super().__init__()
        if weight.dim() != 2 or bias.shape != weight.shape[:1]:
            raise ArgumentError(
                f"weight must have shape (P, D) and bias (P,); received {tuple(weight.shape)} "
                f"and {tuple(bias.shape)}."
            )
        if not sigma > 0:
            raise ArgumentError(f"sigma must be positive; received {sigma!r}.")
        self.weight = nn.Parameter(weight.clone())
        self.bias = nn.Parameter(bias.clone())
        self.sigma = float(sigma)

    @property
    def latent_dim(self) -> int:
        """D."""
        return self.weight.shape[1]

    def log_joint(self, x: Tensor, z: Tensor) -> Tensor:
        r"""$\log \mathcal{N}(z; 0, I) + \log \mathcal{N}(x; Wz + b, \sigma^2 I)$.

        Arguments:
            x: Observations, with shape ``(B, P)``.
            z: Latents, with shape ``(B, D)``.

        Returns:
            The log joint density, with shape ``(B,)``.
        """
        mean = z @ self.weight.T + self.bias
        return standard_normal_log_prob(z) + gaussian_log_likelihood(x, mean, self.sigma)

    def sample_observations(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        r"""Draw ``n`` observations $x = Wz + b + \sigma \epsilon$, with shape ``(n, P)``.

        Examples:
            >>> model = LinearGaussian(torch.eye(2, dtype=torch.float64),
            ...                        torch.zeros(2, dtype=torch.float64), sigma=1.0)
            >>> model.sample_observations(3, generator=torch.Generator().manual_seed(0)).shape
            torch.Size([3, 2])
        """
        kw = {"dtype": self.weight.dtype, "device": self.weight.device, "generator": generator}
        z = torch.randn(n, self.latent_dim, **kw)
        noise = torch.randn(n, self.weight.shape[0], **kw)
        return (z @ self.weight.T + self.bias + self.sigma * noise).detach()

    def precision(self) -> Tensor:
        r"""The posterior precision $A = I + W^\top W / \sigma^2$, shape ``(D, D)``.

        Examples:
            >>> model = LinearGaussian(torch.eye(2, dtype=torch.float64),
            ...                        torch.zeros(2, dtype=torch.float64), sigma=1.0)
            >>> model.precision().diagonal().tolist()
            [2.0, 2.0]
        """
        eye = torch.eye(self.latent_dim, dtype=self.weight.dtype, device=self.weight.device)
        return eye + self.weight.T @ self.weight / self.sigma**2

    def _shift(self, x: Tensor) -> Tensor:
        return (x - self.bias) @ self.weight / self.sigma**2  # c, with shape (B, D)

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        r"""The exact posterior $\mathcal{N}(A^{-1}c, A^{-1})$: mean ``(B, D)``, cov ``(D, D)``.

        Examples:
            >>> model = LinearGaussian(torch.eye(2, dtype=torch.float64),
            ...                        torch.zeros(2, dtype=torch.float64), sigma=1.0)
            >>> mean, cov = model.posterior(torch.ones(1, 2, dtype=torch.float64))
            >>> mean.tolist(), cov.diagonal().tolist()
            ([[0.5, 0.5]], [0.5, 0.5])
        """
        cov = torch.linalg.inv(self.precision())
        return self._shift(x) @ cov, cov

    def log_evidence(self, x: Tensor) -> Tensor:
        r"""$\log p(x) = \log \mathcal{N}(x; b, WW^\top + \sigma^2 I)$, shape ``(B,)``.

        Examples:
            >>> model = LinearGaussian(torch.eye(2, dtype=torch.float64),
            ...                        torch.zeros(2, dtype=torch.float64), sigma=1.0)
            >>> model.log_evidence(torch.zeros(3, 2, dtype=torch.float64)).shape
            torch.Size([3])
        """
        cov = self.weight @ self.weight.T + self.sigma**2 * torch.eye(
            self.weight.shape[0], dtype=self.weight.dtype, device=self.weight.device
        )
        dist = torch.distributions.MultivariateNormal(self.bias, covariance_matrix=cov)
        return dist.log_prob(x)

    def _steps(self, step_size: float | Tensor, num_steps: int) -> Tensor:
        steps = torch.as_tensor(step_size, dtype=self.weight.dtype, device=self.weight.device)
        return steps.expand(num_steps) if steps.dim() == 0 else steps

    def short_run_jacobian(self, step_size: float | Tensor, num_steps: int) -> Tensor:
        r"""$\partial z_K/\partial z_0 = \prod_{k} (I - s_k A)$, shape ``(D, D)``.

        ``step_size`` is a float or a ``(K,)`` tensor (per step).

        Examples:
            >>> model = LinearGaussian(torch.eye(2, dtype=torch.float64),
            ...                        torch.zeros(2, dtype=torch.float64), sigma=1.0)
            >>> model.short_run_jacobian(0.25, 2).diagonal().tolist()  # (1 - 0.25 * 2) ** 2
            [0.25, 0.25]
        """
        a = self.precision()
        jac = torch.eye(self.latent_dim, dtype=a.dtype, device=a.device)
        for s in self._steps(step_size, num_steps):
            jac = (torch.eye(self.latent_dim, dtype=a.dtype, device=a.device) - s * a) @ jac
        return jac

    def short_run_moments(
        self, x: Tensor, step_size: float | Tensor, num_steps: int
    ) -> tuple[Tensor, Tensor]:
        r"""Mean ``(B, D)`` and covariance ``(D, D)`` of $z_K$ (the marginal $q_s$), from the
        recursion in the module docstring.

        Examples:
            >>> model = LinearGaussian(torch.eye(2, dtype=torch.float64),
            ...                        torch.zeros(2, dtype=torch.float64), sigma=1.0)
            >>> mean, cov = model.short_run_moments(torch.ones(1, 2, dtype=torch.float64), 0.5, 1)
            >>> mean.tolist(), cov.diagonal().tolist()  # one step with s = 1/2: z_1 = c/2 + noise
            ([[0.5, 0.5]], [1.0, 1.0])
        """
        a = self.precision()
        eye = torch.eye(self.latent_dim, dtype=a.dtype, device=a.device)
        c = self._shift(x)
        mean = torch.zeros_like(c)
        cov = eye.clone()
        for s in self._steps(step_size, num_steps):
            m = eye - s * a
            mean = mean @ m.T + s * c
            cov = m @ cov @ m.T + 2 * s * eye
        return mean, cov

    def expected_log_joint(self, x: Tensor, mean: Tensor, cov: Tensor) -> Tensor:
        r"""$\mathbb{E}_{\mathcal{N}(m, C)}[\log p(x, z)]$ in closed form, shape ``(B,)``.

        Arguments:
            x: Observations, shape ``(B, P)``.
            mean: $m$, shape ``(B, D)``.
            cov: $C$, shape ``(D, D)``.

        Examples:
            >>> model = LinearGaussian(torch.eye(2, dtype=torch.float64),
            ...                        torch.zeros(2, dtype=torch.float64), sigma=1.0)
            >>> x = torch.zeros(1, 2, dtype=torch.float64)
            >>> model.expected_log_joint(x, torch.zeros(1, 2, dtype=torch.float64),
            ...                          torch.zeros(2, 2, dtype=torch.float64)).tolist()
            [-3.6757541328186907]
        """
        d, p = self.latent_dim, self.weight.shape[0]
        prior = -0.5 * (torch.trace(cov) + mean.square().sum(-1)) - 0.5 * d * math.log(2 * math.pi)
        resid = x - mean @ self.weight.T - self.bias
        spread = torch.trace(self.weight @ cov @ self.weight.T)
        lik = -(resid.square().sum(-1) + spread) / (2 * self.sigma**2) - 0.5 * p * math.log(
            2 * math.pi * self.sigma**2
        )
        return prior + lik

    def conditional_elbo(self, x: Tensor, step_size: float | Tensor, num_steps: int) -> Tensor:
        r"""The exact expectation of the paper's ELBO, shape ``(B,)``.

        $$
        \mathbb{E}_q[\log p(x, z_K)] + \tfrac{D}{2}(1 + \log 2\pi)
        + \log\lvert\det \textstyle\prod_k (I - s_k A)\rvert
        $$

        Examples:
            >>> model = LinearGaussian(torch.eye(2, dtype=torch.float64),
            ...                        torch.zeros(2, dtype=torch.float64), sigma=1.0)
            >>> x = torch.zeros(1, 2, dtype=torch.float64)
            >>> bool(model.conditional_elbo(x, 0.1, 25) <= model.log_evidence(x))
            True
        """
        mean, cov = self.short_run_moments(x, step_size, num_steps)
        log_det = torch.linalg.slogdet(self.short_run_jacobian(step_size, num_steps)).logabsdet
        entropy = 0.5 * self.latent_dim * (1 + math.log(2 * math.pi)) + log_det
        return self.expected_log_joint(x, mean, cov) + entropy

    def kl_to_posterior(self, x: Tensor, step_size: float | Tensor, num_steps: int) -> Tensor:
        r"""The exact $\mathrm{KL}(q_s \,\|\, p(z \mid x))$ per example, shape ``(B,)``.

        Examples:
            >>> model = LinearGaussian(torch.eye(2, dtype=torch.float64),
            ...                        torch.zeros(2, dtype=torch.float64), sigma=1.0)
            >>> x = torch.zeros(1, 2, dtype=torch.float64)
            >>> bool(model.kl_to_posterior(x, 0.1, 50) < model.kl_to_posterior(x, 0.1, 5))
            True
        """
        mean_q, cov_q = self.short_run_moments(x, step_size, num_steps)
        mean_p, cov_p = self.posterior(x)
        prec_p = self.precision()
        diff = mean_p - mean_q
        d = self.latent_dim
        return 0.5 * (
            torch.trace(prec_p @ cov_q)
            + ((diff @ prec_p) * diff).sum(-1)
            - d
            - torch.linalg.slogdet(cov_q).logabsdet
            + torch.linalg.slogdet(cov_p).logabsdet
        )

    def short_run_entropy(self, step_size: float | Tensor, num_steps: int) -> Tensor:
        r"""The exact marginal entropy $H(z_K) = \tfrac12\log\det(2\pi e\, C_K)$, a scalar.

        $C_K$ (see `short_run_moments`) does not depend on ``x``.

        Examples:
            >>> model = LinearGaussian(torch.eye(2, dtype=torch.float64),
            ...                        torch.zeros(2, dtype=torch.float64), sigma=1.0)
            >>> bool(model.short_run_entropy(0.1, 10) > model.conditional_entropy(0.1, 10))
            True
        """
        x = torch.zeros(
            1, self.weight.shape[0], dtype=self.weight.dtype, device=self.weight.device
        )
        _, cov = self.short_run_moments(x, step_size, num_steps)
        return 0.5 * torch.linalg.slogdet(2 * math.pi * math.e * cov).logabsdet

    def conditional_entropy(self, step_size: float | Tensor, num_steps: int) -> Tensor:
        r"""The paper's entropy given the noise, $H(z_K \mid \epsilon)$, a scalar.

        $$
        H(z_K \mid \epsilon) = \tfrac D2 \log(2\pi e)
        + \log\big\lvert\det \textstyle\prod_k (I - s_k A)\big\rvert
        $$

        Examples:
            >>> model = LinearGaussian(torch.eye(2, dtype=torch.float64),
            ...                        torch.zeros(2, dtype=torch.float64), sigma=1.0)
            >>> bool(model.conditional_entropy(0.1, 10) < model.short_run_entropy(0.1, 10))
            True
        """
        log_det = torch.linalg.slogdet(self.short_run_jacobian(step_size, num_steps)).logabsdet
        return 0.5 * self.latent_dim * math.log(2 * math.pi * math.e) + log_det

    def epi_entropy(self, step_size: float | Tensor, num_steps: int) -> Tensor:
        r"""The entropy-power-inequality bound on $H(z_K)$ with exact expectations, a scalar.

        Each step's Jacobian $I - s_k A$ is constant, so
        $\mathbb{E}\,\ell_k = \log\lvert\det(I - s_k A)\rvert$ and

        $$
        h_0 = \tfrac D2 \log(2\pi e), \qquad
        h_{k+1} = \tfrac D2 \log\big(e^{2(h_k + \ell_k)/D} + 4\pi e\, s_k\big),
        \qquad H(z_K \mid \epsilon) \le h_K \le H(z_K),
        $$

        with equality on the right for $D = 1$ (a Gaussian plus an independent Gaussian).
        See ``"epi"`` in `shortinfer.objectives.entropy_power_lower_bound`.

        Examples:
            >>> model = LinearGaussian(torch.ones(1, 1, dtype=torch.float64),
            ...                        torch.zeros(1, dtype=torch.float64), sigma=1.0)
            >>> torch.allclose(model.epi_entropy(0.1, 5), model.short_run_entropy(0.1, 5))
            True
        """
        a = self.precision()
        eye = torch.eye(self.latent_dim, dtype=a.dtype, device=a.device)
        dim = self.latent_dim
        entropy = torch.tensor(
            0.5 * dim * math.log(2 * math.pi * math.e), dtype=a.dtype, device=a.device
        )
        for s in self._steps(step_size, num_steps):
            drift = entropy + torch.linalg.slogdet(eye - s * a).logabsdet
            entropy = (
                0.5
                * dim
                * torch.logaddexp(2 * drift / dim, math.log(4 * math.pi * math.e) + torch.log(s))
            )
        return entropy
