"""Semi-Markov sojourns by phase-type states (msm's ``phase.states``; Titman and Sharples
2010).

A state ``s`` given ``k`` phases becomes the latent states ``s [P1]``, ..., ``s [Pk]`` of a
Coxian phase-type sojourn: entry is into ``s [P1]``; phase ``j`` moves on to phase ``j + 1``
or leaves for any state ``s`` may reach, at rates of its own. A visit that records ``s``
records the set of its phases, so the model is a hidden Markov model on the expanded
states, fitted by the forward algorithm like any other. Two phases make the sojourn in
``s`` a mixture of a short and a long stay; the hazard of leaving ``s`` then depends on the
time spent there.
"""

from __future__ import annotations

from collections.abc import Mapping

from linest.data import state_key

__all__ = ["check_phases", "expand_phases", "phase_name"]


def phase_name(state: str, j: int) -> str:
    """The name of phase ``j`` (1-based) of ``state``: ``"1 [P2]"`` (msm's labels)."""
    return f"{state} [P{j}]"


def check_phases(phases, original, caller: str) -> tuple[tuple[str, int], ...]:
    """``{state: number of phases}`` checked against the unexpanded model ``original``
    (states, transitions, exact, labels): known, non-absorbing states, at least 2 phases."""
    if not phases:
        return ()
    if not isinstance(phases, Mapping):
        raise ValueError(
            f"{caller}: phases must be a table of state -> number of phases, e.g. "
            f'{{ "1" = 2 }}, got {phases!r}'
        )
    states, transitions, exact, _ = original
    leaving = {r for r, _ in transitions}
    out = {}
    for state, count in phases.items():
        key = state_key(state)
        if key not in states:
            raise ValueError(
                f"{caller}: phases names state {state!r}, not one of the states {', '.join(states)}"
            )
        if key in exact or key not in leaving:
            raise ValueError(
                f"{caller}: phases on state {key}, which is absorbing: a sojourn without "
                "end has no phases to split into"
            )
        if isinstance(count, bool) or not isinstance(count, int) or count < 2:
            raise ValueError(
                f"{caller}: phases of state {key}: expected a whole number of phases >= 2, "
                f"got {count!r}"
            )
        out[key] = count
    return tuple((s, out[s]) for s in states if s in out)


def expand_phases(original, phases, initial):
    """States, transitions, labels, the phase sets (a censor table: the recorded state ->
    its phases) and the initial distribution on the expanded states."""
    states, transitions, _, labels = original
    count = dict(phases)

    def members(s):
        return [phase_name(s, j) for j in range(1, count[s] + 1)] if s in count else [s]

    names = [m for s in states for m in members(s)]
    moves = []
    for r, s in transitions:
        moves += [(m, members(s)[0]) for m in members(r)]
    for s, k in phases:
        moves += [(phase_name(s, j), phase_name(s, j + 1)) for j in range(1, k)]
    if labels is not None:
        labels = [
            phase_name(label, j) if s in count else label
            for s, label in zip(states, labels)
            for j in range(1, count.get(s, 1) + 1)
        ]
    sets = {s: members(s) for s, _ in phases}
    if initial is not None and len(initial) == len(states) != len(names):
        # Given on the recorded states: a subject starting in a phased state starts in P1.
        initial = [
            p if j == 0 else 0.0 for p, s in zip(initial, states) for j in range(count.get(s, 1))
        ]
    return names, moves, labels, sets, initial
