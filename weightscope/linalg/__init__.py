"""Numerics: eigenvalues of X = WᵀW/N on numpy/LAPACK or torch, and the precision policy's
building blocks. Imports nothing of weightscope but `weightscope.errors`."""
