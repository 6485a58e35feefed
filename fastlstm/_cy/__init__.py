"""Compiled Cython kernels, built from src_cy/ by setup.py."""
