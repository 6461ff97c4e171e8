"""Statistics of a spectrum: the power-law fit, Marchenko–Pastur and the randomised ESD,
KS and likelihood-ratio machinery, norms. Imports nothing above `weightscope.linalg`."""
