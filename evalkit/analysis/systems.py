"""Systems from result folders: one per identity, and the labels that tell them apart."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from evalkit.results import RunResult, System


def collect_systems(results: Iterable[RunResult]) -> list[System]:
    """One :class:`System` per identity (``also_in`` names the folders set aside).

    A first stage measured alone (a ``reranker=none`` run) is preferred over the same first
    stage taken from a reranked run: its latency is its own. Otherwise the newest folder
    (by its completion marker) is used.
    """
    chosen: dict[str, System] = {}
    newest: dict[str, float] = {}
    for result in results:
        stamp = result.finished_at()
        for system in result.systems():
            key = system.key
            current = chosen.get(key)
            better = current is None or (
                (system.measured_alone, stamp) > (current.measured_alone, newest[key])
            )
            same_kind = current is not None and current.measured_alone == system.measured_alone
            if better:
                if same_kind:  # a rerun of the same system: remember the folder set aside
                    system.also_in = [*current.also_in, current.folder]
                chosen[key], newest[key] = system, stamp
            elif same_kind:
                current.also_in.append(system.folder)
    return list(chosen.values())


def rerun_notes(systems: Sequence[System], labels: dict[str, str]) -> list[str]:
    """One line per system found in several folders: which folder the report used."""
    notes = []
    for system in systems:
        reruns = [f for f in system.also_in if f != system.folder]
        if reruns:
            notes.append(
                f"{labels[system.key]} ({system.dataset}) was found in {len(reruns) + 1} "
                f"folders (reruns of one system): used {system.folder}, set aside "
                + ", ".join(str(f) for f in reruns)
            )
    return notes


def _short(value: object) -> str:
    """A setting's value as a label shows it: paths by their last part, hashes short."""
    text = str(value)
    if text.startswith(("local:", "hub:")):
        return text.split("|", 1)[0][-8:]
    if "/" in text:
        return text.rstrip("/").rsplit("/", 1)[-1]
    return text


def label_systems(systems: Sequence[System]) -> dict[str, str]:
    """Readable, unique labels: the name plus only the settings that differ.

    Systems sharing a readable name on one dataset get ``[setting=value, ...]`` with the
    settings whose values differ among them (``bm25 → biencoder@5 [max_length=32]``).

    Example: two ``bm25 → biencoder@5`` systems differing in ``reranker.max_length`` are
    labelled ``bm25 → biencoder@5 [max_length=32]`` and ``... [max_length=256]``.
    """
    groups: dict[tuple[str, str], list[System]] = {}
    for system in systems:
        groups.setdefault((system.dataset, system.identity.name()), []).append(system)
    labels: dict[str, str] = {}
    for (_, name), members in groups.items():
        if len(members) == 1:
            labels[members[0].key] = name
            continue
        settings = [m.identity.settings() for m in members]
        keys = sorted({k for s in settings for k in s})
        differing = [k for k in keys if len({repr(s.get(k)) for s in settings}) > 1]
        readable = [k for k in differing if not k.endswith(".fingerprint")] or differing
        for member, values in zip(members, settings, strict=True):
            parts = [f"{k.split('.', 1)[1]}={_short(values.get(k))}" for k in readable]
            labels[member.key] = f"{name} [{', '.join(parts)}]" if parts else name
        seen: dict[str, int] = {}
        for member in members:  # identical labels (e.g. same settings, other data): add key
            seen[labels[member.key]] = seen.get(labels[member.key], 0) + 1
        for member in members:
            if seen[labels[member.key]] > 1:
                labels[member.key] += f" #{member.key[:6]}"
    return labels
