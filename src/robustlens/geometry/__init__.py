"""Decision-boundary geometry (paper Sec. II-A, II-C, II-D, III-B1): cross-sections, noise robustness,
curvature, boundary normals, subspace margins and neural anisotropy directions."""
