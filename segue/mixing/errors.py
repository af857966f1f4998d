"""Errors the mixer reports to clients."""

from __future__ import annotations

from dataclasses import dataclass


class MixInputError(ValueError):
    """A client input cannot be rendered; the message names the input and why.

    The servicer answers INVALID_ARGUMENT with this message.
    """


class MixLimitError(ValueError):
    """An input is over a size limit; the servicer answers RESOURCE_EXHAUSTED."""


@dataclass(frozen=True)
class TempoMismatch:
    """Two tempos no reading of the beats brings within the stretch limit."""

    bpm_outgoing: float
    bpm_incoming: float  # the incoming grid's tempo after any key shift
    max_stretch: float  # the stretch limit, as a fraction (0.12 = +-12%)

    @property
    def ratio(self) -> float:
        """Outgoing over incoming tempo (dimensionless)."""
        return self.bpm_outgoing / self.bpm_incoming

    def message(self) -> str:
        return (
            f"tempo ratio {self.ratio:.3f} between the outgoing ({self.bpm_outgoing:.1f} BPM) "
            f"and incoming ({self.bpm_incoming:.1f} BPM) excerpts is beyond the stretch limit "
            f"of +-{self.max_stretch * 100:.0f}% (half and double time, and 3:2 and 4:3 "
            "readings where the onsets allow them, were tried too)"
        )


class TempoMismatchError(MixInputError):
    """The songs cannot be beat-matched within the stretch limit at any metrical reading.

    A MixInputError, so the servicer answers INVALID_ARGUMENT with the same message; the
    continuous mix catches it by type to fade the pair at their own tempos instead.
    """

    def __init__(self, mismatch: TempoMismatch) -> None:
        super().__init__(mismatch.message())
        self.mismatch = mismatch
