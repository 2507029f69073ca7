"""Who publishes the registry's description and who grants access to its data: the policy's
``[transparency].catalogue_*`` keys, checked before anything is read (one line naming every key still to set)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urldefrag, urlsplit

from research_kit.core.config import Policy
from research_kit.core.errors import BadInput

_EMAIL = re.compile(r"^[^@\s<>\"]+@[^@\s<>\"]+\.[^@\s<>\"]+$")


@dataclass(frozen=True)
class Contact:
    email: str = ""
    page: str = ""


@dataclass(frozen=True)
class Publisher:
    """Who publishes and who grants access: the policy's ``[transparency].catalogue_*`` keys, checked."""

    name: str
    contact: Contact
    landing_page: str
    hdab: str
    hdab_contact: Contact


def publisher(policy: Policy) -> Publisher:
    """The policy's publisher, access body and page, or a one-line refusal naming every key still to set."""
    t = policy.transparency
    keys = {
        "catalogue_publisher": t.catalogue_publisher, "catalogue_contact": t.catalogue_contact,
        "catalogue_landing_page": t.catalogue_landing_page, "catalogue_hdab": t.catalogue_hdab,
        "catalogue_hdab_contact": t.catalogue_hdab_contact,
    }  # fmt: skip
    unset = [k for k, v in keys.items() if not v.strip()]
    if unset:
        raise BadInput(
            f"research-kit.toml: set [transparency] {', '.join(unset)}: the catalogue names who publishes the "
            "registry, who grants access to it and where to ask"
        )
    return Publisher(
        name=" ".join(t.catalogue_publisher.split()),
        contact=_contact(t.catalogue_contact, "catalogue_contact"),
        landing_page=_page(t.catalogue_landing_page, "catalogue_landing_page"),
        hdab=" ".join(t.catalogue_hdab.split()),
        hdab_contact=_contact(t.catalogue_hdab_contact, "catalogue_hdab_contact"),
    )


def _page(text: str, key: str) -> str:
    url = urldefrag(text.strip()).url
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.netloc or re.search(r"[\s<>\"{}|\\^`]", url):
        raise BadInput(f"research-kit.toml: [transparency].{key} {text!r}: give a web address, https://...")
    return url


def _contact(text: str, key: str) -> Contact:
    value = text.strip().removeprefix("mailto:")
    if _EMAIL.match(value):
        return Contact(email=value)
    if value.startswith(("https://", "http://")):
        return Contact(page=_page(value, key))
    raise BadInput(f"research-kit.toml: [transparency].{key} {text!r}: give an e-mail address or an https:// page")
