"""The kernels compiled for the avx512 level (setup.py); fastlstm._cy loads them."""
