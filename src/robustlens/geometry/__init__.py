"""Decision-boundary geometry (paper Sec. II-A, II-C, II-D, III-B1): cross-sections, noise robustness,
curvature, boundary normals, subspace margins and neural anisotropy directions."""

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

__all__ = [
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
