import os
import sys

# Test helpers (video generation, fixture weights) live beside the tests.
sys.path.insert(0, os.path.dirname(__file__))
