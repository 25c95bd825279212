"""An in-process interruption of a training run, for the resume tests."""

from __future__ import annotations


class Interrupt(Exception):
    """Raised by :class:`StopAt` where the run is cut."""


class StopAt:
    """Batches that raise :class:`Interrupt` at batch ``b`` of epoch ``e``."""

    def __init__(self, inner, e, b):
        self.inner, self.at, self.batch_size = inner, (e, b), inner.batch_size

    def __len__(self):
        return len(self.inner)

    def __getattr__(self, name):  # the pipeline's identity (dataset, seed, ...) is the inner one's
        return getattr(self.inner, name)

    def epoch(self, epoch, start=0):
        for b, batch in enumerate(self.inner.epoch(epoch, start), start):
            if (epoch, b) == self.at:
                raise Interrupt
            yield batch
