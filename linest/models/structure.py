"""Structured system matrices: dense, diagonal, banded, diagonal plus low rank.

A :class:`Structure` names the free entries of A and builds A from their values, so that a
model (:class:`linest.LinearODE`, :class:`linest.LinearSSM`) or a spec file can ask for a
structure by name instead of writing a function:

* ``dense``: every entry ``A[i,j]`` (``d^2`` parameters);
* ``diagonal``: ``A[i,i]`` (``d``);
* ``banded``: the entries with ``-lower <= j - i <= upper`` (``A[i,j]``);
* ``diagonal_plus_low_rank``: ``A = diag(D) + U W^T`` with ``U``, ``W`` of shape
  ``(d, rank)``. ``U W^T = (U G)(W G^-T)^T`` for every invertible ``G``, so the free
  parameters fix that gauge by ``W``'s first ``rank`` rows being the identity: the
  parameters are ``D[i]``, ``U[i,k]`` and ``W[i,k]`` for ``i >= rank``
  (``d + 2 d rank - rank^2``, the dimension of the set of such matrices). That count must
  not exceed ``d^2``: ``(d - rank)^2 >= d`` (rank 1 needs d >= 3, rank 2 needs d >= 4).

Every parameter is real (no sign constraint; a compartmental structure with non-negative
flows is :class:`linest.LinearODE`'s ``flows``).
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np

__all__ = ["STRUCTURES", "Structure"]

STRUCTURES = ("dense", "diagonal", "banded", "diagonal_plus_low_rank")


@dataclasses.dataclass(frozen=True)
class Structure:
    """Which entries of a ``d x d`` matrix are free, and how A is built from them.

    Parameters
    ----------
    kind : one of ``STRUCTURES``
    size : int
        ``d``.
    bandwidth : (lower, upper)
        For ``banded``: how many sub- and superdiagonals are free.
    rank : int
        For ``diagonal_plus_low_rank``: the rank of ``U W^T`` (1 <= rank < d).
    """

    kind: str
    size: int
    bandwidth: tuple[int, ...] = (1, 1)
    rank: int = 1

    def __post_init__(self):
        if self.kind not in STRUCTURES:
            raise ValueError(f"structure={self.kind!r}; expected one of {', '.join(STRUCTURES)}")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"the structure needs a positive number of states; got {self.size!r}")
        lower_upper = tuple(self.bandwidth)
        if (
            len(lower_upper) != 2
            or not all(isinstance(b, int) and not isinstance(b, bool) for b in lower_upper)
            or min(lower_upper) < 0
        ):
            raise ValueError(
                f"bandwidth must be two non-negative integers [lower, upper]; got {self.bandwidth!r}"
            )
        object.__setattr__(self, "bandwidth", lower_upper)
        if self.kind == "diagonal_plus_low_rank" and not (
            isinstance(self.rank, int) and not isinstance(self.rank, bool) and 1 <= self.rank
        ):
            raise ValueError(f"rank must be a positive integer; got {self.rank!r}")
        if self.kind == "diagonal_plus_low_rank" and self.rank >= self.size:
            raise ValueError(
                f"rank {self.rank} >= {self.size} states: a diagonal plus rank-{self.rank} matrix "
                "is then any matrix; use structure = 'dense'"
            )
        if self.kind == "diagonal_plus_low_rank" and (self.size - self.rank) ** 2 < self.size:
            d, r = self.size, self.rank
            raise ValueError(
                f"a {d} x {d} diagonal plus rank-{r} matrix has {d + 2 * d * r - r * r} parameters "
                f"for {d * d} entries: they are not identifiable (it needs (d - rank)^2 >= d, "
                f"rank <= {d - math.isqrt(d - 1) - 1 if d > 1 else 0} here); use a lower rank or "
                "structure = 'dense'"
            )

    # ------------------------------------------------------------------ entries

    def _entries(self) -> list[tuple[int, int]]:
        d = self.size
        if self.kind == "dense":
            return [(i, j) for i in range(d) for j in range(d)]
        if self.kind == "diagonal":
            return [(i, i) for i in range(d)]
        lower, upper = self.bandwidth
        return [(i, j) for i in range(d) for j in range(d) if -lower <= j - i <= upper]

    @property
    def names(self) -> tuple[str, ...]:
        """The free parameters, in the order :meth:`matrix` reads them."""
        if self.kind != "diagonal_plus_low_rank":
            return tuple(f"A[{i},{j}]" for i, j in self._entries())
        d, r = self.size, self.rank
        return (
            tuple(f"D[{i}]" for i in range(d))
            + tuple(f"U[{i},{k}]" for i in range(d) for k in range(r))
            + tuple(f"W[{i},{k}]" for i in range(r, d) for k in range(r))
        )

    @property
    def num_params(self) -> int:
        return len(self.names)

    def matrix(self, values) -> jnp.ndarray:
        """A from the free values (``(num_params,)``, any float dtype, traceable)."""
        values = jnp.asarray(values)
        d = self.size
        if values.shape[-1] != self.num_params:
            raise ValueError(
                f"{self.kind} structure: {values.shape[-1]} values for {self.num_params} parameters"
            )
        if self.kind == "dense":
            return values.reshape(values.shape[:-1] + (d, d))
        if self.kind != "diagonal_plus_low_rank":
            rows, cols = (np.asarray(v) for v in zip(*self._entries(), strict=True))
            A = jnp.zeros(values.shape[:-1] + (d, d), values.dtype)
            return A.at[..., rows, cols].set(values)
        r = self.rank
        D = values[..., :d]
        U = values[..., d : d + d * r].reshape(values.shape[:-1] + (d, r))
        free = values[..., d + d * r :].reshape(values.shape[:-1] + (d - r, r))
        eye = jnp.broadcast_to(jnp.eye(r, dtype=values.dtype), values.shape[:-1] + (r, r))
        W = jnp.concatenate([eye, free], axis=-2)
        return jnp.einsum("...ik,...jk->...ij", U, W) + D[..., :, None] * jnp.eye(
            d, dtype=values.dtype
        )

    def values(self, A) -> np.ndarray:
        """The free values of a given A (an error if A is not of this structure)."""
        A = np.asarray(A, float)
        d = self.size
        if A.shape != (d, d):
            raise ValueError(f"A must be {d} x {d}; got shape {A.shape}")
        if self.kind == "diagonal_plus_low_rank":
            raise ValueError(
                "a diagonal plus low rank A is not determined by its entries alone: give "
                "theta directly (D, then U row by row, then W's rows after the first rank)"
            )
        entries = self._entries()
        mask = np.zeros((d, d), bool)
        for i, j in entries:
            mask[i, j] = True
        if np.any(A[~mask] != 0):
            i, j = np.argwhere((A != 0) & ~mask)[0]
            raise ValueError(f"A[{i},{j}] = {A[i, j]:g} is outside the {self.kind} structure")
        return np.asarray([A[i, j] for i, j in entries])

    def start(self, rate: float) -> np.ndarray:
        """Values of a stable, non-degenerate starting A on the time scale ``1 / rate``:
        ``-rate`` on the diagonal (each next state a little slower: equal diagonals make a
        chain's A defective), ``+-rate/2`` on the first off-diagonals where free, and a
        small low-rank part (a zero ``U`` is a saddle of ``U W^T``)."""
        d = self.size
        A = -rate * np.diag(1.0 + 0.1 * np.arange(d))
        if self.kind == "diagonal_plus_low_rank":
            r = self.rank
            D = np.diag(A)
            U = 0.1 * rate * np.cos(np.arange(d * r)).reshape(d, r)
            W = 0.1 * np.sin(1.0 + np.arange((d - r) * r)).reshape(d - r, r)
            return np.concatenate([D, U.ravel(), W.ravel()])
        allowed = set(self._entries())
        for i in range(d - 1):
            if (i, i + 1) in allowed:
                A[i, i + 1] = 0.5 * rate
            if (i + 1, i) in allowed:
                A[i + 1, i] = -0.5 * rate
        return np.asarray([A[i, j] for i, j in self._entries()])

    def project(self, A, rate: float) -> np.ndarray:
        """The free entries of a given A, dropping the others (a diagonal plus low rank
        structure keeps A's diagonal and takes its low-rank part from :meth:`start`)."""
        A = np.asarray(A, float)
        if self.kind == "diagonal_plus_low_rank":
            values = self.start(rate)
            values[: self.size] = np.diag(A)
            return values
        return np.asarray([A[i, j] for i, j in self._entries()])

    @classmethod
    def from_spec(cls, table: dict, size: int, where: str) -> Structure | None:
        """``structure``, ``bandwidth``, ``rank`` from a spec's [model] table, or None if
        ``structure`` is absent."""
        kind = table.get("structure")
        if kind is None:
            for key in ("bandwidth", "rank"):
                if key in table:
                    raise ValueError(f"{where}: model.{key} needs model.structure")
            return None
        if not isinstance(kind, str):
            raise ValueError(f"{where}: model.structure must be a string; got {kind!r}")
        bandwidth = table.get("bandwidth", [1, 1])
        if not isinstance(bandwidth, list):
            raise ValueError(f"{where}: model.bandwidth must be [lower, upper]; got {bandwidth!r}")
        rank = table.get("rank", 1)
        try:
            return cls(kind, size, tuple(bandwidth), rank)
        except ValueError as error:
            raise ValueError(f"{where}: [model]: {error}") from None
