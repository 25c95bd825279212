"""Test-suite set-up that must happen before JAX initialises.

Multi-device code is tested on 8 simulated CPU devices (``JAX_NUM_CPU_DEVICES=8``):
the mesh code paths run as on 8 accelerators, on any machine.
"""

import os

os.environ.setdefault("JAX_NUM_CPU_DEVICES", "8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
