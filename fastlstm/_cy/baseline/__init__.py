"""The kernels compiled for the baseline level (setup.py); fastlstm._cy loads them."""
