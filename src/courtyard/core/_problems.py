"""RFC 9457 problem documents, the one error shape of every HTTP answer Courtyard makes."""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

PROBLEM_CONTENT_TYPE = "application/problem+json"


class Problem(TypedDict):
    """An RFC 9457 §3.1 problem details object (extension members allowed)."""

    type: str
    title: str
    status: int
    detail: NotRequired[str]
    instance: NotRequired[str]


def problem(status: int, title: str, detail: str | None = None, **extensions: Any) -> Problem:
    """Build a problem document; ``type`` names the problem under ``https://courtyard.dev/problems/``.

    RFC 9457 §4.2: ``about:blank`` is for problems with no more meaning than the status; ours
    get a slug from the title so clients can branch on it.
    """
    slug = title.lower().replace(" ", "-")
    doc: dict[str, Any] = {
        "type": f"https://courtyard.dev/problems/{slug}",
        "title": title,
        "status": status,
    }
    if detail is not None:
        doc["detail"] = detail
    doc.update(extensions)
    return doc  # type: ignore[return-value]
