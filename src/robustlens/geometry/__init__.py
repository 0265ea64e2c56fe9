"""Decision-boundary geometry (paper Sec. II-A, II-C, II-D, III-B1): cross-sections, noise robustness,
curvature, boundary normals, subspace margins and neural anisotropy directions.

One module per analysis (its result, function, plot and registration, :mod:`robustlens.analyses`); the package
re-exports the public names of its modules. Paper: Ortiz-Jimenez, Modas, Moosavi-Dezfooli, Frossard, "Optimism in
the face of adversity: Understanding and improving deep learning through adversarial robustness", Proc. IEEE 2021.
"""

from .alignment import AlignmentResult, gradient_alignment
from .boundary_shape import BoundaryCurvature, boundary_curvature
from .hessian import HessianSpectrum, curvature_profile, hessian_eigenpairs, input_hessian, plot_curvature_profile
from .noise import (
    DirectionalResult,
    NoiseResult,
    SqrtDResult,
    directional_distance,
    linear_sqrt_d_constants,
    noise_error_rate,
    plot_noise,
    plot_sqrt_d,
    random_unit_directions,
    sqrt_d_law,
)
from .normals import (
    CurvatureOverlapResult,
    NormalSpectrum,
    NormalsResult,
    SubspaceComparison,
    TransferResult,
    collect_normals,
    compare_subspaces,
    curvature_overlap,
    normal_spectrum,
    plot_principal_angles,
    plot_singular_values,
    principal_angles,
    transferability_matrix,
)
from .sections import SectionResult, cross_section, plot_section, plot_sections, section_directions
from .subspaces import (
    Subspace,
    SubspaceMarginResult,
    dct2,
    dct_basis,
    dct_matrix,
    diagonal_dct_subspaces,
    idct2,
    pixel_block_subspaces,
    plot_margin_profile,
    random_subspaces,
    subspace_margins,
)
from .taylor import TaylorResult, taylor_error

__all__ = [
    "AlignmentResult",
    "BoundaryCurvature",
    "HessianSpectrum",
    "TaylorResult",
    "boundary_curvature",
    "curvature_profile",
    "gradient_alignment",
    "hessian_eigenpairs",
    "input_hessian",
    "plot_curvature_profile",
    "taylor_error",
    "DirectionalResult",
    "NoiseResult",
    "SqrtDResult",
    "directional_distance",
    "linear_sqrt_d_constants",
    "noise_error_rate",
    "plot_noise",
    "plot_sqrt_d",
    "random_unit_directions",
    "sqrt_d_law",
    "SectionResult",
    "cross_section",
    "plot_section",
    "plot_sections",
    "section_directions",
    "CurvatureOverlapResult",
    "NormalSpectrum",
    "NormalsResult",
    "SubspaceComparison",
    "TransferResult",
    "collect_normals",
    "compare_subspaces",
    "curvature_overlap",
    "normal_spectrum",
    "plot_principal_angles",
    "plot_singular_values",
    "principal_angles",
    "transferability_matrix",
    "Subspace",
    "SubspaceMarginResult",
    "dct2",
    "dct_basis",
    "dct_matrix",
    "diagonal_dct_subspaces",
    "idct2",
    "pixel_block_subspaces",
    "plot_margin_profile",
    "random_subspaces",
    "subspace_margins",
]
