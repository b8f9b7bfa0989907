"""The entries of a model or training baseline (:mod:`initdiag.regression.model`,
:mod:`initdiag.regression.train`): checked one by one, and read back with the baseline's
environment in each result's ``meta``. A file of the single kind (``"model"``, ``"train"``) holds
one entry; a sweep kind any number (at least one)."""

from __future__ import annotations

from typing import Any, Callable, Mapping

from initdiag.config import shown


def check_entries(doc: Mapping[str, Any], check_entry: Callable[[int, Any], None],
                  single: str) -> None:
    """Check ``doc["results"]``: a non-empty array, each entry by ``check_entry(i, entry)``, and
    one entry when ``doc["kind"]`` is ``single``.

    Raises:
      ValueError: naming the field and what is expected.
    """
    entries = doc.get("results")
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"'results' is {shown(entries)}; expected a non-empty array")
    for i, e in enumerate(entries):
        check_entry(i, e)
    if doc["kind"] == single and len(entries) != 1:
        raise ValueError(f"kind {single!r} holds {len(entries)} results; expected 1")


def read_entries(doc: Mapping[str, Any], env: dict, from_dict: Callable[[Any], Any],
                 sweep: Callable[[list, dict], Any], single: str) -> Any:
    """The results of a checked ``doc``: ``from_dict`` of each entry, ``env`` as its
    ``meta["environment"]``; the one result for the ``single`` kind, else ``sweep(results,
    {"environment": env})``."""
    results = [from_dict(e) for e in doc["results"]]
    for r in results:
        r.meta["environment"] = env
    if doc["kind"] == single:
        return results[0]
    return sweep(results, {"environment": env})
