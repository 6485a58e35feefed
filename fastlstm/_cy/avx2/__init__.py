"""The kernels compiled for the avx2 level (setup.py); fastlstm._cy loads them."""
