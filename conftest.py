"""Test-suite set-up that must happen before JAX initialises.

Multi-device code is tested on 8 simulated CPU devices (design notes, convention 8).
"""

import os

os.environ.setdefault("JAX_NUM_CPU_DEVICES", "8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
