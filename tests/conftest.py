import os
import sys

# tests/cells.py is imported by name from every test module.
sys.path.insert(0, os.path.dirname(__file__))
