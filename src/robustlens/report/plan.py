"""``ReportPlan``: how much work a report does (sample counts, eps grids, grid sizes, which sections).

Two presets: ``quick`` (a few minutes on two CPU cores for a small MNIST CNN) and ``full`` (the numbers worth
quoting). Every count can be overridden field by field (``dataclasses.replace``). The eps grids depend on the data:
:meth:`ReportPlan.preset` scales them to the input size so that the same plan name means the same thing on MNIST
(28x28x1) and CIFAR-10 (32x32x3), following the usual threat models (Linf 0.3 / L2 2.0 on MNIST, Linf 8/255 / L2 0.5
on CIFAR-10).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from ..attacks.norms import norm_name, parse_norm
from ..checks import COUNT, NON_NEGATIVE, OPEN_UNIT, POSITIVE, Number, check
from ..errors import ConfigError
from ..results import Result
from .registry import SECTIONS, section_keys

#: The rules of the plan's numeric fields (every other numeric field is a count >= 1).
FIELD_RULES: dict[str, Number] = {
    "threat_l2": POSITIVE, "threat_linf": POSITIVE, "uap_eps": POSITIVE, "certify_alpha": OPEN_UNIT,
    "certify_sigma": Number(low=0, low_open=True, optional=True),
}


def _grid(stop: float, n: int) -> list[float]:
    return [round(stop * i / (n - 1), 6) for i in range(n)]


@dataclass
class ReportPlan(Result):
    """What a report computes and on how many samples.

    Attributes:
        name: ``"quick"`` or ``"full"`` (or ``"custom"`` after overriding fields).
        n_samples: test images evaluated for accuracy, distances and robust-accuracy curves.
        batch_size: batch size of every attack and forward pass.
        eps_l2, eps_linf: the eps grids of the robust-accuracy curves (eq. 12).
        threat_l2, threat_linf: the single eps quoted in sentences and the headline table (the usual threat model).
        deepfool_iter, fmn_steps, pgd_steps: iterations of DeepFool and FMN (the minimal-norm attacks) and of PGD
            (the check at the threat eps).
        n_examples: images shown with their L1, L2 and Linf adversarial examples (Fig. 1).
        section_grid, section_samples: resolution of each cross-section (grid x grid points) and how many samples
            get one (Fig. 3).
        curvature_samples, curvature_k: samples whose input-Hessian spectrum is computed, and eigenpairs per end.
        normals_samples: minimal L2 perturbations collected for the singular values of the normals.
        uap_samples, uap_eval_samples, uap_norm, uap_eps: data used to compute and to test the universal
            perturbation (eq. 17, Fig. 5), its norm and radius; uap_passes: passes of the algorithm over its data.
        dct_block, dct_samples: size K of the diagonal K x K DCT blocks and samples per block (eq. 18, Fig. 8).
        noise_directions, noise_samples: random directions per sample for the directional distance (eq. 20-21);
            noise_draws: Gaussian draws per sample and sigma for the error rate under noise (eq. 7).
        sanity_samples, sanity_queries: samples of the gradient-masking checks and queries of their Square attack.
        certify_sigma, certify_n0, certify_n, certify_alpha, certify_samples: randomized smoothing settings; the
            certified section runs only when ``certify_sigma`` is set (the model is a smoothed one).
        sections: the section keys to run, in page order.
    """

    name: str = "quick"
    n_samples: int = 100
    batch_size: int = 100
    eps_l2: list[float] = field(default_factory=lambda: _grid(3.0, 13))
    eps_linf: list[float] = field(default_factory=lambda: _grid(0.3, 13))
    threat_l2: float = 2.0
    threat_linf: float = 0.1
    deepfool_iter: int = 50
    fmn_steps: int = 50
    pgd_steps: int = 20
    n_examples: int = 2
    section_grid: int = 41
    section_samples: int = 1
    curvature_samples: int = 4
    curvature_k: int = 10
    normals_samples: int = 100
    uap_samples: int = 100
    uap_eval_samples: int = 100
    uap_norm: str = "inf"
    uap_eps: float = 0.2
    uap_passes: int = 3
    dct_block: int = 7
    dct_samples: int = 10
    noise_directions: int = 5
    noise_samples: int = 20
    noise_draws: int = 20
    sanity_samples: int = 50
    sanity_queries: int = 300
    certify_sigma: float | None = None
    certify_n0: int = 32
    certify_n: int = 200
    certify_alpha: float = 0.001
    certify_samples: int = 20
    sections: list[str] = field(default_factory=section_keys)

    def __post_init__(self) -> None:
        keys = section_keys()
        unknown = [s for s in self.sections if s not in SECTIONS]
        if unknown:
            raise ConfigError(f"unknown report section(s) {unknown}; choose from {', '.join(keys)}")
        self.sections = [SECTIONS.key(s) for s in self.sections]
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in FIELD_RULES:
                setattr(self, f.name, check(value, f.name, FIELD_RULES[f.name], "ReportPlan"))
            elif isinstance(value, int) and not isinstance(value, bool):
                setattr(self, f.name, check(value, f.name, COUNT, "ReportPlan"))
            elif f.name in ("eps_l2", "eps_linf"):
                setattr(self, f.name, [check(e, f.name, NON_NEGATIVE, "ReportPlan") for e in value])

    @classmethod
    def preset(
        cls,
        name: str = "quick",
        input_shape: Sequence[int] = (1, 28, 28),
        *,
        certify_sigma: float | None = None,
        sections: Sequence[str] | None = None,
    ) -> ReportPlan:
        """The ``quick`` or ``full`` plan for inputs of ``input_shape`` (channels first), eps grids scaled to it.

        Grayscale inputs get MNIST's threat model (Linf up to 0.3, L2 up to 3); colour inputs CIFAR-10's
        (Linf up to 16/255, L2 up to 1.5), with DCT blocks of 1/4 of the side.
        """
        if name not in ("quick", "full"):
            raise ConfigError(f"unknown plan {name!r}; use 'quick' or 'full'")
        shape = tuple(int(s) for s in input_shape)
        if len(shape) < 1:
            raise ConfigError(f"input_shape must be (C, H, W) or (D,), got {shape}")
        gray = len(shape) != 3 or shape[0] == 1
        side = shape[-1] if len(shape) == 3 else int(math.isqrt(shape[-1]))
        kw: dict[str, object] = {}
        if gray:
            kw.update(eps_l2=_grid(3.0, 13), eps_linf=_grid(0.3, 13), threat_l2=2.0, threat_linf=0.1,
                      uap_eps=0.2)
        else:
            kw.update(eps_l2=_grid(1.5, 13), eps_linf=_grid(16 / 255, 9), threat_l2=0.5, threat_linf=8 / 255,
                      uap_eps=10 / 255)
        kw["dct_block"] = max(1, side // 4)
        if name == "full":
            kw.update(n_samples=500, batch_size=250, fmn_steps=100, pgd_steps=50, n_examples=3, uap_passes=5,
                      noise_draws=100, sanity_samples=200, sanity_queries=1000, section_grid=101, section_samples=2,
                      curvature_samples=20, curvature_k=20, normals_samples=500, uap_samples=500,
                      uap_eval_samples=500, dct_samples=50, noise_directions=20, noise_samples=100,
                      certify_n0=100, certify_n=2000, certify_samples=100)
        plan = cls(name=name, certify_sigma=certify_sigma, **kw)  # type: ignore[arg-type]
        if sections is not None:
            plan = replace(plan, sections=list(sections))
        return plan

    def threat_model(self) -> str:
        """The threat model of the quoted numbers, in words: the eps of each norm, the universal perturbation's
        radius and, when certifying, the smoothing noise and sample count."""
        def g(v: float) -> str:
            return f"{v:.3g}"

        s = (f"L2 eps {g(self.threat_l2)} and Linf eps {g(self.threat_linf)} (curves up to {g(max(self.eps_l2))} and "
             f"{g(max(self.eps_linf))}); universal perturbation of {norm_name(parse_norm(self.uap_norm))} norm "
             f"{g(self.uap_eps)}")
        if self.certify_sigma is not None:
            s += (f"; smoothing noise sigma {g(self.certify_sigma)} with n = {self.certify_n} samples at "
                  f"alpha = {g(self.certify_alpha)}")
        return s

    def samples(self, n_available: int) -> int:
        """How many samples the plan evaluates given ``n_available`` in the data."""
        return min(self.n_samples, n_available)


__all__ = ["FIELD_RULES", "ReportPlan"]
