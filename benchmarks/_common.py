"""What the benchmark scripts share: how the machine they ran on is described."""

from __future__ import annotations

import os
import platform

import jax


def device_description() -> str:
    """The devices JAX uses, as text: count, platform and kind, and on CPU the usable cores."""
    dev = jax.devices()[0]
    text = f"{len(jax.devices())} x {dev.platform} ({getattr(dev, 'device_kind', dev.platform)})"
    if dev.platform == "cpu":
        text += f", {platform.processor() or platform.machine()}"
        try:
            text += f", {len(os.sched_getaffinity(0))} usable cores"
        except AttributeError:  # not on Linux
            text += f", {os.cpu_count()} cores"
    return text
